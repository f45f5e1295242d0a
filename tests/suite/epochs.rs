//! Every window in its own epoch, to the round: exact boundaries from genesis, an estimate
//! where the gateway omits them, a gateway that cannot poison counting, and windows whose
//! end comes in seconds once and in milliseconds another time.

use crate::common;

use std::time::Duration;

use common::bill::setup;
use common::*;

const EPOCH_MS: i64 = 2_000;

fn tick(sb: &Sandbox, fake: &FakeClaws, extra: &[&str]) -> Ran {
    let mut args = vec!["tick".to_string()];
    if !extra.contains(&"--lead-seconds") {
        args.extend(["--lead-seconds", "60", "--jitter-seconds", "0"].map(String::from));
    }
    args.extend(net_args(fake));
    args.extend(extra.iter().map(|s| s.to_string()));
    sb.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The next epoch boundary at least `margin_ms` away, and the epoch it starts.
fn next_boundary(fake: &FakeClaws, margin_ms: i64) -> (i64, i64) {
    let s = fake.state();
    let now = now_ms() + margin_ms;
    let epoch = s.epoch_at(now) + 1;
    (s.genesis_ms + epoch * s.epoch_ms, epoch)
}

/// alice's window opens `offset_ms` before a boundary, bob's `offset_ms` after it, in one
/// tick; returns the epochs the fake granted them in and the epochs counted.
fn straddle(fake: &FakeClaws, sb: &Sandbox, offset_ms: i64) -> Vec<((String, i64), i64)> {
    let (boundary, _) = next_boundary(fake, 500);
    let w = wallets();
    {
        let mut s = fake.state();
        s.stream_hold.insert(w[0].1.clone(), boundary - offset_ms);
        s.stream_hold.insert(w[1].1.clone(), boundary + offset_ms);
    }
    // Start just before: the tick renews alice, then bob, each answered on time.
    std::thread::sleep(Duration::from_millis(
        (boundary - offset_ms - now_ms() - 300).max(0) as u64,
    ));
    let r = tick(sb, fake, &[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    if sb.query_i64("SELECT COUNT(*) FROM stream_windows WHERE epoch IS NULL") > 0 {
        tick(sb, fake, &[]);
    }
    let mut counted: Vec<((String, i64), i64)> = sb.usage().into_iter().collect();
    counted.sort();
    counted
}

#[test]
fn a_window_50_ms_either_side_of_a_boundary_lands_in_its_own_epoch() {
    for run in 0..3 {
        let fake = FakeClaws::start(
            600_000,
            RenewalPolicy::Early {
                accept_before_ms: 1_000,
            },
            EPOCH_MS,
        );
        let sb = Sandbox::new();
        let w = wallets();
        for (_, addr, sig) in &w[..2] {
            sb.ok(&["enroll", "--address", addr, "--signature", sig]);
        }
        let counted = straddle(&fake, &sb, 50);
        let mut granted: Vec<((String, i64), i64)> =
            fake.state().granted_per_epoch().into_iter().collect();
        granted.sort();
        assert_eq!(counted, granted, "run {run}");
        let epochs: Vec<i64> = granted.iter().map(|g| g.0 .1).collect();
        assert!(
            epochs[0] != epochs[1],
            "the test must straddle a boundary: {granted:?}"
        );
        println!("run {run}: 50 ms before and after the boundary: counted {counted:?}");
    }
}

#[test]
fn without_genesis_fields_boundaries_are_estimated_to_half_a_round_and_said_once() {
    let fake = FakeClaws::start(
        600_000,
        RenewalPolicy::Early {
            accept_before_ms: 1_000,
        },
        EPOCH_MS,
    );
    fake.state().omit_genesis = true;
    let sb = Sandbox::new();
    let w = wallets();
    for (_, addr, sig) in &w[..2] {
        sb.ok(&["enroll", "--address", addr, "--signature", sig]);
    }
    // Rounds of 100 ms: an estimate in the middle of the round is off by 50 ms at most.
    let counted = straddle(&fake, &sb, 150);
    let mut granted: Vec<((String, i64), i64)> =
        fake.state().granted_per_epoch().into_iter().collect();
    granted.sort();
    assert_eq!(counted, granted);
    let r = tick(&sb, &fake, &[]);
    assert_eq!(
        r.stderr.matches("estimated to half a round").count(),
        1,
        "{}",
        r.stderr
    );
}

/// Ticks until `until` while the gateway says epoch `wrong`: each one that observes the
/// epoch exits 4 naming it, and renews all the same; an idle tick (nothing due, the
/// timeline fresh) asks nobody, so it cannot be lied to, and counts nothing. Returns how
/// many observed.
fn tick_while_wrong(until: i64, wrong: i64, tick: impl Fn() -> Ran) -> usize {
    let mut ticks = 0;
    while now_ms() < until - 300 {
        let r = tick();
        if r.code == 0 && r.stdout.contains("no request sent") {
            std::thread::sleep(Duration::from_millis(250));
            continue;
        }
        assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains(&format!("epoch {wrong}")), "{}", r.stderr);
        assert!(
            r.stdout.contains("renewed")
                || r.stdout.contains("already streaming")
                || r.stdout.contains(" 0 due"),
            "{}",
            r.stdout
        );
        ticks += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    ticks
}

#[test]
fn a_gateway_of_another_network_changes_no_count_and_expires_nothing() {
    for wrong in [5, 10_000_000] {
        let fake = FakeClaws::start(
            3_000,
            RenewalPolicy::Early {
                accept_before_ms: 1_500,
            },
            EPOCH_MS,
        );
        let sb = Sandbox::new();
        sb.enroll_all();
        let fast = ["--lead-seconds", "2", "--jitter-seconds", "0"];
        let tick_fast = || {
            let mut args = vec!["tick".to_string()];
            args.extend(fast.iter().map(|s| s.to_string()));
            args.extend(net_args(&fake));
            sb.run(&args.iter().map(String::as_str).collect::<Vec<_>>())
        };
        assert_eq!(tick_fast().code, 0);
        // For four seconds the gateway says another epoch.
        let until = now_ms() + 4_000;
        fake.state().wrong_epoch = Some((until, wrong));
        let bad_ticks = tick_while_wrong(until, wrong, tick_fast);
        assert!(bad_ticks >= 2, "{bad_ticks} ticks observed");
        assert!(sb.query_i64("SELECT COALESCE(MAX(epoch), 0) FROM usage_windows") < 1_000);
        assert!(
            sb.query_i64(
                "SELECT MAX(CAST(value AS INTEGER)) FROM meta WHERE key = 'max_epoch_seen'"
            ) < 1_000
        );
        // Once it is right again, every window lands in the epoch it was granted in.
        assert!(wait_for(Duration::from_secs(10), || now_ms() > until + 100));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(tick_fast().code, 0);
        let granted = fake.state().granted_per_epoch();
        assert_eq!(sb.usage(), granted, "wrong epoch {wrong}");
        println!("gateway said epoch {wrong} for 4 s: {bad_ticks} ticks exited 4, counts equal the service's: {granted:?}");
    }
}

/// The case with billing on: the gateway says epoch 5 for ten seconds. Every tick
/// exits 4 and renews; nothing is counted, billed or given up on it; once it is right
/// again, every window is billed once, in the epoch it was granted in.
#[test]
fn a_gateway_saying_epoch_5_for_ten_seconds_bills_and_expires_nothing() {
    let b = setup(3_000, EPOCH_MS);
    assert_eq!(b.tick().code, 0);
    let until = now_ms() + 10_000;
    b.fake.state().wrong_epoch = Some((until, 5));
    let sent_before = b.fake.state().chain.executed.len();
    let bad_ticks = tick_while_wrong(until, 5, || b.tick());
    assert!(bad_ticks >= 4, "{bad_ticks} ticks observed");
    assert_eq!(
        b.fake.state().chain.executed.len(),
        sent_before,
        "a bill was sent on an epoch the gateway could not be trusted with"
    );
    assert_eq!(
        b.sb.query_i64(
            "SELECT COUNT(*) FROM usage_windows WHERE kind IS NOT NULL AND kind <> 'billed'"
        ),
        0,
        "an epoch was given up or held because of the wrong gateway"
    );
    assert!(wait_for(Duration::from_secs(10), || now_ms() > until + 100));
    b.settle_after_renewals();
    b.assert_windows_in_their_epochs();
    let granted = b.fake.state().granted_per_epoch();
    assert_eq!(b.sb.usage(), granted);
    b.assert_chain_billed(&granted);
    b.assert_billed_exactly_once();
    println!(
        "gateway said epoch 5 for 10 s with billing on: {bad_ticks} ticks exited 4, no bill sent meanwhile; then {} (agent, epoch) pairs billed once each",
        granted.len()
    );
}

#[test]
fn an_end_in_seconds_and_the_same_end_in_milliseconds_are_one_window() {
    // Windows of 3 s, renewed early; "already streaming" answers give the end in seconds,
    // and observed windows are counted.
    let fake = FakeClaws::start(
        3_000,
        RenewalPolicy::Early {
            accept_before_ms: 1_000,
        },
        EPOCH_MS,
    );
    fake.state().end_in_seconds = true;
    let sb = Sandbox::new();
    sb.enroll_all();
    let args = [
        "--lead-seconds",
        "2",
        "--jitter-seconds",
        "0",
        "--count-observed-windows",
    ];
    let started = now_ms();
    while now_ms() - started < 7_000 {
        let r = tick(&sb, &fake, &args);
        assert_eq!(r.code, 0, "{}", r.stderr);
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_millis(100));
    tick(&sb, &fake, &args);
    let s = fake.state();
    assert!(
        s.refusals.values().sum::<usize>() > 0,
        "the test needs 'already streaming' answers"
    );
    assert_eq!(
        sb.usage(),
        s.granted_per_epoch(),
        "a window counted twice or lost"
    );
}

#[test]
fn five_seeded_runs_of_faults_and_kills_count_every_window_in_its_own_epoch() {
    let mut checked = 0;
    for seed in 1..=5u64 {
        let b = setup(1_200, 1_500);
        b.fake.state().chaos = Some(Chaos::new(seed, 0.2, 0.04, 0.2));
        let mut args = b.args("run");
        args.extend(["--poll-seconds", "1", "--timeout-seconds", "1"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut rng = fastrand::Rng::with_seed(seed);
        for _ in 0..8 {
            let mut child = b.sb.spawn(&args);
            std::thread::sleep(Duration::from_millis(rng.u64(100..900)));
            child.kill().unwrap();
            child.wait().unwrap();
        }
        b.fake.state().chaos = None;
        b.fake.state().gateway_down_until = 0;
        b.settle_after_renewals();
        let windows = b.assert_windows_in_their_epochs();
        // Counted = granted, per (agent, epoch), less the replies that never arrived.
        let s = b.fake.state();
        let granted = s.granted_per_epoch();
        for (key, n) in b.sb.usage() {
            let lost = s
                .lost_windows
                .iter()
                .filter(|l| {
                    l.0 == key.0
                        && s.windows[&l.0]
                            .iter()
                            .any(|w| w.end == l.1 && w.epoch == key.1)
                })
                .count() as i64;
            let g = granted[&key];
            assert!(
                n <= g && n >= g - lost - 8,
                "seed {seed} {key:?}: counted {n}, granted {g}, lost {lost}"
            );
        }
        println!("seed {seed}: {windows} windows counted, each in the epoch it was granted in");
        checked += windows;
    }
    assert!(checked > 0);
}
