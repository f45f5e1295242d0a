//! A full disk or a read-only database never stops renewals: on a real small file system
//! (a 16 MiB tmpfs the test mounts; skipped, saying so, where mounting is not allowed),
//! filled while `run` renews 100 agents, then freed; and remounted read-only and back.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// A tmpfs of `size_mib` mounted for the test's life.
struct Mount {
    dir: tempfile::TempDir,
}

impl Mount {
    fn tmpfs(size_mib: u32) -> Option<Mount> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0700")])
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs here (needs root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Mount { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn remount(&self, how: &str) {
        let mut mount = Command::new("mount");
        mount
            .args(["-o", &format!("remount,{how}")])
            .arg(self.path());
        Ran::ok(mount);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Writes a file until the file system is full; returns its path.
fn fill(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![1u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    // The last bytes that fit.
    while f.write_all(&[1u8; 512]).is_ok() {}
    path
}

fn sandbox_on(mount: &Mount) -> Sandbox {
    let dir = tempfile::tempdir().unwrap();
    Sandbox {
        dir,
        db: mount.path().join("agency.db"),
    }
}

/// `cmd` (tick or run) against the fake, renewing 2 s (+-1 s) before a window ends.
fn args_for(cmd: &str, fake: &FakeClaws) -> Vec<String> {
    let mut args: Vec<String> = [cmd, "--lead-seconds", "2", "--jitter-seconds", "1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    if cmd == "run" {
        args.extend(["--poll-seconds".into(), "1".into()]);
    }
    args.extend(net_args(fake));
    args
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Panics with `run`'s output when `ok` is false; hands `run` back otherwise.
fn held(ok: bool, run: std::process::Child, what: &str) -> std::process::Child {
    if !ok {
        let (code, out, err) = terminate(run);
        panic!("{what} (run exited {code})\n{out}\n{err}");
    }
    run
}

fn windows_granted(fake: &FakeClaws) -> i64 {
    fake.state().windows.values().map(|w| w.len() as i64).sum()
}

fn windows_recorded(sb: &Sandbox) -> i64 {
    sb.query_i64("SELECT COUNT(*) FROM stream_windows")
}

fn integrity(sb: &Sandbox) -> String {
    sb.conn()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

/// Every window the fake granted is in the database, once, for its agent.
fn assert_counted_as_granted(sb: &Sandbox, fake: &FakeClaws) {
    let c = sb.conn();
    let mut stmt = c
        .prepare("SELECT a.address, COUNT(*) FROM stream_windows w JOIN agents a ON a.id = w.agent_id GROUP BY a.address")
        .unwrap();
    let recorded: std::collections::HashMap<String, i64> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let s = fake.state();
    for (addr, ws) in &s.windows {
        assert_eq!(recorded.get(addr), Some(&(ws.len() as i64)), "{addr}");
    }
    assert_eq!(recorded.len(), s.windows.len());
}

/// A 16 MiB tmpfs holding a database made by `init-db` with `agents` enrolled; 4 s windows
/// renewable in their last 2.5 s, 10 s epochs.
fn setup(agents: u64) -> Option<(Mount, FakeClaws, Sandbox)> {
    let mount = Mount::tmpfs(16)?;
    let fake = FakeClaws::start(
        4_000,
        RenewalPolicy::Early {
            accept_before_ms: 2_500,
        },
        10_000,
    );
    let sb = sandbox_on(&mount);
    let init = sb.ok(&["init-db"]);
    assert!(init.contains("disk reserve"), "{init}");
    sb.enroll_generated(agents);
    Some((mount, fake, sb))
}

#[test]
fn a_disk_that_fills_up_during_run_loses_no_renewal_and_no_window() {
    let Some((mount, fake, sb)) = setup(100) else {
        return;
    };
    let reserve = mount.path().join("agency.db.reserve");
    assert_eq!(std::fs::metadata(&reserve).unwrap().len(), 4 << 20);
    let run = sb.spawn(&strs(&args_for("run", &fake)));
    let run = held(
        wait_for(Duration::from_secs(60), || {
            fake.state().windows.len() == 100
        }),
        run,
        "all 100 agents renewed",
    );
    // Full: the first refused write gives the reserve back, and the records fit.
    let filler = fill(mount.path(), "filler");
    let run = held(
        wait_for(Duration::from_secs(60), || !reserve.exists()),
        run,
        "reserve released",
    );
    // Full again, with no reserve left: records wait in memory, renewals go on.
    let filler2 = fill(mount.path(), "filler2");
    let granted_at_full = windows_granted(&fake);
    let run = held(
        wait_for(Duration::from_secs(60), || {
            windows_granted(&fake) >= granted_at_full + 200
        }),
        run,
        "renewals go on with the disk full",
    );
    let waiting = windows_granted(&fake) - windows_recorded(&sb);
    let run = held(waiting > 0, run, "renewals went on unrecorded");
    // Space back: everything waiting is written.
    std::fs::remove_file(filler).unwrap();
    std::fs::remove_file(filler2).unwrap();
    let run = held(
        wait_for(Duration::from_secs(60), || {
            windows_recorded(&sb) == windows_granted(&fake)
        }),
        run,
        "everything written once space is back",
    );
    let (code, _, err) = terminate(run);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("released the 4 MiB disk reserve"), "{err}");
    assert!(err.contains("wait in memory"), "{err}");
    for line in err
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("INFO"))
    {
        println!("run said: {line}");
    }
    assert_eq!(fake.state().max_gap_ms(), 0, "a window lapsed");
    assert_eq!(integrity(&sb), "ok");
    assert_counted_as_granted(&sb, &fake);
    println!(
        "full disk during run: {} windows granted, {waiting} waited in memory at once, all recorded",
        windows_granted(&fake)
    );
}

#[test]
fn a_read_only_database_is_renewed_through_and_written_once_writable() {
    let Some((mount, fake, sb)) = setup(20) else {
        return;
    };
    let tick_args = args_for("tick", &fake);
    let tick_args = strs(&tick_args);
    // One tick on a writable disk, then the file system goes read-only.
    sb.ok(&tick_args);
    mount.remount("ro");
    // A tick now renews, names what it could not record, and exits 4.
    // (Ticks with nothing due yet are idle: they write nothing and succeed.)
    let (mut before, mut r) = (0, sb.run(&["--version"]));
    for _ in 0..100 {
        before = windows_granted(&fake);
        r = sb.run(&tick_args);
        if r.code != 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    let named = windows_granted(&fake) - before;
    assert!(named > 0);
    assert!(
        r.stderr
            .contains(&format!("{named} windows could not be recorded")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("read-only"), "{}", r.stderr);
    println!("read-only tick said: {}", r.stderr.trim());
    // `check` says so too.
    let c = sb.run(&["check"]);
    assert_eq!(c.code, 4, "{}", c.stdout);
    assert!(c.stdout.contains("cannot be written"), "{}", c.stdout);
    // run on the read-only disk renews on, and writes everything once it is writable.
    let run = sb.spawn(&strs(&args_for("run", &fake)));
    let granted = windows_granted(&fake);
    let run = held(
        wait_for(Duration::from_secs(60), || {
            windows_granted(&fake) >= granted + 40
        }),
        run,
        "renewals go on read-only",
    );
    mount.remount("rw");
    let lost = named;
    let run = held(
        wait_for(Duration::from_secs(60), || {
            windows_recorded(&sb) + lost == windows_granted(&fake)
        }),
        run,
        "everything written once writable",
    );
    let (code, _, err) = terminate(run);
    assert_eq!(code, 0, "{err}");
    assert_eq!(fake.state().max_gap_ms(), 0, "a window lapsed");
    assert_eq!(integrity(&sb), "ok");
}

#[test]
fn check_warns_when_free_space_holds_under_a_week_of_growth() {
    let Some((_mount, fake, sb)) = setup(100) else {
        return;
    };
    let tick = args_for("tick", &fake);
    sb.ok(&strs(&tick));
    assert_eq!(windows_recorded(&sb), 100);
    // 100 renewals in the last seconds: measured as over a hundred thousand a day, which a
    // 16 MiB disk holds for well under a week.
    let c = sb.run(&["check"]);
    assert_eq!(c.code, 4, "{}{}", c.stdout, c.stderr);
    let line = c.stdout.lines().find(|l| l.contains("days of growth"));
    let line = line.unwrap_or_else(|| panic!("{}", c.stdout));
    assert!(line.contains("bytes per renewal"), "{line}");
    println!("check said: {line}");
    // The same database on a disk with room: no warning.
    let roomy = Sandbox::new();
    std::fs::copy(&sb.db, &roomy.db).unwrap();
    let c = roomy.run(&["check"]);
    assert!(!c.stdout.contains("days of growth"), "{}", c.stdout);
}
