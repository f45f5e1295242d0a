//! Test harness: a fake Claws Network on 127.0.0.1 (stream service + gateway) and helpers
//! to run the built binary against it.
//!
//! The fake keeps its own record of every window it granted (with the epoch it granted it
//! in), so tests compare the tool's database against the service's truth.

pub mod bill;
pub mod browser;
pub mod chain;
pub mod http;
pub mod mvp;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub fn now_ms() -> i64 {
    stream_agency::now_ms()
}

/// The vector wallets: (name, address, stream signature hex).
pub fn wallets() -> Vec<(String, String, String)> {
    let v = vectors();
    let mut out = Vec::new();
    for (name, w) in v["wallets"].as_object().unwrap() {
        out.push((
            name.clone(),
            w["address_claw"].as_str().unwrap().to_string(),
            w["signed_messages"]["stream"]["signature_hex"]
                .as_str()
                .unwrap()
                .to_string(),
        ));
    }
    out
}

pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn vectors() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data_dir().join("claws-vectors.json")).unwrap())
        .unwrap()
}

/// When the fake stream service accepts a renewal.
#[derive(Clone, Copy, Debug)]
pub enum RenewalPolicy {
    /// Accepted in the last `accept_before_ms` of the window.
    Early { accept_before_ms: i64 },
    /// Accepted only once the window has ended; the 403 says when
    /// (`can_stream_again_at`) or only gives `end_stream`.
    AfterEnd { say_when: bool },
}

/// A planned misbehaviour of the next `/stream` request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and body (and `Retry-After`).
    Status(u16, String, Option<u32>),
    /// Close the connection without an answer.
    Close,
    /// Wait this long before handling the request.
    Delay(u64),
    /// Grant the renewal, then close without answering (the reply is lost).
    LostReply,
    /// Answer with the previous answer to this agent again (a replay).
    Replay,
    /// Grant the renewal, but answer 200 with this body (not JSON, or huge).
    GrantGarbage(String),
}

/// Random faults, seeded: a share of `/stream` calls fail (never twice in a row for one
/// agent), the gateway goes down for whole seconds, some transactions' replies are lost.
pub struct Chaos {
    pub rng: fastrand::Rng,
    pub stream_rate: f64,
    pub gateway_rate: f64,
    pub send_rate: f64,
    last_faulted: HashSet<String>,
}

impl Chaos {
    pub fn new(seed: u64, stream_rate: f64, gateway_rate: f64, send_rate: f64) -> Chaos {
        Chaos {
            rng: fastrand::Rng::with_seed(seed),
            stream_rate,
            gateway_rate,
            send_rate,
            last_faulted: HashSet::new(),
        }
    }

    fn stream_fault(&mut self, addr: &str) -> Option<Fault> {
        if self.last_faulted.remove(addr) || self.rng.f64() >= self.stream_rate {
            return None;
        }
        self.last_faulted.insert(addr.to_string());
        Some(match self.rng.u8(0..8) {
            0 => Fault::Status(503, "upstream unavailable".into(), None),
            1 => Fault::Status(500, "<html>oops</html>".into(), None),
            2 => Fault::Close,
            3 => Fault::Delay(1_500),
            4 => Fault::GrantGarbage("<html>ok</html>".into()),
            5 => Fault::GrantGarbage(format!(
                "{{\"end_stream\": 1, \"pad\": \"{}\"}}",
                "x".repeat(200_000)
            )),
            6 => Fault::Status(429, "{}".into(), Some(1)),
            _ => Fault::LostReply,
        })
    }

    fn send_fault(&mut self) -> Option<chain::SendFault> {
        if self.rng.f64() >= self.send_rate {
            return None;
        }
        Some(match self.rng.u8(0..3) {
            0 => chain::SendFault::LostReply,
            1 => chain::SendFault::SlowReply(1_500),
            _ => chain::SendFault::Refuse("temporarily unavailable".into()),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    pub epoch: i64,
}

pub struct State {
    /// Genesis (a whole second): round r starts at genesis + r x round_ms, epoch e at
    /// genesis + e x epoch_ms; epoch 100 began one to two seconds before the fake started.
    pub genesis_ms: i64,
    pub t0: i64,
    pub epoch_base: i64,
    pub epoch_ms: i64,
    pub round_ms: i64,
    pub window_ms: i64,
    pub policy: RenewalPolicy,
    /// Addresses registered with the stream service (`None`: everyone).
    pub registered: Option<HashSet<String>>,
    pub windows: HashMap<String, Vec<Window>>,
    pub last_answer: HashMap<String, (u16, String)>,
    pub stream_faults: VecDeque<Fault>,
    pub gateway_down: bool,
    /// The gateway answers 503 until then (chaos outages).
    pub gateway_down_until: i64,
    pub chaos: Option<Chaos>,
    /// The stream service answers after a uniform delay in this range of ms.
    pub stream_latency_ms: Option<(u64, u64)>,
    /// Every faulted `/stream` call: (address, time, fault).
    pub faults: Vec<(String, i64, String)>,
    /// Ends of windows granted whose answer the client may not have read.
    pub lost_windows: HashSet<(String, i64)>,
    pub chain: chain::Chain,
    /// `/stream` for this address is answered no sooner than this time (a renewal placed
    /// to the millisecond).
    pub stream_hold: HashMap<String, i64>,
    /// "Already streaming" answers given, per address.
    pub refusals: HashMap<String, usize>,
    /// "Already streaming" answers give `end_stream` in seconds (the spec allows both).
    pub end_in_seconds: bool,
    /// The network's clock minus the test host's: every time the fake gives (Date headers,
    /// `end_stream`, `can_stream_again_at`, rounds) is this much ahead of the host's.
    pub clock_offset_ms: i64,
    /// What the `Date` header says.
    pub date: DateHeader,
    /// The gateway gives no genesis time and no round numbers (only rounds passed).
    pub omit_genesis: bool,
    /// Until this time the gateway reports this epoch (another network, a stale cache).
    pub wrong_epoch: Option<(i64, i64)>,
    pub stream_requests: usize,
    pub status_requests: usize,
    /// Every request the gateway routes answered (status, config, views, transactions).
    pub gateway_requests: usize,
}

impl State {
    pub fn epoch_at(&self, t: i64) -> i64 {
        self.epoch_base + (t - self.t0).div_euclid(self.epoch_ms)
    }

    /// Windows granted per (address, epoch).
    pub fn granted_per_epoch(&self) -> HashMap<(String, i64), i64> {
        let mut out = HashMap::new();
        for (addr, ws) in &self.windows {
            for w in ws {
                *out.entry((addr.clone(), w.epoch)).or_insert(0) += 1;
            }
        }
        out
    }

    /// The longest time any agent went without a window between its first and last one.
    pub fn max_gap_ms(&self) -> i64 {
        let mut worst = 0;
        for ws in self.windows.values() {
            for pair in ws.windows(2) {
                worst = worst.max(pair[1].start - pair[0].end);
            }
        }
        worst
    }

    /// The current epoch on the contract's shard (it may lag the metachain).
    pub fn contract_epoch(&self) -> u64 {
        self.epoch_at(now_ms() - self.chain.shard_lag_ms) as u64
    }

    /// Lets the chain execute the transactions whose time has come.
    pub fn advance(&mut self) {
        let (t0, base, len) = (self.t0, self.epoch_base, self.epoch_ms);
        self.chain
            .advance(now_ms(), &|t| base + (t - t0).div_euclid(len));
    }

    fn current_end(&self, addr: &str) -> Option<i64> {
        self.windows.get(addr).and_then(|w| w.last()).map(|w| w.end)
    }

    fn grant(&mut self, addr: &str, now: i64) -> (u16, String) {
        let end = now + self.window_ms;
        let epoch = self.epoch_at(now);
        self.windows
            .entry(addr.to_string())
            .or_default()
            .push(Window {
                start: now,
                end,
                epoch,
            });
        (
            200,
            json!({"end_stream": end + self.clock_offset_ms, "message": "stream started"})
                .to_string(),
        )
    }

    /// Handles a renewal whose answer will not reach the client intact.
    fn stream_lost(&mut self, body: &str, addr: &str) -> (u16, String) {
        let reply = self.stream(body);
        if reply.0 == 200 {
            let end = self.current_end(addr).unwrap();
            self.lost_windows.insert((addr.to_string(), end));
        }
        reply
    }

    fn stream(&mut self, body: &str) -> (u16, String) {
        let Ok(req) = serde_json::from_str::<Value>(body) else {
            return (400, r#"{"error":"bad json"}"#.into());
        };
        let addr = req["address"].as_str().unwrap_or("");
        let sig = req["signature"].as_str().unwrap_or("");
        let valid = req["message"] == "stream" && chain::valid_stream_signature(addr, sig);
        if !valid {
            return (401, r#"{"error":"invalid signature"}"#.into());
        }
        if let Some(reg) = &self.registered {
            if !reg.contains(addr) {
                return (404, r#"{"error":"agent not registered"}"#.into());
            }
        }
        let now = now_ms();
        let Some(end) = self.current_end(addr) else {
            return self.grant(addr, now);
        };
        let open_at = match self.policy {
            RenewalPolicy::Early { accept_before_ms } => end - accept_before_ms,
            RenewalPolicy::AfterEnd { .. } => end,
        };
        if now >= open_at {
            return self.grant(addr, now);
        }
        *self.refusals.entry(addr.to_string()).or_default() += 1;
        let end = end + self.clock_offset_ms;
        let shown_end = if self.end_in_seconds {
            json!(end / 1000)
        } else {
            json!(end)
        };
        let mut answer = json!({"error": "Agent is already streaming", "end_stream": shown_end});
        if matches!(
            self.policy,
            RenewalPolicy::Early { .. } | RenewalPolicy::AfterEnd { say_when: true }
        ) {
            answer["can_stream_again_at"] = json!(open_at + self.clock_offset_ms);
        }
        (403, answer.to_string())
    }

    fn network_status(&self) -> (u16, String) {
        // Rounds count the same on any clock; only their times (genesis) carry the offset.
        let now = now_ms();
        let rounds_per_epoch = self.epoch_ms / self.round_ms;
        let current_round = (now - self.genesis_ms) / self.round_ms;
        let epoch = match self.wrong_epoch {
            Some((until, wrong)) if now < until => wrong,
            _ => self.epoch_at(now),
        };
        let first_round = (epoch * rounds_per_epoch).min(current_round);
        let mut status = json!({
            "erd_epoch_number": epoch,
            "erd_current_round": current_round,
            "erd_round_at_epoch_start": first_round,
            "erd_rounds_passed_in_current_epoch": current_round - first_round,
            "erd_rounds_per_epoch": rounds_per_epoch,
            "erd_nonce": current_round,
        });
        if self.omit_genesis {
            let o = status.as_object_mut().unwrap();
            o.remove("erd_current_round");
            o.remove("erd_round_at_epoch_start");
        }
        let data = json!({ "status": status });
        (
            200,
            json!({"data": data, "error": "", "code": "successful"}).to_string(),
        )
    }

    fn network_config(&self) -> (u16, String) {
        let data = json!({"config": {
            "erd_chain_id": self.chain.chain_id,
            "erd_min_gas_price": self.chain.min_gas_price,
            "erd_min_gas_limit": self.chain.min_gas_limit,
            "erd_gas_per_data_byte": self.chain.gas_per_data_byte,
            "erd_gas_price_modifier": modifier(self.chain.modifier_num, self.chain.modifier_den),
            "erd_round_duration": self.round_ms,
            "erd_rounds_per_epoch": self.epoch_ms / self.round_ms,
        }});
        let mut data = data;
        if !self.omit_genesis {
            data["config"]["erd_start_time"] =
                json!((self.genesis_ms + self.clock_offset_ms) / 1000);
        }
        (
            200,
            json!({"data": data, "error": "", "code": "successful"}).to_string(),
        )
    }
}

/// What the handler decided to do with a connection.
pub enum Action {
    Answer(u16, String, Vec<(String, String)>),
    Close,
}

pub struct FakeClaws {
    pub url: String,
    pub state: Arc<Mutex<State>>,
}

impl FakeClaws {
    /// 10-minute windows renewable in their last second, 1-minute epochs: in a short test
    /// every agent renews once.
    pub fn steady() -> FakeClaws {
        FakeClaws::start(
            600_000,
            RenewalPolicy::Early {
                accept_before_ms: 1_000,
            },
            60_000,
        )
    }

    pub fn start(window_ms: i64, policy: RenewalPolicy, epoch_ms: i64) -> FakeClaws {
        let epoch_base = 100;
        // A whole second, so that epoch 100 began one to two seconds ago: its first rounds
        // (when the epoch before it is not billable yet) are over when a test starts.
        let genesis_ms = (now_ms() - epoch_base * epoch_ms).div_euclid(1000) * 1000 - 1000;
        let round_ms = [100, 50, 10, 1]
            .into_iter()
            .find(|r| epoch_ms % r == 0)
            .unwrap();
        let state = Arc::new(Mutex::new(State {
            genesis_ms,
            t0: genesis_ms + epoch_base * epoch_ms,
            epoch_base,
            epoch_ms,
            round_ms,
            window_ms,
            policy,
            registered: None,
            windows: HashMap::new(),
            last_answer: HashMap::new(),
            stream_faults: VecDeque::new(),
            gateway_down: false,
            gateway_down_until: 0,
            chaos: None,
            stream_latency_ms: None,
            faults: Vec::new(),
            lost_windows: HashSet::new(),
            chain: chain::Chain::default(),
            stream_hold: HashMap::new(),
            refusals: HashMap::new(),
            end_in_seconds: false,
            clock_offset_ms: 0,
            date: DateHeader::Correct,
            omit_genesis: false,
            wrong_epoch: None,
            stream_requests: 0,
            status_requests: 0,
            gateway_requests: 0,
        }));
        let handler_state = state.clone();
        let url = http::serve(move |method, path, body| {
            let action = handle(&handler_state, method, path, body);
            with_date(&handler_state, action)
        });
        FakeClaws { url, state }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn stream_url(&self) -> String {
        format!("{}/stream", self.url)
    }
}

fn handle(state: &Mutex<State>, method: &str, path: &str, body: &str) -> Action {
    let answer = |(code, body): (u16, String)| Action::Answer(code, body, Vec::new());
    match (method, path) {
        ("POST", "/stream") => {
            let addr = serde_json::from_str::<Value>(body)
                .ok()
                .and_then(|v| v["address"].as_str().map(str::to_string))
                .unwrap_or_default();
            let hold = state.lock().unwrap().stream_hold.get(&addr).copied();
            if let Some(until) = hold {
                let wait = until - now_ms();
                if wait > 0 {
                    std::thread::sleep(Duration::from_millis(wait as u64));
                }
            }
            let latency = state.lock().unwrap().stream_latency_ms;
            if let Some((lo, hi)) = latency {
                std::thread::sleep(Duration::from_micros(fastrand::u64(lo * 1000..=hi * 1000)));
            }
            let fault = {
                let mut s = state.lock().unwrap();
                s.stream_requests += 1;
                let planned = s.stream_faults.pop_front();
                let fault =
                    planned.or_else(|| s.chaos.as_mut().and_then(|c| c.stream_fault(&addr)));
                if let Some(f) = &fault {
                    let name = format!("{f:?}").chars().take(40).collect();
                    s.faults.push((addr.clone(), now_ms(), name));
                }
                fault
            };
            match fault {
                Some(Fault::Delay(ms)) => {
                    std::thread::sleep(Duration::from_millis(ms));
                    // Past the client's timeout the answer is lost, yet the renewal happened.
                    return answer(state.lock().unwrap().stream_lost(body, &addr));
                }
                Some(Fault::Close) => return Action::Close,
                Some(Fault::Status(code, body, retry_after)) => {
                    let headers = retry_after
                        .map(|s| vec![("Retry-After".to_string(), s.to_string())])
                        .unwrap_or_default();
                    return Action::Answer(code, body, headers);
                }
                Some(Fault::Replay) => {
                    let s = state.lock().unwrap();
                    if let Some(last) = s.last_answer.get(&addr) {
                        return answer(last.clone());
                    }
                }
                Some(Fault::LostReply) => {
                    let _ = state.lock().unwrap().stream_lost(body, &addr);
                    return Action::Close;
                }
                Some(Fault::GrantGarbage(garbage)) => {
                    let (code, reply) = state.lock().unwrap().stream_lost(body, &addr);
                    return answer(if code == 200 {
                        (200, garbage)
                    } else {
                        (code, reply)
                    });
                }
                None => {}
            }
            let mut s = state.lock().unwrap();
            let reply = s.stream(body);
            s.last_answer.insert(addr, reply.clone());
            answer(reply)
        }
        _ if count_gateway(state) && gateway_refuses(state) => answer((
            503,
            r#"{"data":null,"error":"gateway down","code":"internal_issue"}"#.into(),
        )),
        ("POST", "/transaction/send") => {
            let fault = {
                let mut s = state.lock().unwrap();
                let planned = s.chain.send_faults.pop_front();
                planned.or_else(|| s.chaos.as_mut().and_then(Chaos::send_fault))
            };
            match fault {
                Some(chain::SendFault::Refuse(m)) => {
                    let body = json!({"data": null, "error": m, "code": "bad_request"}).to_string();
                    return answer((400, body));
                }
                Some(chain::SendFault::SlowReply(ms)) => {
                    let reply = {
                        let mut s = state.lock().unwrap();
                        s.advance();
                        s.chain.send(body, now_ms())
                    };
                    std::thread::sleep(Duration::from_millis(ms));
                    return answer(reply);
                }
                Some(chain::SendFault::LostReply) => {
                    let mut s = state.lock().unwrap();
                    s.advance();
                    s.chain.send(body, now_ms());
                    return Action::Close;
                }
                None => {}
            }
            let mut s = state.lock().unwrap();
            s.advance();
            answer(s.chain.send(body, now_ms()))
        }
        ("POST", "/transaction/cost") => {
            let mut s = state.lock().unwrap();
            s.advance();
            let current = s.contract_epoch();
            answer(s.chain.cost(body, current))
        }
        ("POST", p) if p.starts_with("/transaction/simulate") => {
            let mut s = state.lock().unwrap();
            s.advance();
            let current = s.contract_epoch();
            answer(s.chain.simulate(body, current))
        }
        ("POST", "/vm-values/query") => {
            let mut s = state.lock().unwrap();
            s.advance();
            answer(s.chain.query(body))
        }
        ("GET", p) if p.starts_with("/address/") => {
            let mut s = state.lock().unwrap();
            s.advance();
            answer(s.chain.account(&p["/address/".len()..]))
        }
        ("GET", p) if p.starts_with("/transaction/") => {
            let mut s = state.lock().unwrap();
            s.advance();
            let rest = &p["/transaction/".len()..];
            if let Some(hash) = rest.strip_suffix("/process-status") {
                answer(s.chain.process_status(hash))
            } else if let Some(hash) = rest.strip_suffix("/status") {
                answer(s.chain.status(hash))
            } else if let Some(hash) = rest.strip_suffix("?withResults=true") {
                answer(s.chain.with_results(hash))
            } else {
                answer((
                    404,
                    r#"{"data":null,"error":"no route","code":"bad_request"}"#.into(),
                ))
            }
        }
        ("GET", "/network/status/4294967295") => {
            let mut s = state.lock().unwrap();
            s.status_requests += 1;
            answer(s.network_status())
        }
        ("GET", "/network/config") => answer(state.lock().unwrap().network_config()),
        _ => answer((
            404,
            r#"{"data":null,"error":"no route","code":"bad_request"}"#.into(),
        )),
    }
}

/// What the fake's `Date` header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateHeader {
    /// The network's time (the host's plus the offset).
    Correct,
    Missing,
    Nonsense,
}

/// Adds the `Date` header every HTTP server sends (RFC 9110), on the network's clock.
fn with_date(state: &Mutex<State>, action: Action) -> Action {
    let Action::Answer(code, body, mut headers) = action else {
        return action;
    };
    let (offset, mode) = {
        let s = state.lock().unwrap();
        (s.clock_offset_ms, s.date)
    };
    let at = std::time::UNIX_EPOCH + Duration::from_millis((now_ms() + offset).max(0) as u64);
    match mode {
        DateHeader::Correct => headers.push(("Date".into(), httpdate::fmt_http_date(at))),
        DateHeader::Nonsense => headers.push(("Date".into(), "yesterday at noon-ish".into())),
        DateHeader::Missing => {}
    }
    Action::Answer(code, body, headers)
}

/// Counts a gateway request (every route but the stream service's); always true.
fn count_gateway(state: &Mutex<State>) -> bool {
    state.lock().unwrap().gateway_requests += 1;
    true
}

/// Whether the gateway is down for this request: by switch, by a chaos outage in progress,
/// or by a new outage starting now (then for 0.5 to 2.5 s).
fn gateway_refuses(state: &Mutex<State>) -> bool {
    let mut s = state.lock().unwrap();
    let now = now_ms();
    if s.gateway_down || now < s.gateway_down_until {
        return true;
    }
    let outage = s
        .chaos
        .as_mut()
        .and_then(|c| (c.rng.f64() < c.gateway_rate).then(|| c.rng.i64(500..2_500)));
    if let Some(ms) = outage {
        s.gateway_down_until = now + ms;
        return true;
    }
    false
}

/// Wallet number `i` of a fixed, seeded series (the same on every run).
pub fn seeded_wallet(i: u64) -> stream_agency::crypto::keys::Wallet {
    let mut seed = [5u8; 32];
    seed[..8].copy_from_slice(&i.to_be_bytes());
    stream_agency::crypto::keys::Wallet::from_seed(&seed)
}

/// A scratch directory with a database path, and the binary to run in it.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
    pub db: PathBuf,
}

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Runs `cmd` to its end.
    pub fn of(mut cmd: Command) -> Ran {
        let out: Output = cmd.output().unwrap();
        Ran {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs `cmd` and asserts it succeeded (its stderr shown if not).
    pub fn ok(cmd: Command) -> Ran {
        let r = Ran::of(cmd);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        r
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("agency.db");
        Sandbox { dir, db }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stream-agency"));
        cmd.arg("--db")
            .arg(&self.db)
            .args(args)
            .current_dir(self.dir.path());
        cmd.env_remove("RUST_LOG");
        for (k, _) in std::env::vars() {
            if k.starts_with("STREAM_AGENCY_") {
                cmd.env_remove(k);
            }
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Ran {
        Ran::of(self.command(args))
    }

    /// `run` against `fake`, ticking at least every second, with `extra` options.
    pub fn spawn_run(&self, fake: &FakeClaws, extra: &[&str]) -> Child {
        let mut args: Vec<String> = vec!["run".into(), "--poll-seconds".into(), "1".into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(net_args(fake));
        self.spawn(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(r.code, 0, "{args:?} failed: {}{}", r.stdout, r.stderr);
        r.stdout
    }

    pub fn enroll_all(&self) {
        for (_, addr, sig) in wallets() {
            self.ok(&["enroll", "--address", &addr, "--signature", &sig]);
        }
    }

    /// Enrolls `n` generated agents ([`seeded_wallet`] 0..n) from one file.
    pub fn enroll_generated(&self, n: u64) {
        let mut lines = String::new();
        for i in 0..n {
            let w = seeded_wallet(i);
            lines.push_str(&format!(
                "{}\t{}\n",
                w.address(),
                hex::encode(w.sign_message(b"stream"))
            ));
        }
        let file = self.dir.path().join("agents.tsv");
        std::fs::write(&file, lines).unwrap();
        self.ok(&["enroll", "--from-file", file.to_str().unwrap()]);
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub fn conn(&self) -> rusqlite::Connection {
        let c = rusqlite::Connection::open(&self.db).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    /// usage_windows per (address, epoch).
    pub fn usage(&self) -> HashMap<(String, i64), i64> {
        let c = self.conn();
        let mut stmt = c
            .prepare("SELECT a.address, u.epoch, u.windows FROM usage_windows u JOIN agents a ON a.id = u.agent_id")
            .unwrap();
        stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    pub fn query_i64(&self, sql: &str) -> i64 {
        self.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    pub fn file_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.db).unwrap_or_default()
    }
}

/// Runtime flags pointing the tool at the fake.
pub fn net_args(fake: &FakeClaws) -> Vec<String> {
    vec![
        "--stream-url".into(),
        fake.stream_url(),
        "--epoch-api-url".into(),
        fake.url.clone(),
    ]
}

/// The Content-Length of an HTTP head (0 when absent).
pub fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0)
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// Sends SIGTERM and waits for the exit status.
pub fn terminate(child: Child) -> (i32, String, String) {
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A gas price modifier as the gateway writes it (`"0.01"`).
fn modifier(num: u128, den: u128) -> String {
    let decimals = den.to_string().len() - 1;
    let int = num / den;
    let frac = num % den;
    if decimals == 0 {
        int.to_string()
    } else {
        format!("{int}.{frac:0decimals$}")
    }
}
