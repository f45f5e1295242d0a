//! Billing test harness: three agents enrolled with the agency and on the fake escrow,
//! bob as the operator, and helpers that tick and compare the database with the chain.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use super::chain::{EscrowAgent, SendFault, CONTRACT};
use super::*;

pub struct Bill {
    pub fake: FakeClaws,
    pub sb: Sandbox,
    pub pem: PathBuf,
    pub ids: HashMap<String, i64>,
}

pub const ALICE: &str = "claw1qyu5wthldzr8wx5c9ucg8kjagg0jfs53s8nr3zpz3hypefsdd8ss0ekavn";
pub const CAROL: &str = "claw1k2s324ww2g0yj38qn2ch2jwctdy8mnfxep94q9arncc6xecg3xaq368h7r";

/// Three agents enrolled with the agency and on the escrow; bob is the operator.
pub fn setup(window_ms: i64, epoch_ms: i64) -> Bill {
    let fake = FakeClaws::start(
        window_ms,
        RenewalPolicy::Early {
            accept_before_ms: window_ms / 2,
        },
        epoch_ms,
    );
    let sb = Sandbox::new();
    sb.enroll_all();
    let pem = sb.dir.path().join("operator.pem");
    std::fs::copy(data_dir().join("bob.pem"), &pem).unwrap();
    std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o600)).unwrap();
    {
        let mut s = fake.state();
        for (_, addr, _) in wallets() {
            s.chain.agents.insert(addr, EscrowAgent::default());
        }
    }
    let ids = wallets()
        .into_iter()
        .map(|(_, addr, _)| {
            let id = sb
                .conn()
                .query_row("SELECT id FROM agents WHERE address = ?1", [&addr], |r| {
                    r.get(0)
                })
                .unwrap();
            (addr, id)
        })
        .collect();
    Bill { fake, sb, pem, ids }
}

impl Bill {
    pub fn args(&self, cmd: &str) -> Vec<String> {
        let mut a: Vec<String> = vec![
            cmd.into(),
            "--lead-seconds".into(),
            "1".into(),
            "--jitter-seconds".into(),
            "0".into(),
        ];
        a.extend(net_args(&self.fake));
        a.extend(
            [
                "--billing-enabled",
                "--escrow-contract",
                CONTRACT,
                "--operator-pem",
                self.pem.to_str().unwrap(),
                "--billing-proxy",
                &self.fake.url,
            ]
            .map(String::from),
        );
        a
    }

    pub fn tick(&self) -> Ran {
        self.tick_with(&[])
    }

    /// A tick with more options (they win over the defaults above).
    pub fn tick_with(&self, extra: &[&str]) -> Ran {
        let mut args = self.args("tick");
        args.extend(extra.iter().map(|s| s.to_string()));
        self.sb
            .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Views and reconcile need only the contract and the gateway.
    pub fn reconcile(&self, extra: &[&str]) -> Ran {
        let mut args = vec![
            "reconcile",
            "--escrow-contract",
            CONTRACT,
            "--billing-proxy",
            &self.fake.url,
        ];
        args.extend(extra);
        self.sb.run(&args)
    }

    pub fn current_epoch(&self) -> i64 {
        let s = self.fake.state();
        s.epoch_at(now_ms())
    }

    /// Counted usage for past epochs, as renewals would have left it.
    pub fn usage(&self, address: &str, epoch: i64, windows: i64) {
        self.sb
            .conn()
            .execute(
                "INSERT INTO usage_windows (agent_id, epoch, windows) VALUES (?1, ?2, ?3)",
                [self.ids[address], epoch, windows],
            )
            .unwrap();
    }

    /// Plans a misbehaviour of the next `/transaction/send`.
    pub fn send_fault(&self, fault: SendFault) {
        self.fake.state().chain.send_faults.push_back(fault);
    }

    /// Pauses every agent so that no renewal adds windows while billing settles.
    pub fn pause_all(&self) {
        for (_, addr, _) in wallets() {
            self.sb.ok(&["pause", "--address", &addr]);
        }
    }

    /// Ticks until nothing is in flight and every closed epoch is settled.
    pub fn tick_until_settled(&self) {
        self.tick_until_settled_with(&[])
    }

    pub fn tick_until_settled_with(&self, extra: &[&str]) {
        let settled = wait_for(Duration::from_secs(60), || {
            let r = self.tick_with(extra);
            // 4: the tick ran but settled some epoch without billing (a human should know).
            assert!(
                r.code == 0 || r.code == 4,
                "tick failed: {}{}",
                r.stdout,
                r.stderr
            );
            std::thread::sleep(Duration::from_millis(200));
            let current = self.current_epoch();
            self.sb.query_i64(&format!(
                "SELECT (SELECT COUNT(*) FROM billing_attempts WHERE status = 'pending')
                      + (SELECT COUNT(*) FROM usage_windows WHERE kind IS NULL AND epoch < {current})"
            )) == 0
        });
        assert!(
            settled,
            "billing did not settle: {}",
            self.sb.ok(&["billing-attempts", "--limit", "50"])
        );
    }

    /// Waits (up to a minute) until nothing is in flight, every window has its epoch and
    /// every epoch before `closed` is settled.
    pub fn wait_settled(&self, closed: i64) -> bool {
        wait_for(Duration::from_secs(60), || {
            self.sb.query_i64(&format!(
                "SELECT (SELECT COUNT(*) FROM billing_attempts WHERE status = 'pending')
                      + (SELECT COUNT(*) FROM usage_windows WHERE kind IS NULL AND epoch < {closed})
                      + (SELECT COUNT(*) FROM stream_windows WHERE epoch IS NULL)"
            )) == 0
        })
    }

    /// Every window granted in an epoch before `closed` is counted once, in it; every
    /// transaction executed without failure, each (agent, epoch) billed once.
    pub fn assert_counted_and_billed_once(&self, closed: i64) {
        let s = self.fake.state();
        let counted = self.sb.usage();
        let mut lost = Vec::new();
        for ((agent, epoch), n) in s.granted_per_epoch() {
            let have = counted.get(&(agent.clone(), epoch)).copied();
            if epoch < closed && have != Some(n) {
                lost.push((agent, epoch, n, have));
            }
        }
        assert!(lost.is_empty(), "granted, counted: {lost:?}");
        assert!(
            s.chain.executed.iter().all(|x| x.error.is_none()),
            "{:?}",
            s.chain.executed
        );
        let mut once = std::collections::HashSet::new();
        assert!(
            s.chain
                .executed
                .iter()
                .all(|x| once.insert((x.agent.clone(), x.epoch))),
            "billed once"
        );
    }

    /// Every (agent, epoch) billed by us is billed on chain once, with the windows we sent.
    pub fn assert_billed_exactly_once(&self) {
        let s = self.fake.state();
        let mut successes: HashMap<(String, u64), usize> = HashMap::new();
        for e in s.chain.executed.iter().filter(|e| e.error.is_none()) {
            *successes.entry((e.agent.clone(), e.epoch)).or_default() += 1;
        }
        assert!(
            successes.values().all(|&n| n == 1),
            "an epoch was billed twice: {successes:?}"
        );
        let conn = self.sb.conn();
        let mut stmt = conn
            .prepare(
                "SELECT a.address, u.epoch, u.windows, u.billed_windows, u.clipped_windows FROM usage_windows u
                 JOIN agents a ON a.id = u.agent_id WHERE u.billed = 1",
            )
            .unwrap();
        let rows: Vec<(String, i64, i64, Option<i64>, i64)> = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for (addr, epoch, windows, billed, clipped) in rows {
            let on_chain = s.chain.billed.get(&(addr.clone(), epoch as u64)).copied();
            assert_eq!(
                on_chain.map(|w| w as i64),
                billed.or(Some(windows)),
                "{addr} epoch {epoch}"
            );
            assert_eq!(
                billed.unwrap_or(windows) + clipped,
                windows,
                "{addr} epoch {epoch}"
            );
        }
    }

    /// Stops renewals, waits for the epoch of the last ones to close, then ticks until
    /// every closed epoch is settled.
    pub fn settle_after_renewals(&self) {
        self.pause_all();
        let last = self
            .fake
            .state()
            .granted_per_epoch()
            .keys()
            .map(|k| k.1)
            .max()
            .unwrap();
        assert!(wait_for(Duration::from_secs(10), || self.current_epoch() > last));
        self.tick_until_settled();
    }

    /// Every (agent, epoch) of `usage` is billed on chain with exactly its windows.
    pub fn assert_chain_billed(&self, usage: &HashMap<(String, i64), i64>) {
        let s = self.fake.state();
        for ((addr, epoch), windows) in usage {
            let on_chain = s.chain.billed.get(&(addr.clone(), *epoch as u64)).copied();
            assert_eq!(on_chain, Some(*windows as u64), "{addr} epoch {epoch}");
        }
    }

    /// No transaction failed with a message the views could have predicted.
    pub fn assert_no_avoidable_failures(&self) {
        let s = self.fake.state();
        let avoidable: Vec<_> = s
            .chain
            .executed
            .iter()
            .filter_map(|e| e.error.clone())
            .filter(|m| m != "Epoch not closed yet")
            .collect();
        assert!(
            avoidable.is_empty(),
            "failures the views could have predicted: {avoidable:?}"
        );
    }

    pub fn nonces_have_no_gap(&self) {
        let s = self.fake.state();
        let nonces: Vec<u64> = s.chain.executed.iter().map(|e| e.nonce).collect();
        assert_eq!(nonces, (0..nonces.len() as u64).collect::<Vec<_>>());
    }

    /// Every window counted is counted in the epoch the service granted it in, to the
    /// precision a client can know: the service's grant time lies between the request and
    /// its answer, so a window granted closer to a boundary than its request's round trip
    /// may be dated on the other side of it (never further: `tick::opened_at` keeps the
    /// date within the request). Those are excused and counted in the output.
    pub fn assert_windows_in_their_epochs(&self) -> usize {
        let conn = self.sb.conn();
        let rows: Vec<(String, i64, i64, i64, Option<i64>)> = conn
            .prepare(
                "SELECT a.address, w.end_stream_ms, w.epoch, w.opened_ms,
                        (SELECT MAX(t.duration_ms) FROM attempts t WHERE t.agent_id = w.agent_id
                            AND t.end_stream_ms = w.end_stream_ms AND t.status_code = 200)
                 FROM stream_windows w
                 JOIN agents a ON a.id = w.agent_id WHERE w.epoch IS NOT NULL",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let s = self.fake.state();
        let mut excused = 0;
        for (address, end, epoch, opened, round_trip) in &rows {
            let granted = s.windows[address]
                .iter()
                .find(|w| w.end == *end)
                .unwrap_or_else(|| {
                    panic!("{address}: counted a window ending {end} never granted")
                });
            if granted.epoch == *epoch {
                continue;
            }
            // The boundary between the epoch granted and the one counted.
            let boundary = s.genesis_ms + granted.epoch.max(*epoch) * s.epoch_ms;
            let ambiguous = (boundary - granted.start).abs() <= round_trip.unwrap_or(0) + 1
                && (epoch - granted.epoch).abs() == 1;
            if ambiguous {
                excused += 1;
                continue;
            }
            let starts: Vec<(i64, i64, bool)> = conn
                .prepare("SELECT epoch, start_ms, exact FROM epoch_starts ORDER BY epoch")
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            panic!(
                "{address}: window ending {end} counted in epoch {epoch}, granted in {}: granted at {}, opened at {opened} by our clock (round trip {round_trip:?} ms), boundary at {boundary}; epoch starts known: {starts:?}",
                granted.epoch, granted.start
            );
        }
        if excused > 0 {
            println!("{excused} window(s) granted within their request's round trip of a boundary, dated on its other side");
        }
        rows.len()
    }
}
