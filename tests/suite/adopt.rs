//! Adopting a running installation of the Python MVP: recognition, `import-mvp`, billing
//! what it left unbilled, `reconcile` of what it marked billed, and a first run that guides.

use crate::common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::bill::*;
use common::chain::EscrowAgent;
use common::mvp::{self, Agent};
use common::*;

fn wallet(name: &str) -> (String, String) {
    let (_, a, s) = wallets().into_iter().find(|w| w.0 == name).unwrap();
    (a, s)
}

/// An MVP database with the spec's odd cases: alice active, bob suspended, carol paused
/// with a signature that is not hers; zero-window rows; bodies echoing alice's signature.
/// Epochs are `base + n`.
fn odd_mvp(path: &Path, base: i64) {
    let (a, sa) = wallet("alice");
    let (b, sb) = wallet("bob");
    let (c, _) = wallet("carol");
    let conn = mvp::create(
        path,
        &[
            Agent {
                address: &a,
                signature: &sa,
                fee_bps: 500,
                status: "active",
            },
            Agent {
                address: &b,
                signature: &sb,
                fee_bps: 750,
                status: "suspended",
            },
            Agent {
                address: &c,
                signature: &sb,
                fee_bps: 10_000,
                status: "paused",
            },
        ],
    );
    mvp::usage(&conn, 1, base, 48, true);
    mvp::usage(&conn, 1, base + 1, 47, true);
    mvp::usage(&conn, 1, base + 2, 12, false);
    mvp::usage(&conn, 1, base + 3, 3, false);
    mvp::usage(&conn, 1, base + 4, 0, false);
    mvp::usage(&conn, 2, base + 2, 30, false);
    mvp::usage(&conn, 3, base, 5, false);
    for ok in [true, false, true] {
        mvp::attempt(&conn, 1, ok, &sa);
    }
    mvp::attempt(&conn, 2, false, &sb.to_uppercase());
    mvp::billing_attempt(&conn, 1, base, 48, true);
    mvp::billing_attempt(&conn, 1, base + 1, 47, true);
    mvp::billing_attempt(&conn, 1, base + 2, 12, false);
    // The MVP is stopped before the switch: its last connection closes cleanly.
    drop(conn);
}

/// Every text cell of every table of our database, with where it is.
fn all_text(db: &Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = Vec::new();
    for t in tables {
        let cols: Vec<String> = conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{t}')"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        for col in cols {
            let mut stmt = conn
                .prepare(&format!("SELECT CAST(\"{col}\" AS TEXT) FROM \"{t}\""))
                .unwrap();
            let values: Vec<Option<String>> = stmt
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            for v in values.into_iter().flatten() {
                out.push((format!("{t}.{col}"), v));
            }
        }
    }
    out
}

fn usage_rows(sb: &Sandbox) -> HashMap<(String, i64), (i64, bool, Option<String>)> {
    let conn = sb.conn();
    let mut stmt = conn
        .prepare("SELECT a.address, u.epoch, u.windows, u.billed, u.kind FROM usage_windows u JOIN agents a ON a.id = u.agent_id")
        .unwrap();
    stmt.query_map([], |r| {
        Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?, r.get(4)?)))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn import_mvp_brings_everything_over_and_never_touches_the_old_file() {
    let sb = Sandbox::new();
    let old = sb.dir.path().join("mvp-agency.db");
    odd_mvp(&old, 40);
    let before = std::fs::read(&old).unwrap();

    // Any command on the MVP's file names the way out, in one line, and changes nothing.
    for cmd in [&["report"][..], &["tick"], &["init-db"], &["check"]] {
        let r = Sandbox {
            dir: tempfile::tempdir().unwrap(),
            db: old.clone(),
        }
        .run(cmd);
        assert_eq!(r.code, 2, "{cmd:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert!(
            r.stderr.contains("is a database of the Python stream_agency.py; import it with: stream-agency --db NEW.db import-mvp"),
            "{}",
            r.stderr
        );
    }

    let r = sb.run(&["import-mvp", old.to_str().unwrap(), "--format", "json"]);
    assert_eq!(
        r.code, 4,
        "one agent could not be imported: {}{}",
        r.stdout, r.stderr
    );
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let (a, sa) = wallet("alice");
    let (b, sb_sig) = wallet("bob");
    let (c, _) = wallet("carol");
    let row = |addr: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["address"] == addr)
            .unwrap()
            .clone()
    };
    assert_eq!(row(&a)["imported"], true);
    assert_eq!(row(&a)["windows"], 48 + 47 + 12 + 3);
    assert_eq!(row(&a)["billed_epochs"], 2);
    assert_eq!(row(&b)["status"], "paused");
    assert!(row(&b)["note"].as_str().unwrap().contains("suspended"));
    assert_eq!(row(&c)["imported"], false);
    assert!(
        row(&c)["note"].as_str().unwrap().contains("signature"),
        "{}",
        row(&c)
    );

    // The old file is byte for byte what it was, and nothing was created beside it.
    assert_eq!(std::fs::read(&old).unwrap(), before);
    assert!(!old.with_extension("db-wal").exists() && !old.with_extension("db-shm").exists());
    let mode = std::fs::metadata(&sb.db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let report: serde_json::Value =
        serde_json::from_str(&sb.ok(&["report", "--format", "json"])).unwrap();
    let agents: Vec<(String, String, i64, Option<i64>)> = report
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["address"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
                r["fee_bps"].as_i64().unwrap(),
                r["window_end_ms"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        agents,
        vec![
            (a.clone(), "active".into(), 500, Some(1_795_008_100_000)),
            (b.clone(), "paused".into(), 750, Some(1_795_008_100_000)),
        ]
    );
    let usage = usage_rows(&sb);
    assert_eq!(
        usage.len(),
        5,
        "every row with windows, none with 0: {usage:?}"
    );
    assert_eq!(
        usage[&(a.clone(), 40)],
        (48, true, Some("billed-by-mvp".into()))
    );
    assert_eq!(usage[&(a.clone(), 42)], (12, false, None));
    assert_eq!(usage[&(b.clone(), 42)], (30, false, None));

    // No signature outside its agent's own column (the MVP's bodies echoed them).
    for (place, text) in all_text(&sb.db) {
        let lower = text.to_ascii_lowercase();
        for sig in [&sa, &sb_sig] {
            if lower.contains(&sig.to_ascii_lowercase()) {
                assert_eq!(place, "agents.stream_signature", "a signature in {place}");
            }
        }
    }
    assert!(
        sb.query_i64("SELECT COUNT(*) FROM attempts WHERE body_excerpt LIKE '%<redacted>%'") >= 2
    );

    // A second import into the same database is refused.
    let r = sb.run(&["import-mvp", old.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("already holds agents"), "{}", r.stderr);
}

#[test]
fn import_with_a_key_stores_no_plaintext_signature() {
    let sb = Sandbox::new();
    let old = sb.dir.path().join("mvp-agency.db");
    odd_mvp(&old, 40);
    let key = sb.dir.path().join("k.key");
    sb.ok(&["keygen", "--out", key.to_str().unwrap()]);
    let r = sb.run(&[
        "--secret-key-file",
        key.to_str().unwrap(),
        "import-mvp",
        old.to_str().unwrap(),
    ]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let (_, sa) = wallet("alice");
    let (_, sb_sig) = wallet("bob");
    let mut bytes = std::fs::read(&sb.db).unwrap();
    bytes.extend(std::fs::read(sb.db.with_extension("db-wal")).unwrap_or_default());
    let text = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
    for sig in [sa, sb_sig] {
        assert!(
            !text.contains(&sig),
            "a plaintext signature in the database"
        );
    }
    assert_eq!(
        sb.query_i64("SELECT COUNT(*) FROM agents WHERE stream_signature LIKE 'enc:v1:%'"),
        2
    );
}

#[test]
fn after_the_switch_the_mvps_unbilled_epochs_are_billed_in_order_and_reconcile_names_its_phantom_bills(
) {
    let fake = FakeClaws::start(
        3_600_000,
        RenewalPolicy::Early {
            accept_before_ms: 1_800_000,
        },
        60_000,
    );
    let sb = Sandbox::new();
    let e = fake.state().epoch_at(now_ms());
    let old = sb.dir.path().join("mvp-agency.db");
    // alice: e-6 and e-5 marked billed by the MVP (only e-6 is on chain), e-4 and e-3 open.
    odd_mvp(&old, e - 6);
    let (a, _) = wallet("alice");
    let (b, _) = wallet("bob");
    {
        let mut s = fake.state();
        s.chain.agents.insert(a.clone(), EscrowAgent::default());
        // The escrow charges bob the fee he has with the agency (else reconcile says so).
        s.chain.agents.insert(
            b.clone(),
            EscrowAgent {
                fee_bps: 750,
                ..EscrowAgent::default()
            },
        );
        s.chain.put_bill(&a, (e - 6) as u64, 48);
    }
    assert_eq!(sb.run(&["import-mvp", old.to_str().unwrap()]).code, 4);
    let pem = sb.dir.path().join("operator.pem");
    std::fs::copy(data_dir().join("bob.pem"), &pem).unwrap();
    std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bill = Bill {
        fake,
        sb,
        pem,
        ids: HashMap::new(),
    };
    // The daemon runs with billing until the open epochs are billed.
    let mut args = bill.args("run");
    args.extend(["--poll-seconds".to_string(), "1".to_string()]);
    let child = bill
        .sb
        .spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // Billed on chain and confirmed locally: a tick that sees the chain execute the last
    // bill (any view read advances the fake) may be stopped before it confirms it.
    let billed = wait_for(Duration::from_secs(60), || {
        let s = bill.fake.state();
        let on_chain = [(&a, e - 4), (&a, e - 3), (&b, e - 4)]
            .iter()
            .all(|(addr, epoch)| {
                s.chain
                    .billed
                    .contains_key(&((*addr).clone(), *epoch as u64))
            });
        drop(s);
        on_chain
            && bill
                .sb
                .query_i64("SELECT COUNT(*) FROM billing_attempts WHERE status = 'pending'")
                == 0
    });
    let (code, _, stderr) = terminate(child);
    assert!(billed, "the MVP's open epochs were not billed: {stderr}");
    assert_eq!(code, 0, "{stderr}");
    {
        let s = bill.fake.state();
        let alice: Vec<u64> = s
            .chain
            .executed
            .iter()
            .filter(|x| x.agent == a && x.error.is_none())
            .map(|x| x.epoch)
            .collect();
        assert_eq!(
            alice,
            vec![(e - 4) as u64, (e - 3) as u64],
            "once each, in order"
        );
        let bob: Vec<u64> = s
            .chain
            .executed
            .iter()
            .filter(|x| x.agent == b && x.error.is_none())
            .map(|x| x.epoch)
            .collect();
        assert_eq!(bob, vec![(e - 4) as u64]);
        assert_eq!(s.chain.billed[&(a.clone(), (e - 4) as u64)], 12);
    }
    // e-5 was "billed" by the MVP's exit code only: reconcile names it.
    let r = bill.reconcile(&["--format", "tsv"]);
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains(&format!("{a}\t{}\tbilled-by-mvp\tnot billed", e - 5)),
        "{}",
        r.stdout
    );
    assert_eq!(r.stdout.lines().count(), 2, "one difference: {}", r.stdout);
    // The contract can no longer take it (alice's e-3 is billed): --apply records it lost.
    let r = bill.reconcile(&["--apply"]);
    assert!(r.stdout.contains("recorded as lost"), "{}", r.stdout);
}

#[test]
fn the_sample_fixture_imports_exactly() {
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/mvp-agency.db");
    if !fixture.exists() {
        println!("no ../shared/fixtures/mvp-agency.db here: only the databases built from the spec are checked");
        return;
    }
    let sb = Sandbox::new();
    let old = sb.dir.path().join("mvp-agency.db");
    std::fs::copy(&fixture, &old).unwrap();
    let before = std::fs::read(&old).unwrap();
    let r = sb.run(&["import-mvp", old.to_str().unwrap()]);
    println!("{}{}", r.stdout, r.stderr);
    assert!(r.code == 0 || r.code == 4, "{}", r.stderr);
    assert_eq!(std::fs::read(&old).unwrap(), before);
    let src =
        rusqlite::Connection::open_with_flags(&old, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let expected: HashMap<(String, i64), (i64, bool)> = src
        .prepare("SELECT a.address, u.epoch, u.windows, u.billed FROM usage_windows u JOIN agents a ON a.id = u.agent_id WHERE u.windows > 0")
        .unwrap()
        .query_map([], |r| Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get::<_, i64>(3)? != 0))))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let got: HashMap<(String, i64), (i64, bool)> = usage_rows(&sb)
        .into_iter()
        .map(|(k, (w, b, _))| (k, (w, b)))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn a_first_run_guides() {
    let sb = Sandbox::new();
    let fake = FakeClaws::steady();
    let mut args = vec!["tick".to_string()];
    args.extend(net_args(&fake));
    let r = sb.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("no agent is enrolled yet"),
        "{}",
        r.stderr
    );
    let check = sb.ok(&["check"]);
    assert!(check.contains("no active agent"), "{check}");
    // An unreachable gateway is named with the option that sets it.
    let r = sb.run(&[
        "tick",
        "--epoch-api-url",
        "http://127.0.0.1:9",
        "--stream-url",
        "http://127.0.0.1:9/stream",
    ]);
    assert!(
        r.stderr.contains("--epoch-api-url http://127.0.0.1:9"),
        "{}",
        r.stderr
    );
    // Enrolled but never renewed: check does not call that streaming.
    let (a, s) = wallet("alice");
    sb.ok(&["enroll", "--address", &a, "--signature", &s]);
    sb.conn()
        .execute("UPDATE agents SET enrolled_ms = enrolled_ms - 3600000", [])
        .unwrap();
    let r = sb.run(&["check"]);
    assert_eq!(r.code, 4);
    assert!(r.stdout.contains("never renewed"), "{}", r.stdout);
}
