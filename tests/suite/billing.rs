//! Exactly-once billing against the fake chain, which enforces the escrow contract's rules
//! and the nonce rules and executes transactions a little after they are sent.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::bill::*;
use common::chain::{SendFault, BOB};
use common::Chaos;
use common::*;

#[test]
fn run_bills_every_closed_epoch_once_with_the_counted_windows() {
    let b = setup(1_200, 1_500);
    let args = b.args("run");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--poll-seconds", "1"]);
    let child = b.sb.spawn(&args);
    let enough = wait_for(Duration::from_secs(90), || {
        let s = b.fake.state();
        let billed_epochs: std::collections::HashSet<u64> =
            s.chain.billed.keys().map(|k| k.1).collect();
        billed_epochs.len() >= 4
    });
    let (code, _, err) = terminate(child);
    assert!(enough, "run did not bill 4 epochs: {err}");
    assert_eq!(code, 0, "{err}");
    b.settle_after_renewals();

    // Every counted window was granted, and every closed epoch is billed with all of them.
    let granted = b.fake.state().granted_per_epoch();
    assert_eq!(b.sb.usage(), granted);
    b.assert_chain_billed(&granted);
    b.assert_no_avoidable_failures();
    let s = b.fake.state();
    println!(
        "billed {} (agent, epoch) pairs, {} windows, {} transactions, {} failed on the epoch race",
        s.chain.billed.len(),
        s.chain.billed.values().sum::<u64>(),
        s.chain.executed.len(),
        s.chain
            .executed
            .iter()
            .filter(|e| e.error.is_some())
            .count()
    );
    drop(s);
    b.assert_billed_exactly_once();
    b.nonces_have_no_gap();
}

#[test]
fn epochs_of_an_agent_go_out_in_order_one_at_a_time() {
    let b = setup(3_600_000, 60_000);
    b.pause_all();
    let e = b.current_epoch();
    for epoch in [e - 3, e - 2, e - 1] {
        b.usage(ALICE, epoch, 2);
    }
    b.usage(CAROL, e - 1, 5);
    // Slow start: one transaction in flight until a bill is confirmed.
    let first = b.tick();
    assert!(
        first.stdout.contains("1 sent"),
        "one transaction at first: {}",
        first.stdout
    );
    println!("{}", first.stdout.trim());
    b.tick_until_settled();
    let s = b.fake.state();
    let alice: Vec<u64> = s
        .chain
        .executed
        .iter()
        .filter(|x| x.agent == ALICE)
        .map(|x| x.epoch)
        .collect();
    assert_eq!(alice, vec![(e - 3) as u64, (e - 2) as u64, (e - 1) as u64]);
    drop(s);
    b.assert_billed_exactly_once();
    b.nonces_have_no_gap();
}

#[test]
fn epoch_boundary_race_is_retried_not_lost() {
    let b = setup(3_600_000, 5_000);
    // The shard lags 4 s of a 5 s epoch until the first bill was tried (a 1 s lag made the
    // test depend on a tick within that second, which a loaded machine does not promise),
    // then catches up.
    b.fake.state().chain.shard_lag_ms = 4_000;
    b.pause_all();
    // Wait for a fresh epoch, then bill the one that just closed while the shard lags.
    let e = b.current_epoch();
    assert!(wait_for(Duration::from_secs(10), || b.current_epoch() > e));
    b.usage(ALICE, e, 3);
    b.tick();
    assert!(wait_for(Duration::from_secs(30), || {
        b.tick();
        !b.fake.state().chain.executed.is_empty()
    }));
    b.fake.state().chain.shard_lag_ms = 0;
    b.tick_until_settled();
    let s = b.fake.state();
    let tries: Vec<Option<String>> = s.chain.executed.iter().map(|x| x.error.clone()).collect();
    assert_eq!(
        tries.first().cloned().flatten().as_deref(),
        Some("Epoch not closed yet"),
        "{tries:?}"
    );
    assert_eq!(s.chain.billed.get(&(ALICE.to_string(), e as u64)), Some(&3));
    drop(s);
    assert!(b
        .sb
        .ok(&["billing-attempts"])
        .contains("will retry: Epoch not closed yet"));
    b.assert_billed_exactly_once();
}

#[test]
fn guards_clip_and_the_remainder_is_recorded() {
    let b = setup(3_600_000, 60_000);
    b.pause_all();
    {
        let mut s = b.fake.state();
        s.chain.agents.get_mut(ALICE).unwrap().max_windows = 2;
        // window_reward 1e15 * fee 500 / 10000 = 5e13 per window; max charge 1.6e14 => 3 windows.
        s.chain.agents.get_mut(CAROL).unwrap().max_charge = 160_000_000_000_000;
    }
    let e = b.current_epoch();
    b.usage(ALICE, e - 1, 5);
    b.usage(CAROL, e - 1, 7);
    b.tick_until_settled();
    let s = b.fake.state();
    assert_eq!(
        s.chain.billed.get(&(ALICE.to_string(), (e - 1) as u64)),
        Some(&2)
    );
    assert_eq!(
        s.chain.billed.get(&(CAROL.to_string(), (e - 1) as u64)),
        Some(&3)
    );
    assert!(s.chain.executed.iter().all(|x| x.error.is_none()));
    drop(s);
    assert_eq!(
        b.sb.query_i64("SELECT SUM(clipped_windows) FROM usage_windows"),
        3 + 4
    );
    let report = b.sb.ok(&["report", "--wide"]);
    let alice_row = report
        .lines()
        .find(|l| l.starts_with(ALICE))
        .unwrap()
        .to_string();
    let cols: Vec<&str> = alice_row.split_whitespace().collect();
    assert_eq!(
        (cols[6], cols[7]),
        ("2", "3"),
        "BILLED and CLIPPED columns: {report}"
    );
    b.assert_billed_exactly_once();
}

#[test]
fn agents_the_contract_would_refuse_are_never_sent() {
    let b = setup(3_600_000, 60_000);
    b.pause_all();
    let e = b.current_epoch();
    {
        let mut s = b.fake.state();
        s.chain.agents.remove(ALICE);
        s.chain.agents.get_mut(CAROL).unwrap().status = 3;
        s.chain.agents.get_mut(BOB).unwrap().joined_epoch = e as u64;
    }
    b.usage(ALICE, e - 1, 1);
    b.usage(CAROL, e - 1, 1);
    b.usage(BOB, e - 2, 1);
    b.tick_until_settled();
    assert!(b.fake.state().chain.sends.is_empty(), "nothing may be sent");
    let attempts = b.sb.ok(&["billing-attempts"]);
    for reason in ["not enrolled", "cancelled", "join epoch"] {
        assert!(attempts.contains(reason), "{reason}: {attempts}");
    }
    assert_eq!(
        b.sb.query_i64("SELECT COUNT(*) FROM billing_attempts WHERE status = 'skipped'"),
        3
    );
}

#[test]
fn epochs_past_the_backbill_limit_expire_and_are_warned_about() {
    let b = setup(3_600_000, 60_000);
    b.pause_all();
    b.fake.state().chain.max_backbill_epochs = 3;
    let e = b.current_epoch();
    b.usage(ALICE, e - 5, 4);
    b.usage(ALICE, e - 1, 2);
    b.usage(CAROL, e - 3, 1);
    // A tick that cannot send (send refused) still learns the contract's limits.
    b.send_fault(SendFault::Refuse("insufficient funds".into()));
    b.tick();
    let report = b.sb.ok(&["report"]);
    assert!(
        report.contains(&format!("warning: {CAROL} epoch {}", e - 3)),
        "{report}"
    );
    b.tick_until_settled();
    let s = b.fake.state();
    assert!(
        !s.chain
            .sends
            .iter()
            .any(|t| t.contains(&format!("{}", e - 5)))
            || s.chain.billed.len() == 2
    );
    assert!(
        s.chain.executed.iter().all(|x| x.epoch as i64 != e - 5),
        "an expired epoch was sent"
    );
    drop(s);
    assert_eq!(
        b.sb.query_i64("SELECT COUNT(*) FROM usage_windows WHERE outcome LIKE 'expired%'"),
        1
    );
    let report = b.sb.ok(&["report", "--wide"]);
    let alice_row = report
        .lines()
        .find(|l| l.starts_with(ALICE))
        .unwrap()
        .to_string();
    assert_eq!(
        alice_row.split_whitespace().nth(8),
        Some("4"),
        "EXPIRED column: {report}"
    );
}

#[test]
fn a_wrong_operator_key_stops_billing_before_spending_gas() {
    let b = setup(3_600_000, 60_000);
    b.fake.state().chain.operator = ALICE.into();
    let e = b.current_epoch();
    b.usage(CAROL, e - 1, 2);
    let r = b.tick();
    assert_eq!(
        r.code, 4,
        "renewals done, billing needs a human: {}{}",
        r.stdout, r.stderr
    );
    assert!(
        r.stderr.contains("operator") && r.stderr.contains("Only operator"),
        "{}",
        r.stderr
    );
    assert!(
        r.stdout.contains("3 renewed"),
        "renewals go on: {}",
        r.stdout
    );
    assert!(b.fake.state().chain.sends.is_empty());

    // A chain id or gas price the gateway would refuse stops billing the same way.
    b.fake.state().chain.operator = BOB.into();
    for (flag, value, expect) in [
        ("--billing-chain", "D", "chain id"),
        ("--billing-gas-price", "1", "minimum"),
    ] {
        let mut args = b.args("tick");
        args.extend([flag.to_string(), value.to_string()]);
        let r =
            b.sb.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(r.code, 4, "{flag}: {}", r.stderr);
        assert!(r.stderr.contains(expect), "{flag}: {}", r.stderr);
    }
    assert!(b.fake.state().chain.sends.is_empty());
}

#[test]
fn a_crash_after_sending_never_bills_twice() {
    let b = setup(3_600_000, 60_000);
    b.pause_all();
    let e = b.current_epoch();
    b.usage(ALICE, e - 1, 3);
    b.send_fault(SendFault::SlowReply(5_000));
    let args = b.args("tick");
    let mut child =
        b.sb.spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(wait_for(Duration::from_secs(20), || b
        .fake
        .state()
        .chain
        .sends
        .len()
        == 1));
    child.kill().unwrap(); // SIGKILL: the hash is never recorded
    child.wait().unwrap();
    assert_eq!(
        b.sb.query_i64(
            "SELECT COUNT(*) FROM billing_attempts WHERE status = 'pending' AND tx_hash IS NULL"
        ),
        1
    );
    b.tick_until_settled();
    let s = b.fake.state();
    assert!(
        s.chain.sends.len() >= 2,
        "the stored transaction is re-sent"
    );
    assert!(
        s.chain.sends.iter().all(|t| t == &s.chain.sends[0]),
        "re-sends are the identical bytes"
    );
    assert_eq!(s.chain.executed.len(), 1);
    drop(s);
    b.assert_billed_exactly_once();
    b.nonces_have_no_gap();
}

#[test]
fn a_lost_reply_is_resolved_by_resending_the_same_bytes() {
    let b = setup(3_600_000, 60_000);
    b.pause_all();
    b.fake.state().chain.exec_delay_ms = 0;
    let e = b.current_epoch();
    b.usage(ALICE, e - 2, 1);
    b.usage(ALICE, e - 1, 2);
    b.send_fault(SendFault::LostReply);
    let first = b.tick();
    assert!(first.stdout.contains("1 in flight"), "{}", first.stdout);
    std::thread::sleep(Duration::from_millis(50));
    b.tick_until_settled();
    let s = b.fake.state();
    // The lost transaction had executed: its re-send meets a used nonce, resolved by the view.
    assert!(
        s.chain.refused.iter().any(|r| r.contains("lowerNonceInTx")),
        "{:?}",
        s.chain.refused
    );
    assert_eq!(s.chain.sends[0], s.chain.sends[1]);
    assert_eq!(s.chain.billed.len(), 2);
    drop(s);
    b.assert_billed_exactly_once();
    b.nonces_have_no_gap();
}

#[test]
fn a_refused_transaction_frees_its_nonce() {
    let b = setup(3_600_000, 60_000);
    b.pause_all();
    let e = b.current_epoch();
    b.usage(ALICE, e - 1, 1);
    b.usage(CAROL, e - 1, 1);
    b.send_fault(SendFault::Refuse("insufficient funds".into()));
    b.tick();
    assert_eq!(
        b.sb.query_i64(
            "SELECT COUNT(*) FROM billing_attempts WHERE status = 'failed' AND nonce = 0"
        ),
        1
    );
    b.tick_until_settled();
    assert_eq!(
        b.sb.query_i64(
            "SELECT COUNT(*) FROM billing_attempts WHERE status = 'success' AND nonce = 0"
        ),
        1
    );
    assert_eq!(b.fake.state().chain.billed.len(), 2);
    b.assert_billed_exactly_once();
    b.nonces_have_no_gap();
}

#[test]
fn killing_the_daemon_at_random_moments_never_bills_twice_or_loses_an_epoch() {
    let b = setup(1_200, 1_500);
    let args = b.args("run");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--poll-seconds", "1"]);
    let mut rng = fastrand::Rng::with_seed(20261127);
    let kills = 50;
    for _ in 0..kills {
        let mut child = b.sb.spawn(&args);
        std::thread::sleep(Duration::from_millis(rng.u64(30..700)));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    b.settle_after_renewals();
    let windows = b.assert_windows_in_their_epochs();
    println!("{windows} windows counted, each in the epoch the service granted it in");

    // No epoch made unbillable: nothing settled without billing, no order violation.
    assert_eq!(
        b.sb.query_i64("SELECT COUNT(*) FROM usage_windows WHERE billed = 0"),
        0
    );
    let integrity: String =
        b.sb.conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
    assert_eq!(integrity, "ok");
    // Every counted window is one the service granted (a reply lost to a kill may be missing).
    let s = b.fake.state();
    let granted = s.granted_per_epoch();
    let counted = b.sb.usage();
    for (key, n) in &counted {
        assert!(
            granted.get(key).is_some_and(|g| g >= n),
            "{key:?}: counted {n}, granted {:?}",
            granted.get(key)
        );
    }
    drop(s);
    // Every counted window of a closed epoch is billed on chain, once.
    b.assert_chain_billed(&counted);
    b.assert_no_avoidable_failures();
    let s = b.fake.state();
    println!(
        "{kills} kills: {} windows granted, {} counted, {} epochs billed, {} transactions",
        granted.values().sum::<i64>(),
        counted.values().sum::<i64>(),
        s.chain.billed.len(),
        s.chain.executed.len()
    );
    drop(s);
    b.assert_billed_exactly_once();
    b.nonces_have_no_gap();
}

/// `run` for a while under a seeded mix of faults: 5xx, resets, answers past the timeout,
/// 200s that are not JSON or are huge, 429s, lost replies, gateway outages of whole
/// ticks, lost and refused transaction replies, and epochs of 1.5 s changing mid-tick.
#[test]
fn run_under_a_mix_of_faults_keeps_streams_counts_and_bills_exactly() {
    let b = setup(4_000, 1_500);
    b.fake.state().chaos = Some(Chaos::new(5, 0.25, 0.04, 0.3));
    let args = b.args("run");
    let mut args: Vec<&str> = args.iter().map(String::as_str).skip(5).collect();
    args.splice(
        0..0,
        [
            "run",
            "--lead-seconds",
            "2",
            "--jitter-seconds",
            "1",
            "--timeout-seconds",
            "1",
            "--poll-seconds",
            "1",
            "--count-observed-windows",
        ],
    );
    let child = b.sb.spawn(&args);
    let enough = wait_for(Duration::from_secs(120), || {
        let s = b.fake.state();
        s.windows.len() == 3 && s.windows.values().all(|w| w.len() >= 8)
    });
    let (code, _, err) = terminate(child);
    assert!(enough, "{err}");
    assert_eq!(code, 0);
    b.fake.state().chaos = None;
    b.fake.state().gateway_down_until = 0;
    b.settle_after_renewals();
    b.assert_windows_in_their_epochs();

    let s = b.fake.state();
    let faults_by_kind = s
        .faults
        .iter()
        .fold(HashMap::<String, usize>::new(), |mut m, f| {
            *m.entry(f.2.split(['(', ' ']).next().unwrap().to_string())
                .or_default() += 1;
            m
        });
    // 1. Continuity: a gap only where the service itself failed that agent's renewal.
    let mut worst = 0;
    for (addr, ws) in &s.windows {
        for pair in ws.windows(2) {
            let gap = pair[1].start - pair[0].end;
            worst = worst.max(gap);
            if gap > 2_000 {
                // A fault is recorded when it is decided; a delayed answer's window is
                // granted 1.5 s later (its answer lost to the client's 1 s timeout).
                let explained = s.faults.iter().any(|(a, at, _)| {
                    a == addr && *at >= pair[0].start - 2_500 && *at <= pair[1].start
                });
                assert!(
                    explained,
                    "{addr} lapsed {gap} ms with no fault from the service: {:?} {}",
                    pair,
                    b.sb.ok(&[
                        "attempts",
                        "--address",
                        addr,
                        "--limit",
                        "80",
                        "--format",
                        "tsv"
                    ])
                );
                assert!(
                    gap <= 31_000,
                    "{addr} lapsed {gap} ms, longer than the first backoff"
                );
            }
        }
    }
    // 2. Counting, window by window: every counted window was granted, in its epoch unless
    //    it was only observed after its reply was lost; every window answered is counted.
    let conn = b.sb.conn();
    let counted: Vec<(String, i64, i64, bool)> = conn
        .prepare("SELECT a.address, w.end_stream_ms, w.epoch, w.observed FROM stream_windows w JOIN agents a ON a.id = w.agent_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let granted: HashMap<(String, i64), i64> = s
        .windows
        .iter()
        .flat_map(|(a, ws)| ws.iter().map(move |w| ((a.clone(), w.end), w.epoch)))
        .collect();
    for (addr, end, epoch, observed) in &counted {
        let key = (addr.clone(), *end);
        let Some(granted_epoch) = granted.get(&key) else {
            panic!("{addr} counted a window never granted")
        };
        if *observed {
            assert!(
                s.lost_windows.contains(&key),
                "observed a window whose answer was not lost"
            );
        } else {
            assert_eq!(
                epoch, granted_epoch,
                "{addr} window ending {end} in the wrong epoch"
            );
        }
    }
    let counted_keys: std::collections::HashSet<(String, i64)> =
        counted.iter().map(|c| (c.0.clone(), c.1)).collect();
    for key in granted.keys() {
        assert!(
            counted_keys.contains(key) || s.lost_windows.contains(key),
            "{key:?} answered but not counted"
        );
    }
    let lost_counted = counted.iter().filter(|c| c.3).count();
    // 3. Billing: every closed epoch billed once with its counted windows.
    drop(s);
    b.assert_chain_billed(&b.sb.usage());
    b.assert_no_avoidable_failures();
    let s = b.fake.state();
    println!(
        "chaos: {} windows granted, {} counted ({} of {} lost replies observed), worst gap {worst} ms, faults {faults_by_kind:?}, {} epochs billed, {} transactions, {} send refusals",
        granted.len(),
        counted.len(),
        lost_counted,
        s.lost_windows.len(),
        s.chain.billed.len(),
        s.chain.executed.len(),
        s.chain.refused.len()
    );
    drop(s);
    b.assert_billed_exactly_once();
    b.nonces_have_no_gap();
}

/// A gateway that answers transaction sends too slowly must never delay a renewal: billing
/// yields as soon as an agent is due.
#[test]
fn billing_never_delays_a_renewal() {
    let b = setup(4_000, 60_000);
    // Six transactions whose fate is unknown: each re-send meets a 1.5 s answer and a 1 s
    // timeout, six seconds of billing per tick (longer than a window) if it did not yield.
    {
        let c = b.sb.conn();
        for (nonce, addr) in [ALICE, CAROL, BOB, ALICE, CAROL, BOB].iter().enumerate() {
            c.execute(
                "INSERT INTO billing_attempts (agent_id, epoch, windows, created_ms, updated_ms, nonce, signed_tx, status)
                 VALUES (?1, 1, 1, ?2, ?2, ?3, '{}', 'pending')",
                rusqlite::params![b.ids[*addr], now_ms(), nonce as i64],
            )
            .unwrap();
        }
    }
    for _ in 0..500 {
        b.send_fault(SendFault::SlowReply(1_500));
    }
    let args = b.args("run");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--timeout-seconds", "1", "--poll-seconds", "1"]);
    let child = b.sb.spawn(&args);
    let enough = wait_for(Duration::from_secs(60), || {
        let s = b.fake.state();
        s.windows.len() == 3 && s.windows.values().all(|w| w.len() >= 5)
    });
    let (code, _, err) = terminate(child);
    assert!(enough, "{err}");
    assert_eq!(code, 0);
    let s = b.fake.state();
    assert!(
        s.chain.sends.len() >= 6,
        "billing did run: {} sends",
        s.chain.sends.len()
    );
    assert_eq!(
        s.max_gap_ms(),
        0,
        "a window lapsed while billing waited on the gateway"
    );
}
