//! Running unattended: the lock, the tick deadline, every exit status, script-friendly
//! output, dry runs, monitoring, bulk enrollment, pruning and secrets at rest.

use crate::common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use stream_agency::crypto::keys::Wallet;

fn setup(policy: RenewalPolicy) -> (FakeClaws, Sandbox) {
    let fake = FakeClaws::start(600_000, policy, 60_000);
    let sb = Sandbox::new();
    sb.enroll_all();
    (fake, sb)
}

fn tick_args(fake: &FakeClaws, extra: &[&str]) -> Vec<String> {
    let mut a = vec![
        "tick".to_string(),
        "--lead-seconds".into(),
        "60".into(),
        "--jitter-seconds".into(),
        "1".into(),
    ];
    a.extend(net_args(fake));
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run_args(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[test]
fn a_second_tick_exits_at_once_while_another_holds_the_lock() {
    let (fake, sb) = setup(RenewalPolicy::Early {
        accept_before_ms: 1_000,
    });
    let mut args = tick_args(&fake, &[]);
    args[0] = "run".into();
    let mut daemon = sb.spawn(&run_args(&args));
    let lock = sb.db.with_extension("db.lock");
    assert!(wait_for(Duration::from_secs(20), || {
        std::fs::read_to_string(&lock).is_ok_and(|s| s.contains("run"))
    }));
    let started = Instant::now();
    let r = sb.run(&run_args(&tick_args(&fake, &[])));
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("run (pid {})", daemon.id())),
        "names the holder: {}",
        r.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(5), "exits at once");
    // A crashed holder never blocks the next run.
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let r = sb.run(&run_args(&tick_args(&fake, &[])));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn a_long_tick_stops_at_its_deadline_and_the_rest_goes_first_next_time() {
    let (fake, sb) = setup(RenewalPolicy::Early {
        accept_before_ms: 1_000,
    });
    for _ in 0..3 {
        fake.state().stream_faults.push_back(Fault::Delay(700));
    }
    let r = sb.run(&run_args(&tick_args(&fake, &["--max-tick-seconds", "1"])));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("stopped early"), "{}", r.stdout);
    // 700 ms each: all three would take 2.1 s; the deadline stops after one or two.
    let done = sb.query_i64("SELECT COUNT(*) FROM attempts");
    assert!(
        (1..=2).contains(&done),
        "{done} renewals in a one-second tick"
    );
    let r = sb.run(&run_args(&tick_args(&fake, &[])));
    let rest = 3 - done;
    assert!(
        r.stdout.contains(&format!("{rest} due: {rest} renewed")),
        "{}",
        r.stdout
    );
}

#[test]
fn exit_statuses_tell_cron_and_systemd_what_happened() {
    let (fake, sb) = setup(RenewalPolicy::Early {
        accept_before_ms: 1_000,
    });
    // 0: all well.
    assert_eq!(sb.run(&run_args(&tick_args(&fake, &[]))).code, 0);
    // 2: usage error, nothing done.
    let r = sb.run(&["tick", "--lead-seconds", "x"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    // 4: ran, but a window lapsed...
    sb.conn()
        .execute(
            "UPDATE agents SET expected_end_ms = ?1 WHERE id = 1",
            [now_ms() - 600_000],
        )
        .unwrap();
    let r = sb.run(&run_args(&tick_args(&fake, &[])));
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("without renewal"), "{}", r.stderr);
    // ... or an agent has been failing for over an hour.
    sb.conn()
        .execute(
            "UPDATE agents SET expected_end_ms = ?1, failing_since_ms = ?2, last_error = 'HTTP 401' WHERE id = 1",
            [now_ms() + 600_000, now_ms() - 7_200_000],
        )
        .unwrap();
    let r = sb.run(&run_args(&tick_args(&fake, &[])));
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("failing for 120 min"), "{}", r.stderr);
    // 1: fatal runtime error (a database newer than this binary).
    let bad = Sandbox::new();
    bad.ok(&["init-db"]);
    bad.conn().pragma_update(None, "user_version", 99).unwrap();
    assert_eq!(bad.run(&["report"]).code, 1);
    // A file that is not SQLite is a wrong --db: a usage error.
    let text = Sandbox::new();
    std::fs::write(&text.db, vec![b'x'; 4096]).unwrap();
    std::fs::set_permissions(&text.db, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(text.run(&["report"]).code, 2);
    // 3 is covered by the lock test; --help documents them all.
    let help = sb.run(&["--help"]).stdout;
    for code in ["1 runtime", "2 usage", "3 another", "4 ran, but"] {
        assert!(help.contains(code), "{code}: {help}");
    }
}

#[test]
fn report_json_feeds_jq_and_tsv_feeds_awk() {
    let (fake, sb) = setup(RenewalPolicy::Early {
        accept_before_ms: 1_000,
    });
    sb.ok(&run_args(&tick_args(&fake, &[])));
    let json = sb.ok(&["report", "--format", "json"]);
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rows = parsed.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for field in stream_agency::ops::report::REPORT_FIELDS {
        assert!(rows[0].get(field).is_some(), "field {field}");
    }
    assert!(rows[0]["window_end_ms"].as_i64().unwrap() > now_ms());
    assert!(rows[0]["window_end"].as_str().unwrap().ends_with('Z'));
    if let Ok(mut jq) = Command::new("jq")
        .arg("-r")
        .arg("map(.renewed) | add")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        jq.stdin.take().unwrap().write_all(json.as_bytes()).unwrap();
        let out = jq.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "3");
    }
    let tsv = sb.ok(&["report", "--format", "tsv"]);
    let header: Vec<&str> = tsv.lines().next().unwrap().split('\t').collect();
    let renewed = header.iter().position(|h| *h == "renewed").unwrap() + 1;
    let mut awk = Command::new("awk")
        .args([
            "-F",
            "\t",
            &format!("NR > 1 {{ s += ${renewed} }} END {{ print s }}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    awk.stdin.take().unwrap().write_all(tsv.as_bytes()).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&awk.wait_with_output().unwrap().stdout).trim(),
        "3"
    );
    let attempts = sb.ok(&["attempts", "--address", &wallets()[0].1, "--format", "json"]);
    let attempts: serde_json::Value = serde_json::from_str(&attempts).unwrap();
    assert_eq!(attempts[0]["ok"], true);
    let billing: serde_json::Value =
        serde_json::from_str(&sb.ok(&["billing-attempts", "--format", "json"])).unwrap();
    assert_eq!(billing, serde_json::json!([]));
    assert_eq!(sb.run(&["report", "--format", "xml"]).code, 2);
}

#[test]
fn dry_run_changes_nothing() {
    let (fake, sb) = setup(RenewalPolicy::Early {
        accept_before_ms: 1_000,
    });
    let before = sb.file_bytes();
    let out = sb.ok(&run_args(&tick_args(&fake, &["--dry-run"])));
    assert!(
        out.contains("would renew") && out.contains("3 agents due"),
        "{out}"
    );
    assert_eq!(fake.state().stream_requests, 0, "no renewal was sent");
    assert_eq!(sb.file_bytes(), before, "the database is unchanged");
    assert_eq!(sb.query_i64("SELECT COUNT(*) FROM attempts"), 0);
}

#[test]
fn check_pages_on_lapses_and_writes_textfile_metrics() {
    let (fake, sb) = setup(RenewalPolicy::Early {
        accept_before_ms: 1_000,
    });
    sb.ok(&run_args(&tick_args(&fake, &[])));
    let prom = sb.dir.path().join("stream_agency.prom");
    let r = sb.run(&["check", "--prometheus", prom.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let text = std::fs::read_to_string(&prom).unwrap();
    // The exposition format: HELP and TYPE before each family, then `name{labels} value`.
    let mut families = 0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let kind = rest.split_whitespace().nth(1).unwrap();
            assert!(kind == "gauge" || kind == "counter", "{line}");
            families += 1;
        } else if !line.starts_with("# HELP ") {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("stream_agency_"), "{line}");
            let bare = name.split('{').next().unwrap();
            assert!(
                bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            if let Some(labels) = name.strip_prefix(bare) {
                assert!(
                    labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                    "{line}"
                );
            }
            value.parse::<f64>().unwrap();
        }
    }
    assert!(families >= 6, "{text}");
    assert!(
        text.contains("stream_agency_agents{status=\"active\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("stream_agency_renewals_total{result=\"ok\"} 3"),
        "{text}"
    );

    sb.conn()
        .execute(
            "UPDATE agents SET expected_end_ms = ?1 WHERE id = 2",
            [now_ms() - 5_000],
        )
        .unwrap();
    let r = sb.run(&["check", "--prometheus", prom.to_str().unwrap()]);
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("window lapsed"), "{}", r.stdout);
    sb.conn()
        .execute(
            "UPDATE agents SET expected_end_ms = ?1 WHERE id = 2",
            [now_ms() + 60_000],
        )
        .unwrap();
    let r = sb.run(&["check", "--warn-seconds", "120"]);
    assert_eq!(r.code, 4, "no renewal planned before the end: {}", r.stdout);
    assert!(std::fs::read_dir(sb.dir.path()).unwrap().all(|e| !e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));
}

/// `n` agents with valid stream signatures, as enrollment-file lines.
fn agent_lines(n: usize) -> String {
    let mut out = String::from("# generated clients\n");
    for i in 0..n {
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let w = Wallet::from_seed(&seed);
        out.push_str(&format!(
            "{}\t{}\t{}\n",
            w.address(),
            hex::encode(w.sign_message(b"stream")),
            100 + i % 900
        ));
    }
    out
}

#[test]
fn bulk_enrollment_checks_every_line_first_and_goes_in_one_transaction() {
    let sb = Sandbox::new();
    sb.ok(&["init-db"]);
    let before = sb.file_bytes();
    let file = sb.dir.path().join("clients.tsv");
    let mut lines = agent_lines(2_000);
    // One bad line refuses the whole file, naming it.
    let good = lines.clone();
    lines.push_str("claw1notanaddress\tabcd\n");
    std::fs::write(&file, &lines).unwrap();
    let r = sb.run(&["enroll", "--from-file", file.to_str().unwrap()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("line 2002:"), "{}", r.stderr);
    assert_eq!(sb.file_bytes(), before);

    std::fs::write(&file, &good).unwrap();
    let started = Instant::now();
    let out = sb.ok(&["enroll", "--from-file", file.to_str().unwrap()]);
    println!("bulk enrollment of 2000 lines: {:?}", started.elapsed());
    assert!(out.contains("enrolled 2000 new agents"), "{out}");
    assert_eq!(sb.query_i64("SELECT COUNT(*) FROM agents"), 2_000);
    // From stdin, re-enrolling updates.
    let mut child = sb
        .command(&["enroll", "--from-file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(agent_lines(3).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("updated 3"));
}

#[test]
fn prune_deletes_old_records_but_never_unbilled_usage() {
    let (fake, sb) = setup(RenewalPolicy::Early {
        accept_before_ms: 1_000,
    });
    sb.ok(&run_args(&tick_args(&fake, &[])));
    let old = now_ms() - 40 * 86_400_000;
    let c = sb.conn();
    c.execute(
        "UPDATE attempts SET attempted_ms = ?1 WHERE agent_id = 1",
        [old],
    )
    .unwrap();
    c.execute(
        "INSERT INTO billing_attempts (agent_id, epoch, windows, created_ms, updated_ms, status) VALUES (1, 1, 1, ?1, ?1, 'success'), (1, 2, 1, ?1, ?1, 'pending')",
        [old],
    )
    .unwrap();
    c.execute("UPDATE stream_windows SET opened_ms = ?1", [old])
        .unwrap();
    drop(c);
    let out = sb.ok(&["prune", "--older-than", "30"]);
    assert!(
        out.contains("pruned 1 attempts, 1 settled billing records, 0 billed window records"),
        "{out}"
    );
    assert_eq!(
        sb.query_i64("SELECT COUNT(*) FROM billing_attempts WHERE status = 'pending'"),
        1
    );
    assert_eq!(
        sb.query_i64("SELECT SUM(windows) FROM usage_windows"),
        3,
        "unbilled usage stays"
    );
    assert_eq!(sb.run(&["prune", "--older-than", "0"]).code, 2);
}

#[test]
fn signatures_are_encrypted_at_rest_and_never_appear_in_any_output() {
    let fake = FakeClaws::start(3_000, RenewalPolicy::AfterEnd { say_when: true }, 1_500);
    let sb = Sandbox::new();
    let key = sb.dir.path().join("stream-agency.key");
    let mut outputs = String::new();
    let mut collect = |r: Ran| {
        outputs.push_str(&r.stdout);
        outputs.push_str(&r.stderr);
        r.code
    };
    assert_eq!(
        collect(sb.run(&["keygen", "--out", key.to_str().unwrap()])),
        0
    );
    let key_arg = ["--secret-key-file", key.to_str().unwrap()];
    // Two agents enrolled in plaintext, then migrated; one enrolled with the key.
    let w = wallets();
    for (_, addr, sig) in &w[..2] {
        assert_eq!(
            collect(sb.run(&["enroll", "--address", addr, "--signature", sig])),
            0
        );
    }
    let mut enc = key_arg.to_vec();
    enc.push("encrypt-secrets");
    assert_eq!(collect(sb.run(&enc)), 0);
    let mut one = key_arg.to_vec();
    one.extend(["enroll", "--address", &w[2].1, "--signature", &w[2].2]);
    assert_eq!(collect(sb.run(&one)), 0);
    assert_eq!(
        sb.query_i64("SELECT COUNT(*) FROM agents WHERE stream_signature LIKE 'enc:v1:%'"),
        3
    );

    // Without the key, renewing fails clearly; reports still work.
    let r = sb.run(&run_args(&tick_args(&fake, &[])));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--secret-key-file"), "{}", r.stderr);
    collect(r);
    assert_eq!(collect(sb.run(&["report"])), 0);

    // A full run with billing and debug logs, under the systemd credential variable.
    let pem = sb.dir.path().join("operator.pem");
    std::fs::copy(data_dir().join("bob.pem"), &pem).unwrap();
    std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o600)).unwrap();
    {
        let mut s = fake.state();
        for (_, addr, _) in &w {
            s.chain.agents.insert(addr.clone(), Default::default());
        }
    }
    let mut args: Vec<String> = [
        "run",
        "--lead-seconds",
        "2",
        "--jitter-seconds",
        "1",
        "--poll-seconds",
        "1",
        "--billing-enabled",
    ]
    .map(String::from)
    .to_vec();
    args.extend(net_args(&fake));
    args.extend(["--escrow-contract".into(), common::chain::CONTRACT.into()]);
    args.extend([
        "--operator-pem".into(),
        pem.to_str().unwrap().into(),
        "--billing-proxy".into(),
        fake.url.clone(),
    ]);
    let child = sb
        .command(&run_args(&args))
        .env("RUST_LOG", "debug")
        .env("CREDENTIALS_DIRECTORY", sb.dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let billed = wait_for(Duration::from_secs(60), || {
        fake.state().chain.billed.len() >= 3
    });
    let (code, out, err) = terminate(child);
    assert!(billed, "{err}");
    assert_eq!(code, 0);
    collect(Ran {
        code,
        stdout: out,
        stderr: err,
    });
    for cmd in [
        vec!["report"],
        vec!["billing-attempts"],
        vec!["check"],
        vec!["attempts", "--address", &w[0].1],
    ] {
        collect(sb.run(&cmd));
    }
    for format in ["json", "tsv"] {
        collect(sb.run(&["report", "--format", format]));
    }

    let key_text = std::fs::read_to_string(&key).unwrap().trim().to_string();
    let operator_secret = vectors()["wallets"]["bob"]["secret_key_hex"]
        .as_str()
        .unwrap()
        .to_string();
    let lower = outputs.to_lowercase();
    assert!(lower.contains("renew"), "the outputs were collected");
    for (_, _, sig) in &w {
        assert!(!lower.contains(&sig[..40]), "a stream signature leaked");
    }
    assert!(!lower.contains(&key_text[..40]), "the secret key leaked");
    assert!(
        !lower.contains(&operator_secret[..40]),
        "the operator key leaked"
    );
}

/// The packaged units (`cargo deb` installs contrib/deb/units) are the units of
/// contrib/systemd but for what a package does differently: the binary in /usr/bin, the
/// static system user, the key beside the database instead of credentials.
#[test]
fn the_packaged_units_follow_the_units() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    let lines = |path: &std::path::Path, drop: &[&str]| -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .lines()
            .filter(|l| !l.starts_with('#') && !drop.iter().any(|d| l.starts_with(d)))
            .map(|l| l.replace("/usr/local/bin/", "/usr/bin/"))
            .collect()
    };
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("systemd")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if !(name.ends_with(".service") || name.ends_with(".timer") || name.ends_with(".socket")) {
            continue;
        }
        let ours = lines(
            &path,
            &[
                "DynamicUser=",
                "LoadCredential=",
                "Environment=STREAM_AGENCY_OPERATOR_PEM=%d",
            ],
        );
        let packaged = lines(
            &root.join("deb/units").join(&name),
            &["Environment=STREAM_AGENCY_SECRET_KEY_FILE=/var/lib/stream-agency/"],
        );
        assert_eq!(
            ours, packaged,
            "contrib/deb/units/{name} drifted from contrib/systemd"
        );
        checked += 1;
    }
    assert_eq!(
        checked, 15,
        "the units of one host, and of a primary and its standby"
    );
    let cargo = std::fs::read_to_string(root.join("../Cargo.toml")).unwrap();
    assert_eq!(
        cargo.matches("\"contrib/deb/units/").count(),
        checked,
        "every unit packaged"
    );
}

/// The packaged env file (and its example) names every runtime option, from the one list
/// of them in `config.rs` (`runtime_options!`), as `STREAM_AGENCY_<OPTION>`.
#[test]
fn the_env_files_name_every_runtime_option() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = std::fs::read_to_string(root.join("src/config.rs")).unwrap();
    let list = &config[config.find("macro_rules! runtime_options").unwrap()..];
    let list = &list[..list.find("\n}\n").unwrap()];
    let options: Vec<String> = list
        .lines()
        .filter_map(|l| l.trim().split_once(": ["))
        .map(|(name, _)| format!("STREAM_AGENCY_{}=", name.to_uppercase()))
        .collect();
    assert!(
        options.len() > 20,
        "the option list was not found: {options:?}"
    );
    for file in [
        "contrib/deb/stream-agency.env",
        "contrib/systemd/stream-agency.env.example",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let missing: Vec<&String> = options
            .iter()
            .filter(|o| !text.contains(o.as_str()))
            .collect();
        assert!(missing.is_empty(), "{file} does not name {missing:?}");
    }
}

/// Sealed signatures: a new one is never written in plain text beside them (no key given),
/// nor sealed with a key that does not open them; one line, nothing written.
#[test]
fn sealed_signatures_refuse_a_missing_or_wrong_key_before_anything_is_written() {
    let sb = Sandbox::new();
    let (key, other) = (sb.dir.path().join("k"), sb.dir.path().join("other"));
    sb.ok(&["keygen", "--out", key.to_str().unwrap()]);
    sb.ok(&["keygen", "--out", other.to_str().unwrap()]);
    let w = wallets();
    sb.ok(&[
        "--secret-key-file",
        key.to_str().unwrap(),
        "enroll",
        "--address",
        &w[0].1,
        "--signature",
        &w[0].2,
    ]);
    let before = sb.file_bytes();
    for key_args in [vec![], vec!["--secret-key-file", other.to_str().unwrap()]] {
        let mut args = key_args.clone();
        args.extend(["enroll", "--address", &w[1].1, "--signature", &w[1].2]);
        let r = sb.run(&args);
        assert_eq!(r.code, 2, "{key_args:?}: {}", r.stderr);
        let errors: Vec<&str> = r
            .stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .collect();
        assert_eq!(errors.len(), 1, "{}", r.stderr);
        assert!(errors[0].contains("nothing was written"), "{}", r.stderr);
        assert_eq!(
            sb.file_bytes(),
            before,
            "{key_args:?}: the database changed"
        );
    }
}
