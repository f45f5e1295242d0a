//! Commands against good and bad input: bad input gets a one-line error naming the problem,
//! a non-zero exit status, and leaves the database byte-for-byte unchanged.

use crate::common;

use std::os::unix::fs::PermissionsExt;

use common::*;

fn alice() -> (String, String) {
    let (_, a, s) = wallets().into_iter().find(|w| w.0 == "alice").unwrap();
    (a, s)
}

fn bob() -> (String, String) {
    let (_, a, s) = wallets().into_iter().find(|w| w.0 == "bob").unwrap();
    (a, s)
}

/// A database holding alice, and its bytes.
fn seeded() -> (Sandbox, Vec<u8>) {
    let sb = Sandbox::new();
    let (a, s) = alice();
    sb.ok(&["enroll", "--address", &a, "--signature", &s]);
    let bytes = sb.file_bytes();
    (sb, bytes)
}

/// Runs a command that must fail with `code`, one line on stderr containing `expect`,
/// and no change to the database.
fn refused(sb: &Sandbox, before: &[u8], args: &[&str], code: i32, expect: &str) {
    let r = sb.run(args);
    let shown: Vec<String> = args.iter().map(|a| a.chars().take(80).collect()).collect();
    let args = &shown;
    assert_eq!(
        r.code, code,
        "{args:?}: stdout {} stderr {}",
        r.stdout, r.stderr
    );
    assert!(
        r.stderr.contains(expect),
        "{args:?}: expected {expect:?} in {:?}",
        r.stderr
    );
    // One line of error (after the warning a signature on the command line always gets).
    let error_lines = r
        .stderr
        .trim_end()
        .lines()
        .filter(|l| !l.starts_with("warning: --signature on the command line"))
        .count();
    assert_eq!(error_lines, 1, "{args:?}: one line, got {:?}", r.stderr);
    assert_eq!(sb.file_bytes(), before, "{args:?} changed the database");
    let wal = sb.db.with_extension("db-wal");
    assert!(
        std::fs::metadata(&wal).map_or(true, |m| m.len() == 0),
        "{args:?} left a WAL behind"
    );
}

#[test]
fn enroll_refuses_bad_addresses_signatures_and_fees() {
    let (sb, before) = seeded();
    let (a, s) = alice();
    let (b, bob_sig) = bob();
    let test_sig = vectors()["wallets"]["alice"]["signed_messages"]["test"]["signature_hex"]
        .as_str()
        .unwrap()
        .to_string();
    let mixed = a.replacen('q', "Q", 1);
    let erd = vectors()["wallets"]["alice"]["address_erd"]
        .as_str()
        .unwrap()
        .to_string();
    let bad_checksum = format!("{}q", &a[..a.len() - 1]);
    let long = "x".repeat(100_000);
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![mixed, s.clone()], "mixed-case"),
        (vec![erd, s.clone()], "HRP"),
        (vec![bad_checksum, s.clone()], "checksum"),
        (vec![a[..30].to_string(), s.clone()], "length"),
        (
            vec!["'; DROP TABLE agents; --".into(), s.clone()],
            "--address",
        ),
        (vec![format!("{a}\u{7}"), s.clone()], "control"),
        (vec![long.clone(), s.clone()], "length"),
        (vec![a.clone(), s[..100].to_string()], "100 hex characters"),
        (vec![a.clone(), format!("{s}00")], "130 hex characters"),
        (vec![a.clone(), "zz".repeat(64)], "not hex"),
        (vec![a.clone(), bob_sig.clone()], "is not"),
        (vec![a.clone(), test_sig], "is not"),
        (vec![b.clone(), s.clone()], "is not"),
        (vec![a.clone(), long], "hex"),
    ];
    for (args, expect) in cases {
        refused(
            &sb,
            &before,
            &["enroll", "--address", &args[0], "--signature", &args[1]],
            2,
            expect,
        );
    }
    for fee in ["0", "10001"] {
        refused(
            &sb,
            &before,
            &[
                "enroll",
                "--address",
                &a,
                "--signature",
                &s,
                "--fee-bps",
                fee,
            ],
            2,
            "1..=10000",
        );
    }
    for fee in ["-1", "99999999999999999999", "ten"] {
        let r = sb.run(&[
            "enroll",
            "--address",
            &a,
            "--signature",
            &s,
            "--fee-bps",
            fee,
        ]);
        assert_eq!(r.code, 2, "fee {fee}: {}", r.stderr);
        assert!(r.stderr.contains("fee-bps"), "{}", r.stderr);
        assert_eq!(sb.file_bytes(), before);
    }
    // Nothing stored for a refused enrollment into a fresh database either.
    let fresh = Sandbox::new();
    let r = fresh.run(&["enroll", "--address", &a, "--signature", &bob_sig]);
    assert_eq!(r.code, 2);
    assert!(
        !fresh.db.exists(),
        "a refused enrollment must not create the database"
    );
}

#[test]
fn enroll_updates_a_known_agent_and_never_prints_signatures() {
    let (sb, _) = seeded();
    let (a, s) = alice();
    let out = sb.ok(&[
        "enroll",
        "--address",
        &a,
        "--signature",
        &format!("0x{s}"),
        "--fee-bps",
        "750",
    ]);
    assert!(out.contains("updated") && out.contains("750"), "{out}");
    sb.ok(&["pause", "--address", &a]);
    assert_eq!(
        sb.query_i64("SELECT COUNT(*) FROM agents WHERE status = 'paused'"),
        1
    );
    sb.ok(&["enroll", "--address", &a, "--signature", &s]);
    assert_eq!(
        sb.query_i64("SELECT COUNT(*) FROM agents WHERE status = 'active' AND fee_bps = 500"),
        1
    );
    let report = sb.ok(&["report", "--wide"]);
    assert!(report.contains(&a) && report.contains("500"), "{report}");
    assert_eq!(
        report.lines().next().unwrap().split_whitespace().count(),
        21,
        "every field of report, unbillable and not_renewed_because too"
    );
    // The default table fits 100 columns: the address shortened, times relative.
    sb.conn()
        .execute("UPDATE agents SET last_error = ?1", [&"x".repeat(300)])
        .unwrap();
    let narrow = sb.ok(&["report"]);
    assert!(narrow.lines().all(|l| l.chars().count() <= 100), "{narrow}");
    let row = narrow.lines().nth(1).unwrap();
    assert!(
        row.starts_with(&format!("{}…{}", &a[..11], &a[a.len() - 6..])),
        "{row}"
    );
    assert!(row.contains("active") && row.ends_with('…'), "{row}");
    assert!(
        narrow.lines().next().unwrap().contains("LAST_ERROR"),
        "{narrow}"
    );
    let attempts = sb.ok(&["attempts", "--address", &a]);
    let billing = sb.ok(&["billing-attempts"]);
    for text in [&out, &report, &attempts, &billing] {
        assert!(
            !text.to_lowercase().contains(&s[..32]),
            "a signature leaked: {text}"
        );
    }
}

#[test]
fn enroll_from_pem_signs_natively_and_checks_the_file() {
    let sb = Sandbox::new();
    let (a, s) = alice();
    let out = sb.ok(&[
        "enroll-from-pem",
        "--pem",
        data_dir().join("alice.erd.pem").to_str().unwrap(),
    ]);
    assert!(out.contains(&a), "{out}");
    let stored: String = sb
        .conn()
        .query_row("SELECT stream_signature FROM agents", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, s, "the native signature equals the reference SDK's");
    let before = sb.file_bytes();

    let pem = std::fs::read_to_string(data_dir().join("alice.pem")).unwrap();
    let mismatched = sb.dir.path().join("mismatched.pem");
    std::fs::write(&mismatched, pem.replace(&a, &bob().0)).unwrap();
    let garbage = sb.dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN PRIVATE KEY for x-----\n!!!\n-----END PRIVATE KEY for x-----\n",
    )
    .unwrap();
    let unreadable = sb.dir.path().join("unreadable.pem");
    std::fs::write(&unreadable, &pem).unwrap();
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000)).unwrap();
    let dir = sb.dir.path().to_str().unwrap().to_string();
    let cases = [
        (mismatched.to_str().unwrap().to_string(), "label"),
        (
            garbage.to_str().unwrap().to_string(),
            "label address is invalid",
        ),
        (dir, "directory"),
        ("/nonexistent/alice.pem".to_string(), "cannot read"),
    ];
    for (path, expect) in cases {
        refused(
            &sb,
            &before,
            &["enroll-from-pem", "--pem", &path],
            2,
            expect,
        );
    }
    // Root reads anything; only check unreadable files where permissions bind.
    if unsafe { libc::geteuid() } != 0 {
        refused(
            &sb,
            &before,
            &["enroll-from-pem", "--pem", unreadable.to_str().unwrap()],
            2,
            "cannot read",
        );
    }
}

#[test]
fn pause_resume_remove_need_a_known_agent_and_remove_guards_unbilled_windows() {
    let (sb, before) = seeded();
    let (a, _) = alice();
    let (b, _) = bob();
    for cmd in ["pause", "resume", "remove"] {
        refused(&sb, &before, &[cmd, "--address", &b], 2, "unknown agent");
        refused(&sb, &before, &[cmd, "--address", "nope"], 2, "--address");
    }
    refused(
        &sb,
        &before,
        &["attempts", "--address", &b],
        2,
        "unknown agent",
    );
    sb.conn()
        .execute(
            "INSERT INTO usage_windows (agent_id, epoch, windows) VALUES (1, 7, 3)",
            [],
        )
        .unwrap();
    let before = sb.file_bytes();
    refused(
        &sb,
        &before,
        &["remove", "--address", &a],
        2,
        "3 counted windows not yet billed",
    );
    let out = sb.ok(&["remove", "--address", &a, "--force"]);
    assert!(
        out.contains("3 unbilled windows will not be billed"),
        "{out}"
    );
    // The history stays, settled by the human's --force; the secret is wiped.
    assert_eq!(
        sb.query_i64("SELECT COUNT(*) FROM usage_windows WHERE kind = 'skipped-by-human'"),
        1
    );
    assert_eq!(
        sb.query_i64(
            "SELECT COUNT(*) FROM agents WHERE stream_signature = '' AND removed_ms IS NOT NULL"
        ),
        1
    );
}

#[test]
fn runtime_options_are_checked_before_anything_is_done() {
    let (sb, before) = seeded();
    let pem = sb.dir.path().join("operator.pem");
    std::fs::copy(data_dir().join("bob.pem"), &pem).unwrap();
    std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o644)).unwrap();
    let pem = pem.to_str().unwrap();
    let escrow = "claw1qqqqqqqqqqqqqpgqnlglzrzv598wqgx6zlhjr6rky2k694jtkgcqdfq0ge";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--lead-seconds", "10", "--jitter-seconds", "10"],
            "below --lead-seconds",
        ),
        (vec!["--lead-seconds", "0"], "--lead-seconds"),
        (vec!["--stream-url", "ftp://x"], "--stream-url"),
        (vec!["--billing-enabled"], "--escrow-contract"),
        (
            vec!["--billing-enabled", "--escrow-contract", "claw1xyz"],
            "--escrow-contract",
        ),
        (
            vec!["--billing-enabled", "--escrow-contract", escrow],
            "--operator-pem",
        ),
        (
            vec![
                "--billing-enabled",
                "--escrow-contract",
                escrow,
                "--operator-pem",
                pem,
            ],
            "chmod 600",
        ),
    ];
    for (extra, expect) in cases {
        let mut args = vec!["tick"];
        args.extend(extra);
        refused(&sb, &before, &args, 2, expect);
    }
    let r = sb
        .command(&["tick"])
        .env("STREAM_AGENCY_LEAD_SECONDS", "soon")
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("STREAM_AGENCY_LEAD_SECONDS"));
}

#[test]
fn databases_that_are_not_ours_are_refused() {
    let sb = Sandbox::new();
    std::fs::write(
        &sb.db,
        b"this is not a database, just text that is long enough to look like a header",
    )
    .unwrap();
    let before = sb.file_bytes();
    refused(&sb, &before, &["report"], 2, "is not an SQLite database");
    std::fs::set_permissions(&sb.db, std::fs::Permissions::from_mode(0o600)).unwrap();
    refused(&sb, &before, &["tick"], 2, "is not an SQLite database");

    // Another application's SQLite database, readable by others: named, never changed.
    let sb = Sandbox::new();
    {
        let c = rusqlite::Connection::open(&sb.db).unwrap();
        c.execute_batch("CREATE TABLE recipes (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO recipes VALUES (1, 'soup');")
            .unwrap();
    }
    std::fs::set_permissions(&sb.db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = sb.file_bytes();
    for cmd in [&["report"][..], &["init-db"], &["check"], &["tick"]] {
        refused(
            &sb,
            &before,
            cmd,
            2,
            "another application (tables: recipes)",
        );
    }

    let sb = Sandbox::new();
    let first = sb.run(&["init-db"]);
    // Other crates' INFO lines are not shown by default.
    assert!(
        !first.stderr.contains("rusqlite_migration"),
        "{}",
        first.stderr
    );
    sb.ok(&["init-db"]);
    sb.conn().pragma_update(None, "user_version", 42).unwrap();
    let before = sb.file_bytes();
    refused(&sb, &before, &["report"], 1, "newer schema");
    let mode = std::fs::metadata(&sb.db).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "database must be created 0600");
}

#[test]
fn every_command_refuses_hostile_input_cleanly() {
    let (sb, before) = seeded();
    let (a, s) = alice();
    let long = "q".repeat(100_000);
    let bad_addresses = [
        String::new(),
        "claw1".to_string(),
        a.replacen('q', "Q", 1),
        vectors()["wallets"]["alice"]["address_erd"]
            .as_str()
            .unwrap()
            .to_string(),
        "claw1' OR 1=1; --".to_string(),
        format!("{a}\n"),
        format!("{a}\u{1b}[31m"),
        long.clone(),
    ];
    let mut cases: Vec<(Vec<String>, i32, &str)> = Vec::new();
    for cmd in ["pause", "resume", "remove", "attempts"] {
        for bad in &bad_addresses {
            cases.push((
                vec![cmd.into(), "--address".into(), bad.clone()],
                2,
                "--address",
            ));
        }
    }
    let dir = sb.dir.path().to_str().unwrap().to_string();
    let existing = sb.db.to_str().unwrap().to_string();
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    cases.extend([
        (
            strs(&["attempts", "--address", &a, "--limit", "-1"]),
            2,
            "--limit",
        ),
        (
            strs(&["billing-attempts", "--limit", "99999999999999999999"]),
            2,
            "--limit",
        ),
        (strs(&["prune", "--older-than", "-5"]), 2, "--older-than"),
        (strs(&["prune", "--older-than", "0"]), 2, "--older-than"),
        (
            strs(&["check", "--warn-seconds", "soon"]),
            2,
            "--warn-seconds",
        ),
        (
            strs(&["tick", "--lead-seconds", "99999999999999999999999"]),
            2,
            "--lead-seconds",
        ),
        (
            strs(&["tick", "--timeout-seconds", "0"]),
            2,
            "--timeout-seconds",
        ),
        (
            strs(&["tick", "--epoch-api-url", "http://example.com"]),
            2,
            "--allow-insecure-http",
        ),
        (
            strs(&["tick", "--stream-url", &format!("https://{long}")]),
            2,
            "--stream-url",
        ),
        (strs(&["run", "--poll-seconds", "0"]), 2, "--poll-seconds"),
        (strs(&["enroll"]), 2, "--from-file"),
        (strs(&["enroll", "--address", &a]), 2, "--from-file"),
        (strs(&["enroll", "--from-file", &dir]), 2, "cannot read"),
        (
            strs(&["enroll", "--from-file", "/nonexistent/clients.tsv"]),
            2,
            "cannot read",
        ),
        (
            strs(&[
                "enroll",
                "--from-file",
                &existing,
                "--address",
                &a,
                "--signature",
                &s,
            ]),
            2,
            "not both",
        ),
        (
            strs(&["keygen", "--out", &existing]),
            2,
            "cannot create key file",
        ),
        (strs(&["encrypt-secrets"]), 2, "--secret-key-file"),
        (
            strs(&[
                "--secret-key-file",
                "/nonexistent/key",
                "enroll",
                "--address",
                &a,
                "--signature",
                &s,
            ]),
            2,
            "secret key file",
        ),
        (
            strs(&[
                "--secret-key-file",
                &dir,
                "enroll",
                "--address",
                &a,
                "--signature",
                &s,
            ]),
            2,
            "secret key file",
        ),
        (strs(&["report", "--format", "xml"]), 2, "--format"),
        (strs(&["frobnicate"]), 2, "frobnicate"),
        (
            strs(&[
                "enroll",
                "--address",
                &a,
                "--signature",
                &s,
                "--fee-bps",
                "1e3",
            ]),
            2,
            "--fee-bps",
        ),
    ]);
    for (args, code, expect) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&sb, &before, &args, code, expect);
    }
}

/// The README and `--help` agree: every command of the README's table is a command of the
/// binary, and every exit status in the README's table is listed by `--help`.
#[test]
fn readme_commands_and_exit_statuses_are_in_help() {
    let sb = Sandbox::new();
    let help = sb.ok(&["--help"]);
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = |title: &str| -> Vec<String> {
        let start = readme
            .find(title)
            .unwrap_or_else(|| panic!("README lacks {title}"));
        readme[start..]
            .lines()
            .skip(1)
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(str::to_string)
            .collect()
    };
    let mut commands = Vec::new();
    for row in section("## Commands") {
        let cell = row.split('|').nth(1).unwrap_or("");
        // `pause --address A`, `resume --address A`: every backquoted name in the cell.
        for quoted in cell.split('`').skip(1).step_by(2) {
            let name = quoted.split_whitespace().next().unwrap_or("");
            commands.push(name.to_string());
        }
    }
    assert!(commands.len() >= 15, "{commands:?}");
    for name in &commands {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{name} "))),
            "README command {name} is not in --help:\n{help}"
        );
        sb.ok(&[name.as_str(), "--help"]);
    }
    let statuses: Vec<String> = section("## Exit statuses")
        .iter()
        .map(|row| row.split('|').nth(1).unwrap_or("").trim().to_string())
        .collect();
    assert_eq!(statuses, ["0", "1", "2", "3", "4"]);
    for status in statuses.iter().filter(|s| *s != "0") {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{status} "))),
            "exit status {status} is not in --help:\n{help}"
        );
    }
}

/// A signature from standard input or a 0600 file enrolls the same agent as one on the
/// command line, and only the command line one warns.
#[test]
fn signatures_come_from_stdin_or_a_private_file_and_argv_warns() {
    let (a, s) = alice();
    let stored = |sb: &Sandbox| -> (String, i64) {
        sb.conn()
            .query_row(
                "SELECT stream_signature, fee_bps FROM agents WHERE address = ?1",
                [&a],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
    };
    let argv = Sandbox::new();
    let r = argv.run(&[
        "enroll",
        "--address",
        &a,
        "--signature",
        &s,
        "--fee-bps",
        "700",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        r.stderr
            .matches("warning: --signature on the command line")
            .count(),
        1,
        "{}",
        r.stderr
    );

    let stdin = Sandbox::new();
    let mut child = stdin
        .command(&[
            "enroll",
            "--address",
            &a,
            "--signature",
            "-",
            "--fee-bps",
            "700",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("  {s}  \n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "no warning for stdin"
    );
    assert_eq!(
        stored(&stdin),
        stored(&argv),
        "the same agent as from the command line"
    );

    let file = Sandbox::new();
    let path = file.dir.path().join("alice.sig");
    std::fs::write(&path, format!("{s}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = file.file_bytes();
    refused(
        &file,
        &before,
        &[
            "enroll",
            "--address",
            &a,
            "--signature-file",
            path.to_str().unwrap(),
        ],
        2,
        "chmod 600",
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = file.run(&[
        "enroll",
        "--address",
        &a,
        "--signature-file",
        path.to_str().unwrap(),
        "--fee-bps",
        "700",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stderr.contains("warning"),
        "no warning for a file: {}",
        r.stderr
    );
    assert_eq!(stored(&file), stored(&argv));
}

/// The man page is the binary's own --help texts: `contrib/deb/manpage.sh` run on this
/// binary gives exactly the committed `doc/stream-agency.1` (regenerate it after changing
/// a command or an option), and it names every command of `--help`.
#[test]
fn the_man_page_is_the_help_of_every_command() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut script = std::process::Command::new("bash");
    script
        .arg(format!("{root}/contrib/deb/manpage.sh"))
        .arg(env!("CARGO_BIN_EXE_stream-agency"));
    let generated = Ran::ok(script).stdout;
    let committed = std::fs::read_to_string(format!("{root}/doc/stream-agency.1")).unwrap();
    assert!(
        generated == committed,
        "doc/stream-agency.1 is stale: run contrib/deb/manpage.sh target/debug/stream-agency > doc/stream-agency.1"
    );
    let version = Sandbox::new().ok(&["--version"]);
    assert_eq!(
        version.trim(),
        concat!("stream-agency ", env!("CARGO_PKG_VERSION"))
    );
    let help = Sandbox::new().ok(&["--help"]);
    let commands = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next());
    let mut named = 0;
    for c in commands {
        named += 1;
        assert!(
            committed.contains(&format!("\n.SS {c}\n")),
            "{c} is not in the man page"
        );
    }
    assert!(named > 20, "{help}");
}
