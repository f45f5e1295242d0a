//! `run` keeps every agent streaming under both renewal policies the spec leaves open, and
//! counts exactly the windows the service granted, per epoch.

use crate::common;

use std::time::Duration;

use common::*;

const WINDOW_MS: i64 = 4_000;
const EPOCH_MS: i64 = 3_000;
/// --lead-seconds 2 --jitter-seconds 1: every gap must stay within jitter + 1 s.
const MAX_GAP_MS: i64 = 2_000;

/// Runs `run` until every agent had `windows` windows, stops it, and checks continuity and
/// counting against the fake's own record. Returns (max gap ms, windows granted).
fn run_until(policy: RenewalPolicy, windows: usize) -> (i64, usize, usize) {
    let fake = FakeClaws::start(WINDOW_MS, policy, EPOCH_MS);
    let sb = Sandbox::new();
    sb.enroll_all();
    let mut args = vec![
        "run",
        "--lead-seconds",
        "2",
        "--jitter-seconds",
        "1",
        "--poll-seconds",
        "1",
    ];
    let net = net_args(&fake);
    args.extend(net.iter().map(String::as_str));
    let child = sb.spawn(&args);
    let enough = wait_for(Duration::from_secs(60), || {
        let s = fake.state();
        s.windows.len() == 3 && s.windows.values().all(|w| w.len() >= windows)
    });
    // Until the last renewals' epochs are attributed (the end of their tick).
    wait_for(Duration::from_secs(10), || {
        let attributed =
            sb.query_i64("SELECT COUNT(*) FROM stream_windows WHERE epoch IS NULL") == 0;
        attributed && sb.usage() == fake.state().granted_per_epoch()
    });
    let (code, _out, err) = terminate(child);
    assert!(
        enough,
        "agents did not reach {windows} windows; stderr: {err}"
    );
    assert_eq!(code, 0, "run must exit 0 on SIGTERM; stderr: {err}");

    let state = fake.state();
    let granted = state.granted_per_epoch();
    let counted = sb.usage();
    assert_eq!(
        counted, granted,
        "usage_windows must equal the windows granted per (agent, epoch)"
    );
    let epochs: std::collections::HashSet<i64> = granted.keys().map(|k| k.1).collect();
    assert!(
        epochs.len() >= 3,
        "the test must span several epochs: {epochs:?}"
    );
    let pending = sb.query_i64("SELECT COUNT(*) FROM stream_windows WHERE epoch IS NULL");
    assert_eq!(pending, 0);
    let total: usize = state.windows.values().map(Vec::len).sum();
    let most_refusals = state.refusals.values().copied().max().unwrap_or(0);
    (state.max_gap_ms(), total, most_refusals)
}

#[test]
fn renewal_accepted_before_the_end_never_lapses() {
    let (gap, total, _) = run_until(
        RenewalPolicy::Early {
            accept_before_ms: 2_000,
        },
        5,
    );
    println!("early policy: {total} windows, max gap {gap} ms");
    assert!(
        gap <= 0,
        "a window lapsed for {gap} ms although renewal was accepted early"
    );
}

#[test]
fn renewal_only_after_the_end_with_can_stream_again_at() {
    let (gap, total, refusals) = run_until(RenewalPolicy::AfterEnd { say_when: true }, 4);
    println!("after-end policy (can_stream_again_at): {total} windows, max gap {gap} ms, at most {refusals} 403 per agent");
    assert!(gap <= MAX_GAP_MS, "gap {gap} ms exceeds jitter + 1 s");
    // Learned from the first "again at the end": no probe before each window.
    assert!(
        refusals <= 1,
        "{refusals} 'already streaming' answers for one agent"
    );
}

#[test]
fn renewal_only_after_the_end_with_end_stream_only() {
    let (gap, total, _) = run_until(RenewalPolicy::AfterEnd { say_when: false }, 4);
    println!("after-end policy (end_stream only): {total} windows, max gap {gap} ms");
    assert!(gap <= MAX_GAP_MS, "gap {gap} ms exceeds jitter + 1 s");
}
