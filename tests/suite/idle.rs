//! The idle tick: with nothing due, nothing in flight and the epoch timeline fresh, a tick
//! asks nobody and writes nothing; epoch boundaries are still observed, once each, and a
//! closed epoch is billed as promptly as before.

use crate::common;

use std::time::{Duration, Instant};

use common::bill::setup;
use common::*;

fn ticker(fake: &FakeClaws) -> Vec<String> {
    let mut a: Vec<String> = vec!["tick".into(), "--jitter-seconds".into(), "0".into()];
    a.extend(net_args(fake));
    a
}

fn db_files(sb: &Sandbox) -> (Vec<u8>, Vec<u8>) {
    let wal = sb.db.with_extension("db-wal");
    (sb.file_bytes(), std::fs::read(wal).unwrap_or_default())
}

#[test]
fn twenty_idle_ticks_send_no_request_and_write_nothing() {
    let fake = FakeClaws::start(
        1_800_000,
        RenewalPolicy::Early {
            accept_before_ms: 60_000,
        },
        600_000,
    );
    let sb = Sandbox::new();
    sb.enroll_all();
    let args = ticker(&fake);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let first = sb.ok(&args);
    assert!(first.contains("3 renewed"), "{first}");
    let (gateway, stream) = {
        let s = fake.state();
        (s.gateway_requests, s.stream_requests)
    };
    let files = db_files(&sb);
    for _ in 0..20 {
        let out = sb.ok(&args);
        assert!(out.contains("no request sent"), "{out}");
        assert!(out.contains("0 due"), "{out}");
    }
    let s = fake.state();
    assert_eq!(
        s.gateway_requests - gateway,
        0,
        "gateway requests while idle"
    );
    assert_eq!(s.stream_requests - stream, 0);
    drop(s);
    assert_eq!(db_files(&sb), files, "an idle tick wrote to the database");
    // The epoch it names is the network's.
    let out = sb.ok(&args);
    let epoch = fake.state().epoch_at(now_ms());
    assert!(
        out.contains(&format!("epoch {epoch} ")) || out.contains(&format!("epoch {epoch};")),
        "{out}"
    );
    // check still says when the last observation was.
    let check = sb.run(&["check"]);
    assert!(
        check.stdout.contains(&format!("epoch {epoch} observed")),
        "{}",
        check.stdout
    );
}

#[test]
fn idle_ticks_across_boundaries_observe_each_boundary_once() {
    let fake = FakeClaws::start(
        1_800_000,
        RenewalPolicy::Early {
            accept_before_ms: 60_000,
        },
        2_000,
    );
    let sb = Sandbox::new();
    sb.enroll_all();
    let args = ticker(&fake);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sb.ok(&args);
    let first_epoch = fake.state().epoch_at(now_ms());
    let before = fake.state().status_requests;
    let started = Instant::now();
    let mut ticks = 0;
    let mut last = String::new();
    while started.elapsed() < Duration::from_millis(6_500) {
        last = sb.ok(&args);
        ticks += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let s = fake.state();
    let epoch = s.epoch_at(now_ms());
    let boundaries = (epoch - first_epoch) as usize;
    let observations = s.status_requests - before;
    drop(s);
    println!("{ticks} ticks across {boundaries} boundaries: {observations} epoch observations");
    assert!(boundaries >= 3);
    // Each boundary once, plus at most one more for a tick that began just before one.
    assert!(
        observations <= boundaries + 1,
        "{observations} observations for {boundaries} boundaries"
    );
    assert!(observations >= boundaries - 1, "boundaries not observed");
    let names =
        |e: i64| last.contains(&format!("epoch {e} ")) || last.contains(&format!("epoch {e};"));
    assert!(names(epoch) || names(epoch - 1), "{last}");
}

#[test]
fn with_billing_a_closed_epoch_is_billed_as_promptly_as_before() {
    let b = setup(3_600_000, 3_000);
    b.pause_all();
    b.tick();
    let e = b.current_epoch();
    b.usage(common::bill::ALICE, e, 2);
    // Idle until the epoch closes: no bill, no view read.
    let r = b.tick();
    assert!(r.stdout.contains("no request sent"), "{}", r.stdout);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut boundary_seen = None;
    let mut billed_at = None;
    while Instant::now() < deadline && billed_at.is_none() {
        b.tick();
        if boundary_seen.is_none() && b.current_epoch() > e {
            boundary_seen = Some(Instant::now());
        }
        let s = b.fake.state();
        if s.chain
            .bills
            .contains_key(&(common::bill::ALICE.to_string(), e as u64))
        {
            billed_at = Some(Instant::now());
        }
        drop(s);
        std::thread::sleep(Duration::from_millis(50));
    }
    let (seen, billed) = (boundary_seen.unwrap(), billed_at.expect("never billed"));
    let after = billed.saturating_duration_since(seen);
    println!(
        "billed {} ms after the boundary was first seen",
        after.as_millis()
    );
    // Billing waits 3 rounds (300 ms here) into the new epoch, as it always did.
    assert!(after < Duration::from_secs(3), "{after:?}");
}
