//! Renewals in parallel: `run --renewers N` over disjoint shards of the agents, against a
//! stream service that takes 100 ms a request. One process bills; a renewer killed
//! mid-tick loses nothing and is started again; a second copy of a shard is refused; `check`
//! and `report` see every shard as one agency.

use std::time::Duration;

use crate::common;
use common::bill::setup;
use common::*;

/// The pid in a lock file's holder line ("run --shard 2/4 (pid 123) since ...").
fn holder_pid(lock: &std::path::Path) -> Option<i32> {
    let text = std::fs::read_to_string(lock).ok()?;
    let at = text.find("(pid ")? + 5;
    text[at..].split(')').next()?.trim().parse().ok()
}

#[test]
fn four_renewers_keep_every_agent_and_bill_once_and_a_killed_one_comes_back() {
    let b = setup(10_000, 6_000);
    b.sb.enroll_generated(37);
    {
        let mut s = b.fake.state();
        s.stream_latency_ms = Some((100, 100));
        let addresses: Vec<String> =
            b.sb.conn()
                .prepare("SELECT address FROM agents")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        for a in addresses {
            s.chain.agents.entry(a).or_default();
        }
    }
    let mut args = b.args("run");
    let at = args.iter().position(|x| x == "--lead-seconds").unwrap();
    args[at + 1] = "6".into();
    args.extend(["--poll-seconds", "1", "--renewers", "4"].map(String::from));
    let run =
        b.sb.spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let agents_renewed = |b: &common::bill::Bill| b.fake.state().windows.len();
    let all = wait_for(Duration::from_secs(60), || agents_renewed(&b) == 40);
    let shard2 = std::path::PathBuf::from(format!("{}.shard-2.lock", b.sb.db.display()));
    let first = holder_pid(&shard2);
    // A second copy of a shard is refused like a second run.
    let again = b.sb.run(&[
        "run",
        "--shard",
        "2/4",
        "--stream-url",
        &b.fake.stream_url(),
    ]);
    // Shard 2's renewer killed mid-tick: started again by run, nothing lost.
    if let Some(pid) = first {
        // SAFETY: kill(2) of a child process of the run under test, by its pid.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let back = wait_for(Duration::from_secs(20), || {
        holder_pid(&shard2).is_some_and(|p| Some(p) != first)
    });
    let granted_before = b.fake.state().windows.values().map(Vec::len).sum::<usize>();
    assert!(wait_for(Duration::from_secs(60), || {
        b.fake.state().windows.values().map(Vec::len).sum::<usize>() >= granted_before + 80
    }));
    let check = b.sb.run(&["check", "--warn-seconds", "0"]);
    let report = b.sb.ok(&["report", "--format", "json"]);
    b.pause_all();
    let closed = b.current_epoch();
    let settled = b.wait_settled(closed);
    let (code, _, log) = terminate(run);
    assert!(all, "not every agent was renewed: {log}");
    assert_eq!(again.code, 3, "{}{}", again.stdout, again.stderr);
    assert!(first.is_some() && back, "shard 2 not started again: {log}");
    assert!(log.contains("renewer of shard 2/4 exited"), "{log}");
    assert!(settled, "{log}");
    assert_eq!(code, 0, "{log}");
    assert_eq!(check.code, 0, "check over the shards: {}", check.stdout);
    let rows: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 40);
    // Every window granted counted once, in its epoch; every closed epoch billed once by
    // the one process that bills.
    b.assert_counted_and_billed_once(closed);
    let s = b.fake.state();
    let gap = s.max_gap_ms();
    println!(
        "4 renewers at 100 ms a request: 40 agents, {} windows, {} bills, worst gap {gap} ms; shard 2 killed and started again",
        s.windows.values().map(Vec::len).sum::<usize>(),
        s.chain.executed.len()
    );
    assert_eq!(gap, 0, "a window lapsed");
}

#[test]
fn a_busy_services_retry_after_slows_every_renewer() {
    let fake = FakeClaws::start(
        60_000,
        RenewalPolicy::Early {
            accept_before_ms: 30_000,
        },
        3_600_000,
    );
    let sb = Sandbox::new();
    sb.enroll_generated(30);
    {
        let mut s = fake.state();
        s.stream_latency_ms = Some((100, 100));
        s.stream_faults.push_back(Fault::Status(
            429,
            r#"{"error":"slow down"}"#.into(),
            Some(3),
        ));
    }
    let run = sb.spawn_run(&fake, &["--renewers", "3", "--jitter-seconds", "0"]);
    let told = wait_for(Duration::from_secs(20), || {
        fake.state().stream_faults.is_empty()
    });
    let at_429 = fake.state().stream_requests;
    std::thread::sleep(Duration::from_millis(2_000));
    let during = fake.state().stream_requests - at_429;
    let resumed = wait_for(Duration::from_secs(20), || fake.state().windows.len() == 30);
    let (code, _, log) = terminate(run);
    println!("a 429 with Retry-After 3 s: {during} requests from 3 renewers in the next 2 s");
    assert!(told, "{log}");
    assert!(
        during <= 3,
        "{during} requests while the service asked to wait: {log}"
    );
    assert!(resumed, "{log}");
    assert_eq!(code, 0, "{log}");
}

#[test]
fn renewers_die_with_their_run() {
    let fake = FakeClaws::steady();
    let sb = Sandbox::new();
    sb.enroll_all();
    let mut run = sb.spawn_run(&fake, &["--renewers", "3"]);
    let lock = std::path::PathBuf::from(format!("{}.shard-2.lock", sb.db.display()));
    assert!(wait_for(Duration::from_secs(20), || holder_pid(&lock).is_some()));
    let child = holder_pid(&lock).unwrap();
    run.kill().unwrap();
    run.wait().unwrap();
    // SAFETY: kill(2) with signal 0 only asks whether the pid still exists.
    let gone = wait_for(
        Duration::from_secs(20),
        || unsafe { libc::kill(child, 0) } != 0,
    );
    assert!(gone, "the renewer of shard 2 outlived its run (SIGKILL)");
}
