//! Keeping time with the network: a host clock behind or ahead of the stream service's
//! (its `Date` headers and every time it gives are shifted) keeps every stream alive, makes
//! no 403 loop, and a large skew is named.

use crate::common;

use std::time::Duration;

use common::*;

const WINDOW_MS: i64 = 10_000;
/// The longest a run may take to renew every agent twice.
const RUN_MS: u64 = 60_000;

struct Outcome {
    gap_ms: i64,
    refusals: usize,
    windows: usize,
    tick: Ran,
}

/// `run` for a while with windows of 10 s renewed up to 5 s before their end,
/// `--lead-seconds 3 --jitter-seconds 1`, the network's clock `offset_ms` ahead of the host's.
fn run_with(offset_ms: i64, date: DateHeader) -> Outcome {
    let fake = FakeClaws::start(
        WINDOW_MS,
        RenewalPolicy::Early {
            accept_before_ms: 5_000,
        },
        60_000,
    );
    {
        let mut s = fake.state();
        s.clock_offset_ms = offset_ms;
        s.date = date;
    }
    let sb = Sandbox::new();
    sb.enroll_all();
    let net = net_args(&fake);
    let mut args = vec!["run", "--lead-seconds", "3", "--jitter-seconds", "1"];
    args.extend(net.iter().map(String::as_str));
    let mut run = args.clone();
    run.extend(["--poll-seconds", "1"]);
    let child = sb.spawn(&run);
    // Until every agent renewed twice (three windows each), not a fixed time.
    let renewed = wait_for(Duration::from_millis(RUN_MS), || {
        let s = fake.state();
        s.windows.len() == 3 && s.windows.values().all(|w| w.len() >= 3)
    });
    let (code, _, err) = terminate(child);
    assert!(
        renewed,
        "three windows per agent not reached; stderr: {err}"
    );
    assert_eq!(code, 0, "{err}");
    args[0] = "tick";
    let tick = sb.run(&args);
    let s = fake.state();
    let outcome = Outcome {
        gap_ms: s.max_gap_ms(),
        refusals: s.refusals.values().sum(),
        windows: s.windows.values().map(Vec::len).sum(),
        tick,
    };
    println!(
        "offset {offset_ms} ms, date {date:?}: max gap {} ms, {} 403 / {} windows, tick exit {}",
        outcome.gap_ms, outcome.refusals, outcome.windows, outcome.tick.code
    );
    outcome
}

/// No lapse beyond the jitter (1 s, plus a round trip) and at most one 403 per window.
fn assert_kept_alive(o: &Outcome) {
    assert!(o.windows >= 6, "{} windows", o.windows);
    assert!(o.gap_ms <= 1_200, "a window lapsed for {} ms", o.gap_ms);
    assert!(
        o.refusals <= o.windows,
        "{} 403 for {} windows",
        o.refusals,
        o.windows
    );
}

#[test]
fn host_clock_5_s_behind() {
    let o = run_with(5_000, DateHeader::Correct);
    assert_kept_alive(&o);
    assert_eq!(o.tick.code, 0, "{}", o.tick.stderr);
}

#[test]
fn host_clock_5_s_ahead() {
    let o = run_with(-5_000, DateHeader::Correct);
    assert_kept_alive(&o);
    assert_eq!(o.tick.code, 0, "{}", o.tick.stderr);
}

#[test]
fn host_clock_10_min_behind_is_corrected_and_named() {
    let o = run_with(600_000, DateHeader::Correct);
    assert_kept_alive(&o);
    assert_eq!(o.tick.code, 4, "{}", o.tick.stderr);
    assert!(
        o.tick
            .stderr
            .contains("the host clock is 10 min 0 s behind the stream service: enable NTP"),
        "{}",
        o.tick.stderr
    );
}

#[test]
fn host_clock_10_min_ahead_is_corrected_and_named() {
    let o = run_with(-600_000, DateHeader::Correct);
    assert_kept_alive(&o);
    assert_eq!(o.tick.code, 4);
    assert!(
        o.tick
            .stderr
            .contains("10 min 0 s ahead of the stream service"),
        "{}",
        o.tick.stderr
    );
}

#[test]
fn host_clock_a_year_off() {
    let o = run_with(-365 * 86_400_000, DateHeader::Correct);
    assert_kept_alive(&o);
    assert!(
        o.tick.stderr.contains("365 days 0 h ahead of"),
        "{}",
        o.tick.stderr
    );
}

#[test]
fn a_missing_or_nonsense_date_changes_nothing_in_sync() {
    for date in [DateHeader::Missing, DateHeader::Nonsense] {
        let o = run_with(0, date);
        assert_kept_alive(&o);
        assert_eq!(o.tick.code, 0, "{}", o.tick.stderr);
    }
}
