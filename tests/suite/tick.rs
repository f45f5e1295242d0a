//! Single ticks against planned answers: 403 handling, faults, unknown epoch, replays.

use crate::common;

use std::time::Duration;

use common::*;

const LONG_WINDOW_MS: i64 = 600_000;

struct Setup {
    fake: FakeClaws,
    sb: Sandbox,
    alice: String,
}

fn setup(policy: RenewalPolicy) -> Setup {
    let fake = FakeClaws::start(LONG_WINDOW_MS, policy, 60_000);
    let sb = Sandbox::new();
    let (_, alice, sig) = wallets().into_iter().find(|w| w.0 == "alice").unwrap();
    sb.ok(&["enroll", "--address", &alice, "--signature", &sig]);
    Setup { fake, sb, alice }
}

impl Setup {
    fn tick(&self, extra: &[&str]) -> String {
        let net = net_args(&self.fake);
        let mut args = vec![
            "tick",
            "--lead-seconds",
            "60",
            "--jitter-seconds",
            "5",
            "--timeout-seconds",
            "1",
        ];
        args.extend(net.iter().map(String::as_str));
        args.extend_from_slice(extra);
        self.sb.ok(&args)
    }

    /// Makes the agent due now, as if its planned time had come.
    fn make_due(&self) {
        self.sb
            .conn()
            .execute("UPDATE agents SET next_attempt_ms = 0", [])
            .unwrap();
    }

    fn agent_i64(&self, column: &str) -> i64 {
        self.sb
            .query_i64(&format!("SELECT COALESCE({column}, -1) FROM agents"))
    }

    fn last_reason(&self) -> String {
        self.sb
            .conn()
            .query_row(
                "SELECT reason FROM attempts ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .unwrap()
    }
}

#[test]
fn renewal_counts_a_window_and_plans_lead_before_its_end() {
    let t = setup(RenewalPolicy::AfterEnd { say_when: true });
    let out = t.tick(&[]);
    assert!(out.contains("1 renewed"), "{out}");
    let end = t.fake.state().windows[&t.alice][0].end;
    let next = t.agent_i64("next_attempt_ms");
    assert!(
        (end - 60_000..=end - 55_000).contains(&next),
        "next {next} vs end {end}"
    );
    assert_eq!(t.agent_i64("expected_end_ms"), end);
    assert_eq!(t.sb.usage().values().sum::<i64>(), 1);
    // Nothing is due: a second tick sends nothing.
    let before = t.fake.state().stream_requests;
    assert!(t.tick(&[]).contains("0 due"));
    assert_eq!(t.fake.state().stream_requests, before);
}

#[test]
fn already_streaming_waits_for_can_stream_again_at_and_counts_nothing() {
    let t = setup(RenewalPolicy::AfterEnd { say_when: true });
    t.tick(&[]);
    t.make_due();
    let out = t.tick(&[]);
    assert!(out.contains("1 already streaming"), "{out}");
    let end = t.fake.state().windows[&t.alice][0].end;
    let next = t.agent_i64("next_attempt_ms");
    assert!(
        (end..=end + 5_000).contains(&next),
        "retry {next} must be in [T, T+jitter], T={end}"
    );
    assert_eq!(t.sb.usage().values().sum::<i64>(), 1, "403 counts nothing");
    assert_eq!(
        t.agent_i64("failure_count"),
        0,
        "already streaming is not a failure"
    );
}

#[test]
fn observed_windows_count_once_when_asked() {
    let t = setup(RenewalPolicy::AfterEnd { say_when: false });
    // The window was opened by someone else: the service only says "already streaming".
    {
        let mut s = t.fake.state();
        let now = now_ms();
        s.windows.insert(
            t.alice.clone(),
            vec![Window {
                start: now,
                end: now + LONG_WINDOW_MS,
                epoch: 0,
            }],
        );
    }
    t.tick(&[]);
    assert_eq!(
        t.sb.usage().values().sum::<i64>(),
        0,
        "not counted without the flag"
    );
    for _ in 0..2 {
        t.make_due();
        t.tick(&["--count-observed-windows"]);
    }
    assert_eq!(
        t.sb.usage().values().sum::<i64>(),
        1,
        "counted once with the flag"
    );
    // Without can_stream_again_at the retry comes by backoff, capped at the window end.
    let next = t.agent_i64("next_attempt_ms");
    assert!(
        next - now_ms() <= 120_000 + 5_000 && next > now_ms() + 25_000,
        "{next}"
    );
}

#[test]
fn a_replayed_answer_never_counts_twice() {
    let t = setup(RenewalPolicy::Early {
        accept_before_ms: LONG_WINDOW_MS,
    });
    t.tick(&[]);
    t.make_due();
    t.fake.state().stream_faults.push_back(Fault::Replay);
    t.tick(&[]);
    assert_eq!(
        t.sb.query_i64("SELECT COUNT(*) FROM attempts WHERE ok = 1"),
        2
    );
    assert_eq!(t.sb.usage().values().sum::<i64>(), 1);
    t.make_due();
    t.tick(&[]);
    let rows: Vec<String> = {
        let c = t.sb.conn();
        let mut st = c
            .prepare("SELECT end_stream_ms, opened_ms, epoch, min_epoch FROM stream_windows")
            .unwrap();
        st.query_map([], |r| {
            Ok(format!(
                "{:?}",
                (
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<i64>>(3)?
                )
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let epochs: Vec<String> = {
        let c = t.sb.conn();
        let mut st = c.prepare("SELECT * FROM epoch_starts").unwrap();
        let n = st.column_count();
        st.query_map([], |r| {
            Ok((0..n)
                .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                .collect::<Vec<_>>()
                .join(","))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    assert_eq!(
        t.sb.usage().values().sum::<i64>(),
        2,
        "a genuinely new window counts: {rows:?} {epochs:?} {:?}",
        t.fake.state().windows
    );
}

#[test]
fn server_errors_back_off_but_never_past_the_window_end() {
    let t = setup(RenewalPolicy::Early {
        accept_before_ms: LONG_WINDOW_MS,
    });
    t.fake
        .state()
        .stream_faults
        .push_back(Fault::Status(503, "down".into(), None));
    let start = now_ms();
    t.tick(&[]);
    assert_eq!(t.last_reason(), "server error (HTTP 503)");
    let next = t.agent_i64("next_attempt_ms");
    assert!(
        (start + 30_000..=now_ms() + 35_000).contains(&next),
        "first backoff is 30 s + jitter"
    );
    assert_eq!(t.agent_i64("failure_count"), 1);

    // With a known window end 10 s ahead, the backoff stops at the end.
    t.make_due();
    t.tick(&[]);
    let end = now_ms() + 10_000;
    t.sb.conn()
        .execute(
            "UPDATE agents SET expected_end_ms = ?1, next_attempt_ms = 0",
            [end],
        )
        .unwrap();
    t.fake.state().stream_faults.push_back(Fault::Close);
    t.tick(&[]);
    assert!(
        t.last_reason().starts_with("no answer"),
        "{}",
        t.last_reason()
    );
    assert_eq!(t.agent_i64("next_attempt_ms"), end);
}

#[test]
fn rate_limits_honour_retry_after() {
    let t = setup(RenewalPolicy::Early {
        accept_before_ms: LONG_WINDOW_MS,
    });
    t.fake
        .state()
        .stream_faults
        .push_back(Fault::Status(429, "{}".into(), Some(90)));
    let start = now_ms();
    t.tick(&[]);
    let next = t.agent_i64("next_attempt_ms");
    assert!(
        next >= start + 90_000 && next <= now_ms() + 95_000,
        "{next}"
    );
}

#[test]
fn timeouts_are_recorded_and_retried() {
    let t = setup(RenewalPolicy::Early {
        accept_before_ms: LONG_WINDOW_MS,
    });
    t.fake.state().stream_faults.push_back(Fault::Delay(2_500));
    let out = t.tick(&[]);
    assert!(out.contains("1 failed"), "{out}");
    assert!(t.last_reason().contains("no answer"), "{}", t.last_reason());
    assert_eq!(
        t.sb.query_i64("SELECT COUNT(*) FROM attempts WHERE status_code IS NULL"),
        1
    );
}

#[test]
fn agent_problems_retry_every_15_minutes_and_show_in_report() {
    let t = setup(RenewalPolicy::Early {
        accept_before_ms: LONG_WINDOW_MS,
    });
    t.fake.state().registered = Some(Default::default());
    let start = now_ms();
    t.tick(&[]);
    let next = t.agent_i64("next_attempt_ms");
    assert!(
        next >= start + 900_000 && next <= now_ms() + 905_000,
        "{next}"
    );
    let report = t.sb.ok(&["report"]);
    assert!(report.contains("HTTP 404"), "{report}");
    assert!(
        report.contains("active"),
        "never paused on our own: {report}"
    );
}

#[test]
fn unknown_epoch_renews_anyway_and_attributes_the_window_later() {
    let fake = FakeClaws::start(
        LONG_WINDOW_MS,
        RenewalPolicy::Early {
            accept_before_ms: 0,
        },
        1_000,
    );
    let t = Setup {
        sb: Sandbox::new(),
        alice: wallets()[0].1.clone(),
        fake,
    };
    let (_, _, sig) = wallets()[0].clone();
    t.sb.ok(&["enroll", "--address", &t.alice, "--signature", &sig]);
    t.fake.state().gateway_down = true;
    let out = t.tick(&[]);
    assert!(
        out.contains("epoch unknown") && out.contains("1 renewed"),
        "{out}"
    );
    assert_eq!(
        t.sb.query_i64("SELECT COUNT(*) FROM stream_windows WHERE epoch IS NULL"),
        1
    );
    assert!(t.sb.usage().is_empty());
    // Epochs pass while the gateway is down; the window still belongs to its own epoch.
    let opened_in = t.fake.state().epoch_at(now_ms());
    assert!(wait_for(Duration::from_secs(30), || {
        t.fake.state().epoch_at(now_ms()) >= opened_in + 2
    }));
    t.fake.state().gateway_down = false;
    let out = t.tick(&[]);
    assert!(out.contains("1 counted into epochs"), "{out}");
    let granted = t.fake.state().granted_per_epoch();
    assert_eq!(t.sb.usage(), granted);
}
