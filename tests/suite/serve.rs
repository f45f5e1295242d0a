//! `serve`, the HTTP intake, against a real client on 127.0.0.1: every route and status,
//! the limits (head, body, time, connections, rate), slow clients that must not hold up
//! others, signed action messages and their replays, operator tokens, odd addresses, the
//! Python intake's routes, billing's escrow checks, and socket activation.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Child;
use std::time::{Duration, Instant};

use common::bill::{setup, ALICE, CAROL};
use common::*;
use serde_json::{json, Value};
use stream_agency::crypto::keys::Wallet;

/// A running `serve` and where it listens.
struct Server {
    child: Option<Child>,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(sb: &Sandbox, extra: &[&str]) -> Server {
    start_with(sb, extra, false)
}

/// With `log_to_file`, the server's log goes to `serve.log` in the sandbox: a flood of
/// refusals would fill a pipe nobody reads and stall the server.
fn start_with(sb: &Sandbox, extra: &[&str], log_to_file: bool) -> Server {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["serve", "--listen", &listen, "--intake-name", "test-agency"];
    args.extend_from_slice(extra);
    let child = if log_to_file {
        let log = std::fs::File::create(sb.dir.path().join("serve.log")).unwrap();
        sb.command(&args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    } else {
        sb.spawn(&args)
    };
    let addr: SocketAddr = listen.parse().unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || TcpStream::connect(addr).is_ok()),
        "serve did not listen"
    );
    Server {
        child: Some(child),
        addr,
    }
}

/// Sends raw bytes, reads one answer: (status, headers, body).
fn raw(addr: SocketAddr, bytes: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(bytes).unwrap();
    read_answer(&mut s)
}

fn read_answer(s: &mut TcpStream) -> (u16, String, String) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len = content_length(&head);
            if buf.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).to_string();
                let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                return (status, head, body);
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return (0, String::new(), String::from_utf8_lossy(&buf).into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &str,
) -> (u16, Value) {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let (status, _, body) = raw(addr, text.as_bytes());
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn wallet(name: &str) -> Wallet {
    Wallet::from_pem_file(&data_dir().join(format!("{name}.pem"))).unwrap()
}

fn enroll_body(w: &Wallet) -> String {
    json!({"address": w.address().to_bech32(), "signature": hex::encode(w.sign_message(b"stream"))})
        .to_string()
}

/// A signed action message of `w` for this intake, expiring `ahead_s` from now.
fn action(w: &Wallet, name: &str, action: &str, ahead_s: i64) -> String {
    let expiry = now_ms() / 1000 + ahead_s;
    let message = format!(
        "stream-agency:{name}:{action}:{}:{expiry}",
        w.address().to_bech32()
    );
    json!({"message": message, "signature": hex::encode(w.sign_message(message.as_bytes()))})
        .to_string()
}

#[test]
fn an_agent_enrolls_with_its_signature_and_acts_on_itself_with_signed_messages() {
    let sb = Sandbox::new();
    sb.ok(&["init-db"]);
    let srv = start(&sb, &[]);
    let (alice, bob) = (wallet("alice"), wallet("bob"));
    let a = alice.address().to_bech32();
    let (status, view) = request(srv.addr, "POST", "/v1/enroll", &[], &enroll_body(&alice));
    assert_eq!(status, 201, "{view}");
    assert_eq!(view["status"], "active");
    assert!(!view
        .to_string()
        .contains(&hex::encode(alice.sign_message(b"stream"))));
    assert_eq!(
        request(srv.addr, "POST", "/v1/enroll", &[], &enroll_body(&alice)).0,
        200
    );
    // Wrong signatures.
    let other =
        json!({"address": a, "signature": hex::encode(bob.sign_message(b"stream"))}).to_string();
    assert_eq!(request(srv.addr, "POST", "/v1/enroll", &[], &other).0, 403);
    let junk = json!({"address": a, "signature": "00"}).to_string();
    assert_eq!(request(srv.addr, "POST", "/v1/enroll", &[], &junk).0, 403);
    // The agent pauses itself; the message is good once.
    let pause = action(&alice, "test-agency", "pause", 60);
    let path = format!("/v1/agents/{a}/pause");
    let (status, view) = request(srv.addr, "POST", &path, &[], &pause);
    assert_eq!(
        (status, view["status"].as_str()),
        (200, Some("paused")),
        "{view}"
    );
    assert_eq!(
        request(srv.addr, "POST", &path, &[], &pause).0,
        409,
        "replay"
    );
    // Enrolling again (anyone with the signature could) does not undo its own pause.
    request(srv.addr, "POST", "/v1/enroll", &[], &enroll_body(&alice));
    assert_eq!(
        request(srv.addr, "GET", &format!("/v1/agents/{a}"), &[], "").1["status"],
        "paused"
    );
    for (bad, why) in [
        (action(&alice, "test-agency", "resume", -5), "expired"),
        (
            action(&alice, "test-agency", "resume", 3_600),
            "too far ahead",
        ),
        (
            action(&alice, "other-agency", "resume", 60),
            "another agency",
        ),
        (
            action(&alice, "test-agency", "remove", 60),
            "another action",
        ),
    ] {
        let (status, body) = request(
            srv.addr,
            "POST",
            &format!("/v1/agents/{a}/resume"),
            &[],
            &bad,
        );
        assert_eq!(status, 403, "{why}: {body}");
        assert!(body["error"].is_string());
    }
    // Bob cannot act on alice.
    let forged = action(&bob, "test-agency", "resume", 60).replace(&bob.address().to_bech32(), &a);
    assert_eq!(
        request(
            srv.addr,
            "POST",
            &format!("/v1/agents/{a}/resume"),
            &[],
            &forged
        )
        .0,
        403
    );
    let resume = action(&alice, "test-agency", "resume", 60);
    assert_eq!(
        request(
            srv.addr,
            "POST",
            &format!("/v1/agents/{a}/resume"),
            &[],
            &resume
        )
        .1["status"],
        "active"
    );
    // The replay is refused across a restart too.
    drop(srv);
    let srv = start(&sb, &[]);
    assert_eq!(
        request(
            srv.addr,
            "POST",
            &format!("/v1/agents/{a}/resume"),
            &[],
            &resume
        )
        .0,
        409
    );
    // Removal by the agent: no windows to bill, removed at once, history kept.
    let remove = action(&alice, "test-agency", "remove", 60);
    let (status, view) = request(
        srv.addr,
        "POST",
        &format!("/v1/agents/{a}/remove"),
        &[],
        &remove,
    );
    assert_eq!(
        (status, view["status"].as_str()),
        (200, Some("removed")),
        "{view}"
    );
    assert_eq!(
        sb.query_i64("SELECT COUNT(*) FROM agents WHERE removed_ms IS NOT NULL"),
        1
    );
    // A removed agent is not served again by whoever holds its stream signature...
    let (status, body) = request(srv.addr, "POST", "/v1/enroll", &[], &enroll_body(&alice));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("action_message"),
        "{body}"
    );
    // ... only by its own fresh signed action.
    let mut again: Value = serde_json::from_str(&enroll_body(&alice)).unwrap();
    let message: Value =
        serde_json::from_str(&action(&alice, "test-agency", "enroll", 300)).unwrap();
    again["action_message"] = message["message"].clone();
    again["action_signature"] = message["signature"].clone();
    let (status, body) = request(srv.addr, "POST", "/v1/enroll", &[], &again.to_string());
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("active")),
        "{body}"
    );
    let (status, _) = request(srv.addr, "POST", "/v1/enroll", &[], &again.to_string());
    assert_eq!(status, 200, "a known, active agent needs no action");
}

#[test]
fn operator_routes_need_a_live_token() {
    let sb = Sandbox::new();
    sb.ok(&["init-db"]);
    let token = sb.ok(&["token", "new", "--name", "ops"]).trim().to_string();
    assert_eq!(token.len(), 64);
    assert!(
        !sb.file_bytes().windows(64).any(|w| w == token.as_bytes()),
        "stored in clear"
    );
    let srv = start(&sb, &[]);
    let alice = wallet("alice");
    let a = alice.address().to_bech32();
    request(srv.addr, "POST", "/v1/enroll", &[], &enroll_body(&alice));
    let bearer = format!("Authorization: Bearer {token}");
    let api_key = format!("X-API-Key: {token}");
    assert_eq!(request(srv.addr, "GET", "/v1/report", &[], "").0, 401);
    assert_eq!(
        request(
            srv.addr,
            "GET",
            "/v1/report",
            &["Authorization: Bearer nope"],
            ""
        )
        .0,
        401,
        "a token never issued is missing credentials, not a forbidden act"
    );
    let (status, head, _) =
        raw(srv.addr, b"GET /v1/report HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status, 401);
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    let (status, report) = request(srv.addr, "GET", "/v1/report", &[&bearer], "");
    assert_eq!(status, 200);
    assert_eq!(report[0]["address"], a.as_str());
    let (status, metrics) = request(srv.addr, "GET", "/metrics", &[&api_key], "");
    assert_eq!(status, 200);
    assert!(metrics.as_str().unwrap().contains("stream_agency_agents"));
    // The operator acts on any agent without a message; the Python routes too.
    let (status, view) = request(
        srv.addr,
        "POST",
        &format!("/v1/agents/{a}/pause"),
        &[&bearer],
        "",
    );
    assert_eq!((status, view["status"].as_str()), (200, Some("paused")));
    // Most JSON clients send `{}`: a live token needs no signed message, whatever the body.
    let (status, view) = request(
        srv.addr,
        "POST",
        &format!("/v1/agents/{a}/resume"),
        &[&bearer],
        "{}",
    );
    assert_eq!(
        (status, view["status"].as_str()),
        (200, Some("active")),
        "{view}"
    );
    let (status, _) = request(
        srv.addr,
        "POST",
        &format!("/v1/agents/{a}/pause"),
        &[&bearer],
        "{}",
    );
    assert_eq!(status, 200);
    let body = json!({"address": a}).to_string();
    assert_eq!(
        request(srv.addr, "POST", "/resume", &[&api_key], &body).1["status"],
        "active"
    );
    assert_eq!(request(srv.addr, "POST", "/pause", &[], &body).0, 401);
    sb.ok(&["token", "revoke", "--name", "ops"]);
    assert_eq!(
        request(srv.addr, "GET", "/report", &[&bearer], "").0,
        401,
        "revoked"
    );
    let listed = sb.ok(&["token", "list", "--format", "json"]);
    assert!(
        listed.contains("ops") && !listed.contains(&token),
        "{listed}"
    );
}

#[test]
fn odd_input_gets_one_json_error_with_a_fitting_status() {
    let sb = Sandbox::new();
    sb.ok(&["init-db"]);
    let srv = start(&sb, &[]);
    let alice = wallet("alice");
    let a = alice.address().to_bech32();
    request(srv.addr, "POST", "/v1/enroll", &[], &enroll_body(&alice));
    let upper = a.to_ascii_uppercase();
    assert_eq!(
        request(srv.addr, "GET", &format!("/v1/agents/{upper}"), &[], "").1["address"],
        a.as_str()
    );
    let mut mixed = a.clone();
    mixed.replace_range(10..11, &mixed[10..11].to_ascii_uppercase());
    let mut checksum = a.clone();
    let last = if a.ends_with('q') { "p" } else { "q" };
    checksum.replace_range(62..63, last);
    for (path, want) in [
        (format!("/v1/agents/{}", &a[..62]), 400),
        (format!("/v1/agents/{a}q"), 400),
        (format!("/v1/agents/{mixed}"), 400),
        (format!("/v1/agents/{checksum}"), 400),
        (format!("/v1/agents/erd{}", &a[4..]), 400),
        ("/v1/agents/../../etc/passwd".to_string(), 404),
        ("/v1/agents/%2e%2e".to_string(), 400),
        ("/nothing".to_string(), 404),
        (format!("/agent?address={a}"), 200),
    ] {
        let (status, body) = request(srv.addr, "GET", &path, &[], "");
        assert_eq!(status, want, "{path}: {body}");
        if status != 200 {
            assert!(body["error"].is_string(), "{path}: {body}");
        }
    }
    for body in [
        "not json",
        "[1]",
        r#"{"address": "a", "address": "b"}"#,
        "{}",
    ] {
        let (status, answer) = request(srv.addr, "POST", "/v1/enroll", &[], body);
        assert_eq!(status, 400, "{body}: {answer}");
    }
    assert_eq!(request(srv.addr, "DELETE", "/v1/enroll", &[], "").0, 405);
    assert_eq!(request(srv.addr, "POST", "/tick", &[], "").0, 404);
    let fee = json!({"address": a, "signature": hex::encode(alice.sign_message(b"stream")), "fee_bps": 900});
    let (status, answer) = request(srv.addr, "POST", "/enroll", &[], &fee.to_string());
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("500"));
    let both =
        b"POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}";
    assert_eq!(raw(srv.addr, both).0, 400);
    let big = format!(
        "POST /v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{}",
        "x".repeat(5000)
    );
    assert_eq!(raw(srv.addr, big.as_bytes()).0, 413);
    let head = format!("GET / HTTP/1.1\r\nX-Pad: {}\r\n\r\n", "y".repeat(9000));
    assert_eq!(raw(srv.addr, head.as_bytes()).0, 431);
}

#[test]
fn slow_clients_never_hold_up_others_and_are_closed_in_time() {
    let sb = Sandbox::new();
    sb.ok(&["init-db"]);
    // As behind the README's proxy (loopback peers are one proxy, not one client).
    let srv = start(&sb, &["--rate", "0", "--trust-proxy"]);
    // 20 clients dribbling a request a byte every 200 ms.
    let mut dribblers: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(srv.addr).unwrap())
        .collect();
    let started = Instant::now();
    let mut waited = Vec::new();
    for round in 0..10 {
        for d in &mut dribblers {
            let _ = d.write_all(&[b"GET /healthz HTTP/1.1\r\n"[round % 23]]);
        }
        let t = Instant::now();
        let (status, _) = request(
            srv.addr,
            "POST",
            "/v1/enroll",
            &[],
            &enroll_body(&wallet("carol")),
        );
        waited.push(t.elapsed());
        assert!(status == 201 || status == 200, "{status}");
        std::thread::sleep(Duration::from_millis(200));
    }
    waited.sort();
    println!(
        "with 20 dribbling clients: enroll answered in median {:?}, max {:?}",
        waited[5], waited[9]
    );
    // Answered while the dribblers dribble, not after their 5 s run out (a server with one
    // blocking read per request would make each enroll wait for them).
    assert!(waited[9] < Duration::from_secs(3), "{waited:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // A request not whole within 5 s of its first byte: 408 and closed.
    let (status, _, _) = read_answer(&mut dribblers[0]);
    assert_eq!(status, 408);
    // A connection that sends nothing is closed after 5 s, without an answer.
    let mut silent = TcpStream::connect(srv.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(silent.read(&mut byte).unwrap_or(0), 0, "closed");
}

#[test]
fn connections_and_rate_are_bounded() {
    let sb = Sandbox::new();
    sb.ok(&["init-db"]);
    let srv = start(&sb, &["--max-connections", "4"]);
    let held: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(srv.addr).unwrap())
        .collect();
    // Until the server has taken the four in (and let go of start's probe connection).
    let mut last = (0, serde_json::Value::Null);
    wait_for(Duration::from_secs(10), || {
        last = request(srv.addr, "GET", "/v1/agents/x", &[], "");
        last.0 == 503
    });
    let (status, body) = last;
    assert_eq!(status, 503, "over --max-connections: {body}");
    assert!(
        body["error"].as_str().unwrap().contains("connections open"),
        "{body}"
    );
    drop(held);
    drop(srv);
    let srv = start(&sb, &["--rate", "1", "--burst", "2"]);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..3 {
        let (status, head, _) = raw(
            srv.addr,
            b"GET /v1/agents/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        statuses.push(status);
        if status == 429 {
            retry_after = head
                .lines()
                .find(|l| l.starts_with("Retry-After"))
                .map(str::to_string);
        }
    }
    assert_eq!(statuses, vec![400, 400, 429], "burst 2, then limited");
    assert_eq!(retry_after.as_deref(), Some("Retry-After: 1"));
}

#[test]
fn healthz_says_what_check_says() {
    let fake = FakeClaws::steady();
    let sb = Sandbox::new();
    sb.ok(&["init-db"]);
    let srv = start(&sb, &[]);
    // Anybody gets the verdict; the reasons only with the operator's token.
    let (status, body) = request(srv.addr, "GET", "/healthz", &[], "");
    assert_eq!(status, 503, "no tick yet: {body}");
    assert!(body.get("reasons").is_none(), "reasons for anybody: {body}");
    let token = sb.ok(&["token", "new", "--name", "ops"]).trim().to_string();
    let bearer = format!("Authorization: Bearer {token}");
    let (status, body) = request(srv.addr, "GET", "/healthz", &[&bearer], "");
    assert_eq!(status, 503, "{body}");
    assert!(
        body["reasons"][0].as_str().unwrap().contains("no tick"),
        "{body}"
    );
    // A new agent enrolls with one request and is renewed by the next tick.
    let (status, _) = request(
        srv.addr,
        "POST",
        "/v1/enroll",
        &[],
        &enroll_body(&wallet("alice")),
    );
    assert_eq!(status, 201);
    let mut args = vec!["tick".to_string()];
    args.extend(net_args(&fake));
    let out = sb.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("1 renewed"), "{out}");
    let (status, body) = request(srv.addr, "GET", "/health", &[], "");
    assert_eq!((status, body["ok"].as_bool()), (200, Some(true)), "{body}");
    // A bill pending for 100 s: within the default 900 s, beyond a serve started with 60.
    sb.conn()
        .execute(
            "INSERT INTO billing_attempts (agent_id, epoch, windows, created_ms, updated_ms, status, kind)
             VALUES (1, 1, 1, ?1, ?1, 'pending', 'pending')",
            [now_ms() - 100_000],
        )
        .unwrap();
    let (status, body) = request(srv.addr, "GET", "/healthz", &[], "");
    assert_eq!(status, 200, "{body}");
    let strict = start(&sb, &["--pending-limit-seconds", "60"]);
    let (status, body) = request(strict.addr, "GET", "/healthz", &[&bearer], "");
    assert_eq!(status, 503, "serve's own thresholds: {body}");
    assert!(body.to_string().contains("pending for"), "{body}");
}

#[test]
fn with_billing_enrollments_are_answered_at_once_and_confirmed_by_the_next_tick() {
    let b = setup(600_000, 60_000);
    {
        let mut s = b.fake.state();
        s.chain.agents.get_mut(ALICE).unwrap().fee_bps = 700;
        s.chain.agents.remove(CAROL);
        s.chain.agents.get_mut(common::chain::BOB).unwrap().status = common::chain::CANCELLED;
    }
    b.sb.conn().execute("DELETE FROM agents", []).unwrap();
    // serve with billing on but no key at all: it never signs.
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let args = [
        "serve",
        "--listen",
        &listen,
        "--intake-name",
        "t",
        "--billing-enabled",
    ];
    let srv = Server {
        child: Some(b.sb.spawn(&args)),
        addr: listen.parse().unwrap(),
    };
    assert!(wait_for(Duration::from_secs(10), || TcpStream::connect(
        srv.addr
    )
    .is_ok()));
    let requests_before = b.fake.state().gateway_requests;
    for w in ["alice", "carol", "bob"] {
        let (status, view) = request(
            srv.addr,
            "POST",
            "/v1/enroll",
            &[],
            &enroll_body(&wallet(w)),
        );
        assert_eq!(status, 201, "{w}: {view}");
        assert_eq!(view["status"], "waiting-for-escrow", "{w}: {view}");
    }
    assert_eq!(
        b.fake.state().gateway_requests,
        requests_before,
        "the intake asked the gateway"
    );
    // The next tick reads them on the escrow: alice is renewed at the escrow's fee, carol
    // (not registered) and bob (cancelled) wait, their views saying why.
    let r = b.tick();
    assert!(r.code == 0 || r.code == 4, "{}{}", r.stdout, r.stderr);
    let fee = b.sb.query_i64(&format!(
        "SELECT fee_bps FROM agents WHERE address = '{ALICE}'"
    ));
    assert_eq!(fee, 700);
    let granted = b.fake.state().windows.clone();
    assert!(granted.contains_key(ALICE), "alice renewed");
    assert!(!granted.contains_key(CAROL) && !granted.contains_key(common::chain::BOB));
    let (_, carol) = request(srv.addr, "GET", &format!("/v1/agents/{CAROL}"), &[], "");
    assert_eq!(carol["status"], "waiting-for-escrow", "{carol}");
    assert!(
        carol["not_renewed_because"]
            .as_str()
            .unwrap()
            .contains("not registered"),
        "{carol}"
    );
    let (_, bob) = request(
        srv.addr,
        "GET",
        &format!("/v1/agents/{}", common::chain::BOB),
        &[],
        "",
    );
    assert!(
        bob["not_renewed_because"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{bob}"
    );
    let (_, alice) = request(srv.addr, "GET", &format!("/v1/agents/{ALICE}"), &[], "");
    assert_eq!(alice["status"], "active", "{alice}");
    // Carol registers on the escrow: read again within seconds (not at the next epoch),
    // confirmed and renewed.
    {
        let mut s = b.fake.state();
        let current = s.contract_epoch();
        let bond = s.chain.min_bond;
        s.chain
            .register(CAROL, (600, 100, u128::MAX / 4), bond, current)
            .unwrap();
    }
    let started = Instant::now();
    let confirmed = wait_for(Duration::from_secs(40), || {
        b.tick();
        b.fake.state().windows.contains_key(CAROL)
    });
    println!(
        "an intake enrollment confirmed {:.1} s after its registration",
        started.elapsed().as_secs_f64()
    );
    assert!(confirmed, "carol registered but was never renewed");
    let fee = b.sb.query_i64(&format!(
        "SELECT fee_bps FROM agents WHERE address = '{CAROL}'"
    ));
    assert_eq!(fee, 600);
    // Re-enrolled, she keeps the escrow's fee; another fee in the body is refused.
    let mut other: Value = serde_json::from_str(&enroll_body(&wallet("alice"))).unwrap();
    other["fee_bps"] = json!(500);
    let (status, body) = request(srv.addr, "POST", "/v1/enroll", &[], &other.to_string());
    assert_eq!(status, 409, "{body}");
}

/// `serve` started as systemd starts it with a socket: the socket `fd` as descriptor 3,
/// LISTEN_FDS=1 and LISTEN_PID the server's own pid (the shell's, which `exec` hands on).
fn serve_on_passed_socket(sb: &Sandbox, fd: i32) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let inner = sb.command(&["serve", "--listen", "127.0.0.1:1"]);
    let mut line = String::from("LISTEN_PID=$$ LISTEN_FDS=1 exec");
    for word in std::iter::once(inner.get_program()).chain(inner.get_args()) {
        line.push_str(&format!(" '{}'", word.to_string_lossy()));
    }
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(line).current_dir(sb.dir.path());
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl).
    unsafe {
        cmd.pre_exec(move || {
            if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0);
            } else if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

#[test]
fn a_socket_passed_by_systemd_is_used() {
    use std::os::fd::AsRawFd;
    let sb = Sandbox::new();
    sb.ok(&["init-db"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    let mut cmd = serve_on_passed_socket(&sb, fd);
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let srv = Server {
        child: Some(child),
        addr,
    };
    let (status, body) = request(srv.addr, "GET", "/healthz", &[], "");
    assert_eq!(status, 503, "answered on the passed socket: {body}");
}

#[test]
fn systemd_socket_activate_hands_its_socket_over_where_present() {
    let tool = std::path::Path::new("/usr/bin/systemd-socket-activate");
    if !tool.exists() {
        println!("skipped: systemd-socket-activate is not installed here");
        return;
    }
    let sb = Sandbox::new();
    sb.ok(&["init-db"]);
    let listen = format!("127.0.0.1:{}", free_port());
    let inner = sb.command(&["serve", "--listen", "127.0.0.1:1"]);
    let mut cmd = std::process::Command::new(tool);
    cmd.arg("-l")
        .arg(&listen)
        .arg(inner.get_program())
        .args(inner.get_args());
    cmd.current_dir(sb.dir.path());
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let srv = Server {
        child: Some(child),
        addr: listen.parse().unwrap(),
    };
    assert!(wait_for(Duration::from_secs(10), || TcpStream::connect(
        srv.addr
    )
    .is_ok()));
    let (status, body) = request(srv.addr, "GET", "/healthz", &[], "");
    assert_eq!(status, 503, "{body}");
    assert!(body["error"].is_string(), "{body}");
}

#[test]
fn enrollments_while_run_renews_1000_agents_are_all_kept() {
    let fake = FakeClaws::steady();
    let sb = Sandbox::new();
    sb.enroll_generated(1_000);
    let srv = start(&sb, &["--rate", "0"]);
    let run = sb.spawn_run(&fake, &["--max-tick-seconds", "600"]);
    let mut codes = Vec::new();
    for i in 1_000..1_200 {
        let (status, body) = request(
            srv.addr,
            "POST",
            "/v1/enroll",
            &[],
            &enroll_body(&seeded_wallet(i)),
        );
        assert!(status == 201, "{status}: {body}");
        codes.push(status);
    }
    assert!(wait_for(Duration::from_secs(120), || fake
        .state()
        .windows
        .len()
        == 1_200));
    let (code, _, stderr) = terminate(run);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("locked"), "{stderr}");
    assert_eq!(sb.query_i64("SELECT COUNT(*) FROM agents"), 1_200);
    let granted = fake.state().granted_per_epoch();
    assert_eq!(sb.usage(), granted, "every window counted once");
    println!(
        "200 intake enrollments while run renewed 1,000 agents: all kept, {} windows counted",
        granted.values().sum::<i64>()
    );
}

#[test]
fn signatures_are_stored_encrypted_and_never_logged_and_public_listening_is_explicit() {
    let sb = Sandbox::new();
    let key = sb.dir.path().join("at-rest.key");
    sb.ok(&["keygen", "--out", key.to_str().unwrap()]);
    sb.ok(&["init-db"]);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let key_arg = key.to_str().unwrap();
    let child = sb.spawn(&["--secret-key-file", key_arg, "serve", "--listen", &listen]);
    let addr: SocketAddr = listen.parse().unwrap();
    assert!(wait_for(Duration::from_secs(10), || TcpStream::connect(
        addr
    )
    .is_ok()));
    let alice = wallet("alice");
    let signature = hex::encode(alice.sign_message(b"stream"));
    assert_eq!(
        request(addr, "POST", "/v1/enroll", &[], &enroll_body(&alice)).0,
        201
    );
    let (_, _, stderr) = terminate(child);
    assert!(stderr.contains("enrolled"), "{stderr}");
    assert!(!stderr.contains(&signature), "a signature in the log");
    let stored: String = sb
        .conn()
        .query_row("SELECT stream_signature FROM agents", [], |r| r.get(0))
        .unwrap();
    assert_ne!(stored, signature, "stored in clear");
    // Anything but loopback needs --public, and is said to be plain HTTP.
    let r = sb.run(&["serve", "--listen", "0.0.0.0:1"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("--public") && r.stderr.contains("plain HTTP"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_removal_asked_for_waits_until_the_counted_windows_are_billed() {
    let b = setup(3_600_000, 3_000);
    b.pause_all();
    let e = b.current_epoch();
    b.usage(CAROL, e - 1, 3);
    let srv = start(&b.sb, &[]);
    let carol = wallet("carol");
    let remove = action(&carol, "test-agency", "remove", 60);
    let (status, view) = request(
        srv.addr,
        "POST",
        &format!("/v1/agents/{CAROL}/remove"),
        &[],
        &remove,
    );
    assert_eq!(
        (status, view["status"].as_str()),
        (200, Some("removed")),
        "{view}"
    );
    let removed = || {
        b.sb.query_i64(&format!(
            "SELECT COUNT(*) FROM agents WHERE address = '{CAROL}' AND removed_ms IS NOT NULL"
        ))
    };
    assert_eq!(removed(), 0, "3 windows wait for their bill");
    b.tick_until_settled();
    b.tick();
    assert_eq!(removed(), 1, "removed once billed");
    assert_eq!(
        b.fake.state().chain.billed[&(CAROL.to_string(), (e - 1) as u64)],
        3
    );
    let attempts = b.sb.ok(&["billing-attempts"]);
    assert!(attempts.contains(CAROL), "history kept: {attempts}");
}

/// A client socket with a tiny receive buffer (as a client that never reads makes the
/// server's answers pile up sooner), connected to `addr` (IPv4).
fn tiny_window_client(addr: SocketAddr) -> TcpStream {
    use std::os::fd::FromRawFd;
    let SocketAddr::V4(v4) = addr else {
        panic!("IPv4 only")
    };
    // SAFETY: plain socket(2)/setsockopt(2)/connect(2) on a descriptor we own, then handed
    // to TcpStream, which closes it.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let size: libc::c_int = 2048;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        TcpStream::from_raw_fd(fd)
    }
}

#[test]
fn clients_that_never_read_lose_their_slots_and_one_client_holds_at_most_eight() {
    let sb = Sandbox::new();
    sb.ok(&["init-db"]);
    // As behind a proxy (loopback peers are not one client): --max-connections is the limit
    // (8 here: 64 would only take longer to fill).
    let srv = start_with(
        &sb,
        &["--rate", "0", "--trust-proxy", "--max-connections", "8"],
        true,
    );
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "p".repeat(7_000));
    // The probe of `start` closed and gone, so the 8 hogs take every slot.
    std::thread::sleep(Duration::from_millis(500));
    let mut hogs: Vec<TcpStream> = (0..8).map(|_| tiny_window_client(srv.addr)).collect();
    // Each sends long 404 paths (echoed back) until nothing more goes in: the server has
    // stopped reading it, its answers wait unread.
    let mut sent_total = 0;
    for h in &mut hogs {
        h.set_nonblocking(true).unwrap();
        let (mut sent, mut stuck) = (0, 0);
        while sent < 20_000 && stuck < 20 {
            match h.write(long.as_bytes()) {
                Ok(n) if n == long.len() => {
                    sent += 1;
                    stuck = 0;
                }
                Ok(_) => sent += 1,
                Err(_) => {
                    stuck += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        sent_total += sent;
    }
    let started = Instant::now();
    // Their answers are never read: within seconds their slots are free again.
    let served = wait_for(Duration::from_secs(30), || {
        request(srv.addr, "GET", "/v1/agents/x", &[], "").0 == 400
    });
    let freed = started.elapsed();
    let log = std::fs::read_to_string(sb.dir.path().join("serve.log")).unwrap_or_default();
    let answered = log.lines().filter(|l| l.contains("-> 404")).count();
    println!(
        "8 clients that never read (--max-connections 8): {answered} of {sent_total} requests answered before their answers piled up; a newcomer served {:.1} s after the last one stopped (the unit test `an_answer_nobody_reads_closes_the_connection` pins the drain deadline)",
        freed.as_secs_f64()
    );
    assert!(
        answered < sent_total,
        "no answer piled up: the test shows nothing"
    );
    assert!(served, "the non-reading clients kept every slot");
    drop(hogs);
    drop(srv);
    // Without a trusted proxy every peer is a client: the 9th connection of one is refused.
    let srv = start_with(&sb, &["--rate", "0"], true);
    let held: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(srv.addr).unwrap())
        .collect();
    let refused = wait_for(Duration::from_secs(10), || {
        let (status, body) = request(srv.addr, "GET", "/v1/agents/x", &[], "");
        status == 503 && body["error"].as_str().unwrap_or("").contains("from you")
    });
    assert!(refused, "a ninth connection of one client was served");
    drop(held);
    assert!(wait_for(Duration::from_secs(10), || request(
        srv.addr,
        "GET",
        "/v1/agents/x",
        &[],
        ""
    )
    .0 == 400));
}

#[test]
fn an_operators_hold_is_lifted_only_by_the_operator() {
    let sb = Sandbox::new();
    sb.ok(&["init-db"]);
    let srv = start(&sb, &[]);
    let alice = wallet("alice");
    let a = alice.address().to_bech32();
    assert_eq!(
        request(srv.addr, "POST", "/v1/enroll", &[], &enroll_body(&alice)).0,
        201
    );
    sb.ok(&["pause", "--address", &a]);
    let (status, body) = request(
        srv.addr,
        "POST",
        &format!("/v1/agents/{a}/resume"),
        &[],
        &action(&alice, "test-agency", "resume", 300),
    );
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("held by the operator"),
        "{body}"
    );
    assert_eq!(
        sb.query_i64("SELECT COUNT(*) FROM agents WHERE status = 'paused'"),
        1
    );
    // The agent's own pause and resume stay its own.
    sb.ok(&["resume", "--address", &a]);
    for act in ["pause", "resume"] {
        let (status, body) = request(
            srv.addr,
            "POST",
            &format!("/v1/agents/{a}/{act}"),
            &[],
            &action(&alice, "test-agency", act, 400),
        );
        assert_eq!(status, 200, "{act}: {body}");
    }
    assert_eq!(
        sb.query_i64("SELECT COUNT(*) FROM agents WHERE status = 'active'"),
        1
    );
}

#[test]
fn a_passed_socket_off_loopback_needs_public() {
    use std::os::fd::AsRawFd;
    let sb = Sandbox::new();
    sb.ok(&["init-db"]);
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let fd = listener.as_raw_fd();
    let mut cmd = serve_on_passed_socket(&sb, fd);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("not loopback") && err.contains("--public"),
        "{err}"
    );
}
