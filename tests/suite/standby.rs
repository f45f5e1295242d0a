//! When the host fails: a standby renews only while the primary is late and never bills;
//! `absorb` brings its windows into the primary's ledger once; a restored primary learns
//! every bill the chain has (`reconcile` from the escrow's last billed epoch); a host
//! clock that steps between renewals is noticed without asking anybody.

use std::time::Duration;

use crate::common;
use common::bill::{setup, ALICE};
use common::*;

#[test]
fn a_restored_backup_learns_every_bill_the_chain_has() {
    let b = setup(3_600_000, 2_000);
    b.pause_all();
    let e = b.current_epoch();
    b.usage(ALICE, e - 2, 3);
    b.tick_until_settled();
    let backup = b.sb.dir.path().join("before.db");
    b.sb.ok(&["backup", "--to", backup.to_str().unwrap()]);
    // Two more bills after the backup, then the backup restored.
    let later = wait_for(Duration::from_secs(20), || b.current_epoch() > e);
    assert!(later);
    b.usage(ALICE, e - 1, 2);
    b.usage(ALICE, e, 4);
    b.tick_until_settled();
    assert_eq!(b.fake.state().chain.bills.len(), 3);
    b.sb.ok(&["restore", backup.to_str().unwrap()]);
    let billed = |b: &common::bill::Bill| {
        b.sb.query_i64(
            "SELECT COUNT(*) FROM usage_windows WHERE kind IN ('billed', 'billed-found-on-chain')",
        )
    };
    assert_eq!(billed(&b), 1, "the backup knows one bill");
    let r = b.reconcile(&[]);
    assert_eq!(r.code, 4, "two bills missing: {}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("no record"), "{}", r.stdout);
    let r = b.reconcile(&["--apply"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(billed(&b), 3, "every bill the chain has, known locally");
    let open = b.sb.ok(&["receivables", "--format", "json"]);
    let open: serde_json::Value = serde_json::from_str(&open).unwrap();
    assert_eq!(open.as_array().unwrap().len(), 3, "{open}");
    // Nothing billed twice: the next ticks send nothing.
    b.tick_until_settled();
    assert_eq!(b.fake.state().chain.executed.len(), 3);
    let r = b.reconcile(&[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

/// Three agents on the primary's database and the escrow, a second sandbox for the
/// standby; windows of `window_ms` renewed up to `accept_ms` before their end.
fn two_hosts(window_ms: i64, accept_ms: i64, epoch_ms: i64) -> (common::bill::Bill, Sandbox) {
    let b = setup(window_ms, epoch_ms);
    b.fake.state().policy = RenewalPolicy::Early {
        accept_before_ms: accept_ms,
    };
    (b, Sandbox::new())
}

/// A child process from a program on the PATH (Litestream), its output to a log file.
fn spawn_tool(program: &str, args: &[&str], log: &std::path::Path) -> std::process::Child {
    let out = std::fs::File::create(log).unwrap();
    std::process::Command::new(program)
        .args(args)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{program} is needed for this test ({e}): run the tests with tests/run, which brings it")
        })
}

/// `litestream replicate` of the primary's database to a file:// replica.
fn replicate(b: &common::bill::Bill, replica: &str) -> std::process::Child {
    let db = b.sb.db.to_str().unwrap().to_string();
    spawn_tool(
        "litestream",
        &["replicate", &db, replica],
        &b.sb.dir.path().join("replicate.log"),
    )
}

/// The primary's `run`: billing on, renewing 8 s before the end (the standby: 2 s).
fn spawn_primary(b: &common::bill::Bill) -> std::process::Child {
    spawn_primary_with(b, &[])
}

fn spawn_primary_with(b: &common::bill::Bill, extra: &[&str]) -> std::process::Child {
    let mut a = b.args("run");
    let at = a.iter().position(|x| x == "--lead-seconds").unwrap();
    a[at + 1] = "8".into();
    a.extend(["--poll-seconds", "1"].map(String::from));
    a.extend(extra.iter().map(|x| x.to_string()));
    b.sb.spawn(&a.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `standby` on `copy` against the fake, renewing 2 s before the end.
fn standby_args(copy: &str, fake: &FakeClaws) -> Vec<String> {
    let mut args: Vec<String> = [
        "standby",
        "--copy",
        copy,
        "--standby-lead-seconds",
        "2",
        "--lead-seconds",
        "8",
        "--jitter-seconds",
        "0",
        "--poll-seconds",
        "1",
    ]
    .map(String::from)
    .to_vec();
    args.extend(net_args(fake));
    args
}

fn granted_total(b: &common::bill::Bill) -> usize {
    b.fake.state().windows.values().map(Vec::len).sum()
}

/// Lets the primary's `run` settle every closed epoch, stops it, and checks the ledger:
/// counted == granted for every closed epoch, no failed transaction, each epoch billed once.
fn settle_and_check(b: &common::bill::Bill, primary: std::process::Child) {
    let closed = b.current_epoch();
    let settled = b.wait_settled(closed);
    let (code, _, err) = terminate(primary);
    assert!(settled, "{err}");
    assert_eq!(code, 0, "{err}");
    b.assert_counted_and_billed_once(closed);
}

fn windows_opened(sb: &Sandbox) -> i64 {
    if !sb.db.exists() {
        return 0;
    }
    sb.query_i64("SELECT COUNT(*) FROM stream_windows")
}

#[test]
fn a_standby_keeps_every_stream_alive_while_the_primary_is_dead_and_never_bills() {
    let (b, standby_sb) = two_hosts(10_000, 9_000, 6_000);
    let replica = format!("file://{}", b.sb.dir.path().join("replica").display());
    let copy = standby_sb.dir.path().join("copy.db");
    let copy_s = copy.to_str().unwrap().to_string();
    let mut primary = spawn_primary(&b);
    assert!(wait_for(Duration::from_secs(20), || b
        .fake
        .state()
        .windows
        .len()
        == 3));
    let mut replication = replicate(&b, &replica);
    let replicated = wait_for(Duration::from_secs(30), || {
        b.sb.dir.path().join("replica").exists()
    });
    assert!(
        replicated,
        "no replica: {}",
        std::fs::read_to_string(b.sb.dir.path().join("replicate.log")).unwrap_or_default()
    );
    let follower_log = standby_sb.dir.path().join("follower.log");
    let mut follower = spawn_tool(
        "litestream",
        &["restore", "-f", "-o", &copy_s, &replica],
        &follower_log,
    );
    let args = standby_args(&copy_s, &b.fake);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let standby = standby_sb.spawn(&args);
    // A second standby on the same database is refused, like a second run.
    assert!(wait_for(Duration::from_secs(10), || standby_sb
        .dir
        .path()
        .join("agency.db.lock")
        .exists()));
    assert_eq!(standby_sb.run(&args).code, 3);
    // Healthy: two more windows each, and the standby opens none.
    let before = granted_total(&b);
    assert!(wait_for(Duration::from_secs(40), || granted_total(&b) >= before + 6));
    let healthy = windows_opened(&standby_sb);
    // The primary and its replication die for three windows.
    for child in [&mut primary, &mut replication] {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (dead_from, at_death) = (now_ms(), granted_total(&b));
    assert!(wait_for(Duration::from_secs(60), || granted_total(&b)
        >= at_death + 9));
    let dead_ms = now_ms() - dead_from;
    let (code, _, standby_log) = terminate(standby);
    assert_eq!(code, 0, "{standby_log}");
    let _ = follower.kill();
    let _ = follower.wait();
    let gap = b.fake.state().max_gap_ms();
    let by_standby = windows_opened(&standby_sb);
    println!(
        "standby: {healthy} windows while the primary was healthy, {by_standby} in {dead_ms} ms while it was dead; worst gap {gap} ms"
    );
    assert_eq!(
        healthy, 0,
        "the standby renewed while the primary was healthy: {standby_log}"
    );
    assert!(by_standby >= 6, "{standby_log}");
    assert!(gap <= 0, "a window lapsed for {gap} ms");
    assert!(standby_log.contains("the primary is late"), "{standby_log}");
    // The standby sent no transaction: its own database has no billing row.
    assert_eq!(
        standby_sb.query_i64("SELECT COUNT(*) FROM billing_attempts"),
        0
    );
    // Back: absorb the standby's windows (twice: the second adds nothing), then run.
    let absorbed = b.sb.ok(&["absorb", standby_sb.db.to_str().unwrap()]);
    assert!(
        absorbed.contains(&format!("absorbed {by_standby} windows")),
        "{absorbed}"
    );
    let again = b.sb.ok(&["absorb", standby_sb.db.to_str().unwrap()]);
    assert!(again.contains("absorbed 0 windows"), "{again}");
    b.pause_all();
    settle_and_check(&b, spawn_primary(&b));
}

fn signal(child: &std::process::Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid, with a plain signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn a_standby_survives_a_missing_or_torn_copy_and_a_frozen_primary() {
    let (b, standby_sb) = two_hosts(10_000, 9_000, 6_000);
    let copy = standby_sb.dir.path().join("copy.db");
    let copy_s = copy.to_str().unwrap().to_string();
    let primary = spawn_primary(&b);
    assert!(wait_for(Duration::from_secs(20), || b
        .fake
        .state()
        .windows
        .len()
        == 3));
    // Started before any copy exists: it waits, renews nothing.
    let args = standby_args(&copy_s, &b.fake);
    let standby = standby_sb.spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(wait_for(Duration::from_secs(10), || standby_sb.db.exists()));
    let check = standby_sb.run(&["check", "--standby-copy", &copy_s]);
    assert_eq!(check.code, 4, "no copy: {}", check.stdout);
    // A copy appears (a consistent one, as Litestream's follower keeps it).
    b.sb.ok(&["backup", "--to", &copy_s]);
    let check = standby_sb.run(&["check", "--standby-copy", &copy_s]);
    assert_eq!(
        check.code, 0,
        "a fresh copy: {}{}",
        check.stdout, check.stderr
    );
    let mirrored = wait_for(Duration::from_secs(10), || {
        standby_sb.query_i64("SELECT COUNT(*) FROM agents WHERE status = 'active'") == 3
    });
    if !mirrored {
        let (_, out, err) = terminate(standby);
        panic!("the standby did not mirror the copy: {out}{err}");
    }
    // The primary freezes; the copy is torn, then gone: the last good view is enough.
    signal(&primary, libc::SIGSTOP);
    let frozen = granted_total(&b);
    std::fs::write(&copy, b"SQLite format 3\0torn").unwrap();
    assert!(wait_for(Duration::from_secs(30), || granted_total(&b) >= frozen + 3));
    std::fs::remove_file(&copy).unwrap();
    assert!(wait_for(Duration::from_secs(30), || granted_total(&b) >= frozen + 6));
    // Resumed: it meets the standby's windows ("already streaming") and goes on.
    signal(&primary, libc::SIGCONT);
    let resumed = granted_total(&b);
    assert!(wait_for(Duration::from_secs(30), || granted_total(&b) >= resumed + 3));
    let (code, _, standby_log) = terminate(standby);
    assert_eq!(code, 0, "{standby_log}");
    b.sb.ok(&["absorb", standby_sb.db.to_str().unwrap()]);
    settle_and_check(&b, primary);
    let gap = b.fake.state().max_gap_ms();
    println!("frozen primary, torn and missing copy: worst gap {gap} ms");
    assert!(gap <= 0, "a window lapsed for {gap} ms: {standby_log}");
    assert!(
        standby_log.contains("last good view is kept"),
        "{standby_log}"
    );
}

/// Ticks once a second for `secs` seconds on a host clock shifted by `shift_ms`.
fn tick_for(sb: &Sandbox, args: &[&str], shift_ms: i64, secs: u64) {
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < until {
        let mut cmd = sb.command(args);
        cmd.env("STREAM_AGENCY_TEST_WALL_SHIFT_MS", shift_ms.to_string());
        let r = Ran::of(cmd);
        assert!(r.code == 0 || r.code == 4, "{}{}", r.stdout, r.stderr);
        std::thread::sleep(Duration::from_millis(1_000));
    }
}

fn check_at(sb: &Sandbox, shift_ms: i64) -> Ran {
    let mut cmd = sb.command(&["check", "--warn-seconds", "0"]);
    cmd.env("STREAM_AGENCY_TEST_WALL_SHIFT_MS", shift_ms.to_string());
    Ran::of(cmd)
}

#[test]
fn a_host_clock_step_between_renewals_is_noticed_in_time() {
    let fake = FakeClaws::start(
        12_000,
        RenewalPolicy::Early {
            accept_before_ms: 8_000,
        },
        60_000,
    );
    let sb = Sandbox::new();
    sb.enroll_all();
    let net = net_args(&fake);
    let mut args = vec!["tick", "--lead-seconds", "4", "--jitter-seconds", "0"];
    args.extend(net.iter().map(String::as_str));
    tick_for(&sb, &args, 0, 4);
    assert_eq!(fake.state().windows.len(), 3);
    // Back 40 s, forward again, back 10 minutes, forward again: each between renewals.
    let mut said = Vec::new();
    for shift in [-40_000, 0, -600_000, 0] {
        let check = check_at(&sb, shift);
        said.push((shift, check.code, check.stdout.clone()));
        tick_for(&sb, &args, shift, 14);
    }
    let gap = fake.state().max_gap_ms();
    println!(
        "host clock stepped by -40 s, +40 s, -10 min, +10 min between renewals: worst gap {gap} ms"
    );
    for (shift, code, out) in &said {
        println!("check right after the step to {shift} ms: exit {code}");
        assert!(out.contains("the host clock stepped"), "{shift}: {out}");
    }
    assert!(gap <= 0, "a window lapsed for {gap} ms");
    // 40 s is within --max-clock-skew-seconds (60): said, not a problem; 10 minutes is.
    assert_eq!(said[0].1, 0, "{}", said[0].2);
    assert_eq!(said[2].1, 4, "{}", said[2].2);
    assert!(said[2].2.contains("behind"), "{}", said[2].2);
}

/// `litestream restore -f`: a follower keeping `copy` up to date from `replica`.
fn follow(replica: &str, copy: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    spawn_tool(
        "litestream",
        &["restore", "-f", "-o", copy.to_str().unwrap(), replica],
        log,
    )
}

fn stop(children: &mut [&mut std::process::Child]) {
    for child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Every closed epoch's bill on the chain charged the windows the stream service granted.
fn bills_match_granted(b: &common::bill::Bill, before: i64) -> (usize, Vec<String>) {
    let s = b.fake.state();
    let granted = s.granted_per_epoch();
    let (mut exact, mut wrong) = (0, Vec::new());
    for ((agent, epoch), n) in &granted {
        if *epoch >= before {
            continue;
        }
        match s.chain.bills.get(&(agent.clone(), *epoch as u64)) {
            Some(bill) if bill.windows == *n as u64 => exact += 1,
            other => wrong.push(format!(
                "{agent} epoch {epoch}: granted {n}, billed {:?}",
                other.map(|b| b.windows)
            )),
        }
    }
    (exact, wrong)
}

#[test]
fn after_an_outage_the_standbys_windows_come_home_and_are_billed_without_absorb() {
    let (b, standby_sb) = two_hosts(10_000, 9_000, 6_000);
    let dir = b.sb.dir.path();
    let replica = format!("file://{}", dir.join("replica").display());
    let back_replica = format!("file://{}", standby_sb.dir.path().join("back").display());
    let copy = standby_sb.dir.path().join("copy.db");
    let back_copy = dir.join("standby-copy.db");
    let home = ["--standby-copy", back_copy.to_str().unwrap()];
    let mut primary = spawn_primary_with(&b, &home);
    assert!(wait_for(Duration::from_secs(20), || b
        .fake
        .state()
        .windows
        .len()
        == 3));
    let mut replication = replicate(&b, &replica);
    assert!(wait_for(Duration::from_secs(30), || dir
        .join("replica")
        .exists()));
    let mut follower = follow(&replica, &copy, &standby_sb.dir.path().join("follower.log"));
    let args = standby_args(copy.to_str().unwrap(), &b.fake);
    let standby = standby_sb.spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(wait_for(Duration::from_secs(20), || standby_sb.db.exists()));
    // The standby's database replicated back to the primary's host, the same way.
    let mut back = spawn_tool(
        "litestream",
        &["replicate", standby_sb.db.to_str().unwrap(), &back_replica],
        &standby_sb.dir.path().join("back.log"),
    );
    assert!(wait_for(Duration::from_secs(30), || standby_sb
        .dir
        .path()
        .join("back")
        .exists()));
    let mut back_follower = follow(&back_replica, &back_copy, &dir.join("back-follower.log"));
    let before = granted_total(&b);
    assert!(wait_for(Duration::from_secs(40), || granted_total(&b) >= before + 6));
    // The primary and its replication die for three windows of every agent.
    stop(&mut [&mut primary, &mut replication]);
    let (dead_from, at_death) = (now_ms(), granted_total(&b));
    assert!(wait_for(Duration::from_secs(60), || granted_total(&b)
        >= at_death + 9));
    let dead_ms = now_ms() - dead_from;
    // Back as a rebooted host comes back: its units start it, billing on; nobody absorbs.
    let mut replication = replicate(&b, &replica);
    let (restarted_at, restarted_ms) = (b.current_epoch(), now_ms());
    let primary = spawn_primary_with(&b, &home);
    let after = granted_total(&b);
    assert!(wait_for(Duration::from_secs(40), || granted_total(&b) >= after + 3));
    let by_standby = windows_opened(&standby_sb);
    let (code, _, standby_log) = terminate(standby);
    assert_eq!(code, 0, "{standby_log}");
    // Everything the standby opened reaches the primary's copy of it.
    let home_in = wait_for(Duration::from_secs(30), || {
        b.sb.query_i64("SELECT COUNT(*) FROM stream_windows") as usize >= granted_total(&b)
    });
    b.pause_all();
    settle_and_check(&b, primary);
    stop(&mut [
        &mut replication,
        &mut follower,
        &mut back,
        &mut back_follower,
    ]);
    let closed = b.current_epoch();
    let (exact, wrong) = bills_match_granted(&b, closed);
    let never_counted =
        granted_total(&b) as i64 - b.sb.query_i64("SELECT COUNT(*) FROM stream_windows");
    // How long each bill came after its epoch's end: the outage's epochs waited for the
    // standby's copy, the others only for the chain's settle rounds.
    let waited_ms = b.sb.query_i64(&format!(
        "SELECT COALESCE(MAX(b.created_ms - MAX(s.start_ms, {restarted_ms})), 0)
         FROM billing_attempts b JOIN epoch_starts s ON s.epoch = b.epoch + 1
         WHERE b.status = 'success'"
    ));
    println!(
        "longest wait from an epoch's end (or the primary's return) to its bill: {waited_ms} ms"
    );
    println!(
        "outage of {dead_ms} ms (primary back in epoch {restarted_at}): the standby opened {by_standby} windows; {exact} agent-epochs billed exactly with the windows granted, {} not; windows kept and never counted: {never_counted}",
        wrong.len()
    );
    assert!(home_in, "the standby's windows never came home");
    assert!(by_standby >= 6, "{standby_log}");
    assert!(wrong.is_empty(), "{wrong:?}");
    assert_eq!(never_counted, 0);
    assert_eq!(b.fake.state().max_gap_ms(), 0, "a window lapsed");
}

#[test]
fn a_stale_standby_copy_holds_the_outages_epochs_then_they_are_billed_as_clipped() {
    let (b, standby_sb) = two_hosts(10_000, 9_000, 4_000);
    // A standby copy that stopped being replicated long ago: its heartbeat is old.
    standby_sb.ok(&["init-db"]);
    standby_sb
        .conn()
        .execute(
            "INSERT INTO meta (key, value) VALUES ('standby_alive_ms', ?1)",
            [(now_ms() - 3_600_000).to_string()],
        )
        .unwrap();
    let copy = b.sb.dir.path().join("standby-copy.db");
    standby_sb.ok(&["backup", "--to", copy.to_str().unwrap()]);
    let home = ["--standby-copy", copy.to_str().unwrap()];
    let mut primary = spawn_primary_with(&b, &home);
    assert!(wait_for(Duration::from_secs(20), || b
        .fake
        .state()
        .windows
        .len()
        == 3));
    let first = b.current_epoch();
    // Healthy epochs are billed at once, copy or not.
    let billed_healthy = wait_for(Duration::from_secs(30), || {
        b.fake
            .state()
            .chain
            .bills
            .keys()
            .any(|(_, e)| *e as i64 >= first)
    });
    assert!(billed_healthy, "a healthy epoch waited for the standby");
    // The primary dies for two windows: its windows lapse (no standby runs).
    stop(&mut [&mut primary]);
    let dead_epoch = b.current_epoch();
    std::thread::sleep(Duration::from_millis(22_000));
    let started = std::time::Instant::now();
    let primary = spawn_primary_with(&b, &home);
    // The outage's epochs wait (1 epoch past their end by default), then are billed.
    let gap_epoch_billed = |b: &common::bill::Bill| {
        b.sb.query_i64(&format!(
            "SELECT COUNT(*) FROM usage_windows WHERE epoch >= {dead_epoch} AND standby_clip IS NOT NULL
             AND kind IN ('billed', 'billed-found-on-chain')"
        ))
    };
    let clipped = wait_for(Duration::from_secs(60), || gap_epoch_billed(&b) > 0);
    let waited = started.elapsed();
    let check = b.sb.run(&["check", "--warn-seconds", "0"]);
    let (code, _, log) = terminate(primary);
    println!(
        "stale standby copy: the outage's epochs billed as clipped {:.1} s after the primary came back; check exit {}",
        waited.as_secs_f64(),
        check.code
    );
    assert_eq!(code, 0, "{log}");
    assert!(clipped, "{log}");
    assert!(
        log.contains("billed without the standby's windows"),
        "{log}"
    );
    assert_eq!(check.code, 4, "{}", check.stdout);
    assert!(
        check.stdout.contains("billed without the standby"),
        "{}",
        check.stdout
    );
    let s = b.fake.state();
    assert!(
        s.chain.executed.iter().all(|x| x.error.is_none()),
        "{:?}",
        s.chain.executed
    );
}

/// Every bill the chain has, as (agent, epoch) -> (windows, due, state).
fn chain_ledger(
    b: &common::bill::Bill,
) -> std::collections::BTreeMap<(String, i64), (i64, String, u8)> {
    let s = b.fake.state();
    s.chain
        .bills
        .iter()
        .map(|((a, e), bill)| {
            (
                (a.clone(), *e as i64),
                (bill.windows as i64, bill.due.to_string(), bill.state),
            )
        })
        .collect()
}

/// A billed epoch as the local ledger has it: (billed windows, due, state).
type LocalBill = (Option<i64>, Option<String>, Option<String>);

/// The local ledger's view of billed epochs: (agent, epoch) -> (billed windows, due, state).
fn local_ledger(b: &common::bill::Bill) -> std::collections::BTreeMap<(String, i64), LocalBill> {
    let conn = b.sb.conn();
    let mut stmt = conn
        .prepare(
            "SELECT a.address, u.epoch, u.billed_windows, u.due_atto, u.settlement FROM usage_windows u
             JOIN agents a ON a.id = u.agent_id WHERE u.kind IN ('billed', 'billed-found-on-chain')",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?, r.get(4)?)))
        })
        .unwrap();
    rows.map(Result::unwrap).collect()
}

#[test]
fn the_restore_drill_ends_with_every_chain_bill_known() {
    let b = setup(10_000, 3_000);
    let primary = spawn_primary(&b);
    let bills = |b: &common::bill::Bill| b.fake.state().chain.bills.len();
    assert!(wait_for(Duration::from_secs(30), || bills(&b) >= 3));
    let backup = b.sb.dir.path().join("before.db");
    b.sb.ok(&["backup", "--to", backup.to_str().unwrap()]);
    let at_backup = bills(&b);
    // Several more bills after the backup; stopped right after a bill is confirmed.
    assert!(wait_for(Duration::from_secs(40), || bills(&b) >= at_backup + 6));
    let last_epoch = *b
        .fake
        .state()
        .chain
        .bills
        .keys()
        .map(|(_, e)| e)
        .max()
        .unwrap() as i64;
    let confirmed = wait_for(Duration::from_secs(30), || {
        b.sb.query_i64(&format!(
            "SELECT COUNT(*) FROM usage_windows WHERE epoch = {last_epoch} AND kind = 'billed'"
        )) >= 1
    });
    let (code, _, log) = terminate(primary);
    assert!(confirmed && code == 0, "{log}");
    b.sb.ok(&["restore", backup.to_str().unwrap()]);
    let r = b.reconcile(&["--apply"]);
    assert!(r.code == 0, "{}{}", r.stdout, r.stderr);
    let chain = chain_ledger(&b);
    let local = local_ledger(&b);
    let names = [
        "",
        "Billed",
        "SettledOnTime",
        "SettledLate",
        "Slashed",
        "Delinquent",
    ];
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for (key, (windows, due, state)) in &chain {
        match local.get(key) {
            None => unknown.push(key.clone()),
            Some((w, d, s)) => {
                let want = (
                    Some(*windows),
                    Some(due.clone()),
                    Some(names[*state as usize].to_string()),
                );
                if (*w, d.clone(), s.clone()) != want {
                    wrong.push(format!("{key:?}: local {:?}, chain {want:?}", (w, d, s)));
                }
            }
        }
    }
    println!(
        "restore drill: {} chain bills, {} without a local row after reconcile --apply, {} with other windows, due or state",
        chain.len(),
        unknown.len(),
        wrong.len()
    );
    assert!(unknown.is_empty(), "{unknown:?}");
    assert!(wrong.is_empty(), "{wrong:?}");
    let again = b.reconcile(&[]);
    assert_eq!(again.code, 0, "{}{}", again.stdout, again.stderr);
    assert!(again.stderr.contains("0 differences"), "{}", again.stderr);
    // Nothing billed twice when billing goes on.
    b.pause_all();
    b.tick_until_settled();
    b.assert_billed_exactly_once();
}
