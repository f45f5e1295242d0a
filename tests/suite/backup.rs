//! `backup` and `restore`: consistent copies while `run` writes, checked before they
//! replace anything, bad input refused in one line, and the disaster-recovery drill of the
//! README with billing on.

use crate::common;

use std::time::Duration;

use common::bill::{setup, ALICE};
use common::*;

fn integrity(path: &std::path::Path) -> String {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn backups_taken_while_run_renews_1000_agents_are_whole_and_restore() {
    let fake = FakeClaws::steady();
    let sb = Sandbox::new();
    sb.enroll_generated(1_000);
    let dir = sb.dir.path().join("backups");
    std::fs::create_dir(&dir).unwrap();
    let run = sb.spawn_run(&fake, &["--max-tick-seconds", "600"]);
    let mut taken = Vec::new();
    for _ in 0..4 {
        let out = sb.ok(&["backup", "--to", dir.to_str().unwrap(), "--keep", "3"]);
        assert!(out.contains("integrity ok"), "{out}");
        taken.push(out);
        std::thread::sleep(Duration::from_millis(1_100)); // dated to the second
    }
    assert!(wait_for(Duration::from_secs(120), || fake
        .state()
        .windows
        .len()
        == 1_000));
    let (code, _, stderr) = terminate(run);
    assert_eq!(code, 0, "{stderr}");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "--keep 3: {files:?}");
    for f in &files {
        assert_eq!(integrity(f), "ok");
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(f).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        // Each restores to a working agency.
        let other = Sandbox::new();
        other.ok(&["restore", f.to_str().unwrap()]);
        let report = other.ok(&["report", "--format", "json"]);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&report)
                .unwrap()
                .as_array()
                .unwrap()
                .len(),
            1_000
        );
    }
    // The last copy, taken after run stopped, has every window counted.
    let last = dir.join("final.db");
    sb.ok(&["backup", "--to", last.to_str().unwrap()]);
    let copy = rusqlite::Connection::open(&last).unwrap();
    let windows: i64 = copy
        .query_row("SELECT COUNT(*) FROM stream_windows", [], |r| r.get(0))
        .unwrap();
    assert_eq!(windows, 1_000);
    println!(
        "4 backups during run renewing 1,000 agents: all whole; {}",
        taken.last().unwrap().lines().next().unwrap()
    );
}

#[test]
fn bad_backup_and_restore_input_is_refused_in_one_line_and_changes_nothing() {
    let sb = Sandbox::new();
    sb.enroll_all();
    let before = sb.file_bytes();
    let one_line = |r: &Ran, want: i32, says: &str| {
        assert_eq!(r.code, want, "{}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert!(r.stderr.contains(says), "{}", r.stderr);
    };
    one_line(
        &sb.run(&["backup", "--to", sb.db.to_str().unwrap()]),
        2,
        "live database",
    );
    let missing = sb.dir.path().join("nope/x.db");
    one_line(
        &sb.run(&["backup", "--to", missing.to_str().unwrap()]),
        2,
        "does not exist",
    );
    let truncated = sb.dir.path().join("truncated.db");
    std::fs::write(&truncated, &before[..before.len().min(3000)]).unwrap();
    one_line(
        &sb.run(&["restore", truncated.to_str().unwrap()]),
        2,
        "nothing was changed",
    );
    let other = sb.dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE photos (id INTEGER PRIMARY KEY);")
        .unwrap();
    one_line(
        &sb.run(&["restore", other.to_str().unwrap()]),
        2,
        "another application",
    );
    let newer = sb.dir.path().join("newer.db");
    sb.ok(&["backup", "--to", newer.to_str().unwrap()]);
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    one_line(&sb.run(&["restore", newer.to_str().unwrap()]), 2, "newer");
    // While run holds the lock: refused, with how to stop the timer.
    let fake = FakeClaws::steady();
    let run = sb.spawn_run(&fake, &[]);
    // Wait until run itself holds the lock (its holder line is written after the flock):
    // a restore tried earlier could take the lock first and make run exit.
    let lock_file = sb.dir.path().join("agency.db.lock");
    assert!(wait_for(Duration::from_secs(60), || {
        std::fs::read_to_string(&lock_file).is_ok_and(|t| t.starts_with("run (pid"))
    }));
    let r = sb.run(&["restore", newer.to_str().unwrap()]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("systemctl stop"), "{}", r.stderr);
    terminate(run);
    assert_eq!(integrity(&sb.db), "ok");
}

/// The README's "Disaster recovery": restore a backup older than the last bills, let
/// `reconcile --apply` make the ledger agree with the chain, bill on: nothing twice,
/// nothing the contract refuses.
#[test]
fn the_disaster_recovery_drill_bills_nothing_twice() {
    let b = setup(3_600_000, 3_000);
    b.pause_all();
    let e = b.current_epoch();
    b.usage(ALICE, e - 3, 2);
    b.tick_until_settled();
    // Counted, not billed yet, when the backup is taken.
    b.usage(ALICE, e - 2, 3);
    b.usage(common::chain::BOB, e - 2, 4);
    let backup = b.sb.dir.path().join("hours-old.db");
    b.sb.ok(&["backup", "--to", backup.to_str().unwrap()]);
    b.tick_until_settled();
    let billed_before = b.fake.state().chain.bills.len();
    assert_eq!(billed_before, 3);
    // Disaster: the database is replaced by the backup.
    let out = b.sb.ok(&["restore", backup.to_str().unwrap()]);
    assert!(out.contains("replaced database is kept"), "{out}");
    let r = b.reconcile(&[]);
    assert_eq!(
        r.code, 4,
        "the chain billed two epochs since: {}{}",
        r.stdout, r.stderr
    );
    let r = b.reconcile(&["--apply"]);
    assert!(r.stdout.contains("marked billed"), "{}", r.stdout);
    b.tick_until_settled();
    let r = b.reconcile(&[]);
    assert_eq!(r.code, 0, "0 differences: {}{}", r.stdout, r.stderr);
    let s = b.fake.state();
    assert_eq!(s.chain.bills.len(), billed_before, "nothing billed again");
    assert!(
        s.chain.executed.iter().all(|x| x.error.is_none()),
        "a refused transaction: {:?}",
        s.chain.executed
    );
    drop(s);
    b.assert_billed_exactly_once();
}
