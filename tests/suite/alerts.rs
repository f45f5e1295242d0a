//! `--notify` and `--ping-url` against a local receiver: one message per new problem, one
//! per resolution, the cooldown respected, a receiver down then up served later, every
//! format's payload; pings at the start and end of a tick with its exit status.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::bill::ALICE;
use common::chain::BOB;
use common::http::{serve_requests, Request};
use common::*;

struct Received {
    path: String,
    title: Option<String>,
    content_type: Option<String>,
    body: String,
}

/// A receiver that records what it accepts and answers 503 while `down`.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    down: Arc<AtomicBool>,
}

impl Receiver {
    fn start() -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(false));
        let (g, d) = (got.clone(), down.clone());
        let url = serve_requests(move |r: &Request| {
            if d.load(Ordering::SeqCst) {
                return Action::Answer(503, "{}".into(), vec![]);
            }
            g.lock().unwrap().push(Received {
                path: r.path.clone(),
                title: r.header("Title").map(String::from),
                content_type: r.header("Content-Type").map(String::from),
                body: r.body.clone(),
            });
            Action::Answer(200, "{}".into(), vec![])
        });
        Receiver { url, got, down }
    }

    fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    fn json(&self, i: usize) -> serde_json::Value {
        serde_json::from_str(&self.got.lock().unwrap()[i].body).unwrap()
    }
}

fn address(addr: &str) -> String {
    addr.to_string()
}

fn signature(addr: &str) -> String {
    wallets().into_iter().find(|w| w.1 == addr).unwrap().2
}

fn enroll(sb: &Sandbox, addr: &str) {
    sb.ok(&["enroll", "--address", addr, "--signature", &signature(addr)]);
}

/// `check` that finds every enrolled, never renewed agent a problem at once.
fn check(sb: &Sandbox, rx: &Receiver, extra: &[&str]) -> Ran {
    let url = format!("{}/hook", rx.url);
    let mut args = vec!["check", "--warn-seconds", "0", "--notify", &url];
    args.extend_from_slice(extra);
    sb.run(&args)
}

#[test]
fn a_problem_is_told_once_and_its_resolution_once_within_the_cooldown() {
    let rx = Receiver::start();
    let sb = Sandbox::new();
    enroll(&sb, ALICE);
    let r = check(&sb, &rx, &[]);
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    assert_eq!(rx.count(), 1);
    let first = rx.json(0);
    assert_eq!(first["event"], "problem");
    assert_eq!(first["problems"].as_array().unwrap().len(), 1);
    assert!(first["problems"][0]
        .as_str()
        .unwrap()
        .contains(&address(ALICE)));
    assert!(first["host"].is_string() && first["at"].is_string());
    // The same problem again: nothing new to tell.
    assert_eq!(check(&sb, &rx, &[]).code, 4);
    assert_eq!(rx.count(), 1);
    // Resolved (paused): told once.
    sb.ok(&["pause", "--address", &address(ALICE)]);
    assert_eq!(check(&sb, &rx, &[]).code, 0);
    assert_eq!(rx.count(), 2);
    assert_eq!(rx.json(1)["event"], "resolved");
    assert_eq!(check(&sb, &rx, &[]).code, 0);
    assert_eq!(rx.count(), 2);
    // Back within the cooldown: not told again; with no cooldown, told.
    sb.ok(&["resume", "--address", &address(ALICE)]);
    assert_eq!(check(&sb, &rx, &[]).code, 4);
    assert_eq!(rx.count(), 2);
    sb.ok(&["pause", "--address", &address(ALICE)]);
    check(&sb, &rx, &[]);
    sb.ok(&["resume", "--address", &address(ALICE)]);
    check(&sb, &rx, &["--notify-cooldown-seconds", "0"]);
    assert_eq!(rx.count(), 3, "told again once the cooldown is over");
    assert_eq!(rx.json(2)["event"], "problem");
    // No message holds a signature.
    let sig = signature(ALICE);
    assert!(rx
        .got
        .lock()
        .unwrap()
        .iter()
        .all(|m| !m.body.contains(&sig)));
}

#[test]
fn a_receiver_that_is_down_gets_the_message_later_and_the_check_is_not_failed_by_it() {
    let rx = Receiver::start();
    let sb = Sandbox::new();
    enroll(&sb, ALICE);
    rx.down.store(true, Ordering::SeqCst);
    let r = check(&sb, &rx, &[]);
    assert_eq!(r.code, 4, "exit status of the problem, not of the receiver");
    assert!(
        r.stderr.contains("not delivered (HTTP 503)"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("/hook"),
        "logs name the host only: {}",
        r.stderr
    );
    assert_eq!(sb.query_i64("SELECT COUNT(*) FROM notify_outbox"), 1);
    rx.down.store(false, Ordering::SeqCst);
    check(&sb, &rx, &[]);
    assert_eq!(rx.count(), 1);
    assert_eq!(rx.json(0)["event"], "problem");
    assert_eq!(sb.query_i64("SELECT COUNT(*) FROM notify_outbox"), 0);
    check(&sb, &rx, &[]);
    assert_eq!(rx.count(), 1);
}

#[test]
fn every_format_gets_its_payload() {
    for (format, key) in [
        ("slack", Some("text")),
        ("mattermost", Some("text")),
        ("discord", Some("content")),
        ("ntfy", None),
    ] {
        let rx = Receiver::start();
        let sb = Sandbox::new();
        enroll(&sb, BOB);
        check(&sb, &rx, &["--notify-format", format]);
        assert_eq!(rx.count(), 1, "{format}");
        let got = &rx.got.lock().unwrap()[0];
        match key {
            Some(key) => {
                let v: serde_json::Value = serde_json::from_str(&got.body).unwrap();
                let text = v[key].as_str().unwrap();
                assert!(
                    text.contains("needs a human") && text.contains(&address(BOB)),
                    "{text}"
                );
            }
            None => {
                assert!(got
                    .title
                    .as_deref()
                    .unwrap()
                    .contains("1 problem needs a human"));
                assert!(got
                    .content_type
                    .as_deref()
                    .unwrap()
                    .starts_with("text/plain"));
                assert!(got.body.contains(&address(BOB)));
            }
        }
    }
    let sb = Sandbox::new();
    let r = sb.run(&[
        "check",
        "--notify",
        "http://127.0.0.1:9/x",
        "--notify-format",
        "irc",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--notify-format"), "{}", r.stderr);
}

#[test]
fn a_tick_pings_its_start_and_its_exit_status() {
    let rx = Receiver::start();
    let fake = FakeClaws::steady();
    let sb = Sandbox::new();
    enroll(&sb, ALICE);
    let ping = format!("{}/ping/abc", rx.url);
    let mut args = vec!["tick".to_string(), "--ping-url".into(), ping];
    args.extend(net_args(&fake));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sb.ok(&args);
    let paths = |rx: &Receiver| -> Vec<String> {
        rx.got
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.path.clone())
            .collect()
    };
    assert_eq!(paths(&rx), ["/ping/abc/start", "/ping/abc"]);
    // A window that lapsed and no renewal due: the tick exits 4 and pings it.
    sb.conn()
        .execute(
            "UPDATE agents SET expected_end_ms = ?1, next_attempt_ms = ?2",
            [now_ms() - 600_000, now_ms() + 600_000],
        )
        .unwrap();
    assert_eq!(sb.run(&args).code, 4);
    assert_eq!(paths(&rx)[2..], ["/ping/abc/start", "/ping/abc/4"]);
    // The same lapse told by a timer's ticks: once, and its resolution once.
    let hooks = Receiver::start();
    let hook = format!("{}/hook", hooks.url);
    let mut told = args.clone();
    told.extend(["--notify", hook.as_str()]);
    for _ in 0..3 {
        assert_eq!(sb.run(&told).code, 4);
    }
    assert_eq!(hooks.count(), 1);
    let lapse = hooks.json(0);
    assert_eq!(lapse["event"], "problem");
    assert!(
        lapse["problems"][0]
            .as_str()
            .unwrap()
            .contains("without renewal"),
        "{lapse}"
    );
    sb.conn()
        .execute(
            "UPDATE agents SET expected_end_ms = ?1",
            [now_ms() + 600_000],
        )
        .unwrap();
    sb.ok(&told);
    sb.ok(&told);
    assert_eq!(hooks.count(), 2);
    assert_eq!(hooks.json(1)["event"], "resolved");
}

#[test]
fn run_pings_at_most_once_per_its_interval() {
    let rx = Receiver::start();
    let fake = FakeClaws::steady();
    let sb = Sandbox::new();
    enroll(&sb, ALICE);
    let ping = format!("{}/ping/run", rx.url);
    let started = std::time::Instant::now();
    let run = sb.spawn_run(&fake, &["--ping-url", &ping, "--ping-every-seconds", "3"]);
    let two = wait_for(std::time::Duration::from_secs(30), || rx.count() >= 2);
    let elapsed = started.elapsed();
    let (code, _, err) = terminate(run);
    assert!(two, "{err}");
    assert_eq!(code, 0, "{err}");
    assert!(rx.got.lock().unwrap().iter().all(|m| m.path == "/ping/run"));
    // run ticks every second (--poll-seconds 1) but pings every 3 s: the second ping comes
    // no sooner than 3 s after the first (a ping per tick would come after 1 s).
    assert!(
        elapsed >= std::time::Duration::from_millis(2_500),
        "second ping after {elapsed:?}"
    );
}
