//! The chain is the ledger: bills confirmed by getEpochState, nothing given up without the
//! contract saying so, the gas circuit breaker, history that outlives the agent, typed
//! outcomes, and `reconcile`.

use crate::common;

use std::time::Duration;

use common::bill::*;
use common::chain::EscrowAgent;
use common::*;
use stream_agency::crypto::keys::Address;

/// Kinds of (agent, epoch) in the local ledger.
fn kind(b: &Bill, address: &str, epoch: i64) -> Option<String> {
    b.sb.conn()
        .query_row(
            "SELECT u.kind FROM usage_windows u JOIN agents a ON a.id = u.agent_id
             WHERE a.address = ?1 AND u.epoch = ?2",
            rusqlite::params![address, epoch],
            |r| r.get(0),
        )
        .unwrap()
}

/// Failed transactions of (agent, epoch) on the chain.
fn failures(b: &Bill, address: &str, epoch: i64) -> usize {
    let s = b.fake.state();
    s.chain
        .executed
        .iter()
        .filter(|x| x.agent == address && x.epoch as i64 == epoch && x.error.is_some())
        .count()
}

/// Ticks until nothing is in flight and `done` holds.
fn tick_until(b: &Bill, done: impl Fn(&Bill) -> bool) {
    let ok = wait_for(Duration::from_secs(60), || {
        let r = b.tick();
        assert!(r.code == 0 || r.code == 4, "{}{}", r.stdout, r.stderr);
        std::thread::sleep(Duration::from_millis(200));
        b.sb.query_i64("SELECT COUNT(*) FROM billing_attempts WHERE status = 'pending'") == 0
            && done(b)
    });
    assert!(
        ok,
        "never got there: {}",
        b.sb.ok(&["billing-attempts", "--limit", "50"])
    );
}

/// Ticks into the next epoch (settlement states are read once per epoch).
fn tick_in_next_epoch(b: &Bill) {
    let e = b.current_epoch();
    assert!(wait_for(Duration::from_secs(20), || b.current_epoch() > e));
    b.tick();
}

/// Every epoch the local ledger calls billed is billed on chain.
fn assert_no_phantom_bills(b: &Bill) {
    let conn = b.sb.conn();
    let billed: Vec<(String, i64)> = conn
        .prepare(
            "SELECT a.address, u.epoch FROM usage_windows u JOIN agents a ON a.id = u.agent_id
             WHERE u.billed = 1",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let s = b.fake.state();
    for (address, epoch) in billed {
        assert!(
            s.chain
                .billed
                .contains_key(&(address.clone(), epoch as u64)),
            "{address} epoch {epoch} is billed locally but not on chain"
        );
    }
}

#[test]
fn a_shallow_success_is_not_a_bill_and_an_unexplained_failure_holds_the_agent() {
    let b = setup(3_600_000, 60_000);
    b.pause_all();
    {
        let mut s = b.fake.state();
        // Operator and contract on different shards, and the agent's guard lowered between
        // the views and the transaction: the call fails, its shallow status says success.
        s.chain.cross_shard = true;
        s.chain.enforced_max_windows = Some(3);
    }
    let e = b.current_epoch();
    b.usage(ALICE, e - 2, 5);
    b.usage(ALICE, e - 1, 2);
    b.usage(CAROL, e - 1, 2);
    tick_until(&b, |b| {
        kind(b, ALICE, e - 2).is_some() && kind(b, CAROL, e - 1).is_some()
    });
    assert_eq!(kind(&b, ALICE, e - 2).as_deref(), Some("held"));
    assert_eq!(
        kind(&b, ALICE, e - 1),
        None,
        "later epochs wait behind a hold"
    );
    assert_eq!(kind(&b, CAROL, e - 1).as_deref(), Some("billed"));
    assert_eq!(failures(&b, ALICE, e - 2), 1, "a held epoch is not re-sent");
    assert_no_phantom_bills(&b);
    let r = b.tick();
    assert_eq!(r.code, 4, "a hold needs a human: {}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("billing held"), "{}", r.stderr);
    let check = b.sb.run(&["check"]);
    assert_eq!(check.code, 4);
    assert!(
        check
            .stdout
            .contains(&format!("{ALICE} epoch {} billing held", e - 2)),
        "{}",
        check.stdout
    );
    // The local ledger agrees with the chain.
    let r = b.reconcile(&[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("0 differences"), "{}", r.stderr);

    // A human decides: the held epoch is skipped, the next one goes out.
    let reason = "guard lowered by the client";
    let e2 = (e - 2).to_string();
    b.sb.ok(&[
        "billing",
        "skip",
        "--address",
        ALICE,
        "--epoch",
        &e2,
        "--reason",
        reason,
    ]);
    b.tick_until_settled();
    assert_eq!(kind(&b, ALICE, e - 2).as_deref(), Some("skipped-by-human"));
    assert_eq!(kind(&b, ALICE, e - 1).as_deref(), Some("billed"));
    let attempts = b.sb.ok(&["billing-attempts", "--format", "tsv"]);
    assert!(attempts.contains(reason), "{attempts}");
    assert_no_phantom_bills(&b);
    b.assert_billed_exactly_once();
    assert_eq!(b.reconcile(&[]).code, 0);
}

#[test]
fn billing_retry_reopens_a_held_epoch() {
    let b = setup(3_600_000, 60_000);
    b.pause_all();
    b.fake.state().chain.enforced_max_windows = Some(1);
    let e = b.current_epoch();
    b.usage(CAROL, e - 1, 2);
    tick_until(&b, |b| kind(b, CAROL, e - 1).is_some());
    assert_eq!(kind(&b, CAROL, e - 1).as_deref(), Some("held"));
    // The client raises its guard again; the operator retries.
    b.fake.state().chain.enforced_max_windows = None;
    let out = b.sb.ok(&["billing", "retry", "--address", CAROL]);
    assert!(out.contains("re-opened 1 held epochs"), "{out}");
    b.tick_until_settled();
    assert_eq!(kind(&b, CAROL, e - 1).as_deref(), Some("billed"));
    assert_eq!(failures(&b, CAROL, e - 1), 1);
    b.assert_billed_exactly_once();
}

#[test]
fn a_gas_limit_too_low_stops_billing_after_a_handful_and_fixing_it_bills_everything_once() {
    let b = setup(3_600_000, 60_000);
    b.pause_all();
    let e = b.current_epoch();
    // 100 more agents with a closed epoch each (billing needs no signature).
    let mut agents = Vec::new();
    {
        let conn = b.sb.conn();
        let mut s = b.fake.state();
        for i in 0..100u8 {
            let address = Address::from_bytes([i.wrapping_add(1); 32]).to_bech32();
            conn.execute(
                "INSERT INTO agents (address, stream_signature, fee_bps, status, enrolled_ms, updated_ms)
                 VALUES (?1, '00', 500, 'paused', 0, 0)",
                [&address],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO usage_windows (agent_id, epoch, windows)
                 SELECT id, ?2, 3 FROM agents WHERE address = ?1",
                rusqlite::params![address, e - 1],
            )
            .unwrap();
            s.chain
                .agents
                .insert(address.clone(), EscrowAgent::default());
            agents.push(address);
        }
    }
    let low = ["--billing-gas-limit", "1000000"];
    let mut last = b.tick_with(&low);
    let stopped = wait_for(Duration::from_secs(30), || {
        std::thread::sleep(Duration::from_millis(200));
        last = b.tick_with(&low);
        last.stdout.contains("BLOCKED")
    });
    assert!(
        stopped,
        "billing never stopped: {}{}",
        last.stdout, last.stderr
    );
    assert_eq!(last.code, 4);
    assert!(last.stderr.contains("not enough gas"), "{}", last.stderr);
    // Ticks go on renewing; billing stays stopped and sends nothing more.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(b.tick_with(&low).code, 4);
    }
    let failed = b
        .fake
        .state()
        .chain
        .executed
        .iter()
        .filter(|x| x.error.is_some())
        .count();
    println!(
        "gas limit too low: {failed} failed transactions for 100 agents before billing stopped"
    );
    assert!((1..=3).contains(&failed), "{failed} failed transactions");
    // The operator fixes the gas limit: billing resumes and bills every epoch once.
    b.tick_until_settled_with(&["--billing-gas-limit", "25000000"]);
    let s = b.fake.state();
    for address in &agents {
        assert_eq!(
            s.chain.billed.get(&(address.clone(), (e - 1) as u64)),
            Some(&3),
            "{address}"
        );
    }
    let sent_after_fix = s.chain.executed.len() - failed;
    drop(s);
    println!("after the fix: {sent_after_fix} transactions for 100 epochs");
    b.assert_billed_exactly_once();
    assert_no_phantom_bills(&b);
}

#[test]
fn removed_agents_keep_their_billed_history() {
    let b = setup(3_600_000, 2_000);
    b.pause_all();
    let e = b.current_epoch();
    b.usage(CAROL, e - 1, 2);
    b.tick_until_settled();
    // The agent pays in full, on time; the next pass follows the settlement.
    {
        let mut s = b.fake.state();
        let current = s.contract_epoch();
        let due = s.chain.bills[&(CAROL.to_string(), (e - 1) as u64)].due;
        s.chain.settle(CAROL, (e - 1) as u64, due, current).unwrap();
    }
    tick_in_next_epoch(&b);
    b.sb.ok(&["remove", "--address", CAROL]);
    let report = b.sb.ok(&["report", "--wide"]);
    assert!(
        !report.contains(CAROL),
        "removed agents are hidden by default: {report}"
    );
    let all: serde_json::Value =
        serde_json::from_str(&b.sb.ok(&["report", "--all", "--format", "json"])).unwrap();
    let carol = all
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == CAROL)
        .unwrap()
        .clone();
    // 10^15 atto-CLAW per window x 2 windows x 500 bps = 10^14 atto-CLAW.
    assert_eq!(carol["status"], "removed");
    assert_eq!(carol["billed_claw"], "0.0001", "{carol}");
    assert_eq!(carol["settled_claw"], "0.0001", "{carol}");
    assert_eq!(carol["outstanding_claw"], "0.0000", "{carol}");
    let attempts = b.sb.ok(&["billing-attempts"]);
    assert!(attempts.contains(CAROL), "{attempts}");
    assert_eq!(
        b.sb.query_i64(
            "SELECT COUNT(*) FROM agents WHERE stream_signature <> '' AND removed_ms IS NOT NULL"
        ),
        0
    );
    // Re-enrolling continues the history.
    let (_, _, sig) = wallets().into_iter().find(|w| w.1 == CAROL).unwrap();
    b.sb.ok(&["enroll", "--address", CAROL, "--signature", &sig]);
    let report = b.sb.ok(&["report", "--format", "json"]);
    assert!(report.contains("\"billed_claw\": \"0.0001\""), "{report}");
}

#[test]
fn receivables_follow_the_settlement_state() {
    let b = setup(3_600_000, 2_000);
    b.pause_all();
    let e = b.current_epoch();
    b.usage(ALICE, e - 1, 1);
    b.usage(CAROL, e - 1, 4);
    b.tick_until_settled();
    // Alice never pays: after the grace period someone enforces, and her bond is empty.
    {
        let mut s = b.fake.state();
        let a = s.chain.agents.get_mut(ALICE).unwrap();
        a.bond = 0;
        let bill = s
            .chain
            .bills
            .get_mut(&(ALICE.to_string(), (e - 1) as u64))
            .unwrap();
        bill.state = common::chain::DELINQUENT;
    }
    tick_in_next_epoch(&b);
    let open: serde_json::Value =
        serde_json::from_str(&b.sb.ok(&["receivables", "--format", "json"])).unwrap();
    let states: Vec<(String, String)> = open
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["agent"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        states.contains(&(ALICE.to_string(), "Delinquent".to_string())),
        "{states:?}"
    );
    assert!(
        states.contains(&(CAROL.to_string(), "Billed".to_string())),
        "{states:?}"
    );
    let prom = b.sb.dir.path().join("m.prom");
    b.sb.run(&["check", "--prometheus", prom.to_str().unwrap()]);
    let text = std::fs::read_to_string(&prom).unwrap();
    assert!(
        text.contains("stream_agency_receivables_milliclaw{state=\"outstanding\"}"),
        "{text}"
    );
    assert!(text.contains("stream_agency_held_epochs 0"), "{text}");
}

#[test]
fn reconcile_reports_and_repairs_what_the_chain_lacks() {
    let b = setup(3_600_000, 60_000);
    b.pause_all();
    let e = b.current_epoch();
    // Local says billed, the chain does not have it (an MVP-style exit-code bill).
    b.usage(ALICE, e - 2, 2);
    b.usage(CAROL, e - 2, 1);
    b.usage(CAROL, e - 1, 1);
    {
        let conn = b.sb.conn();
        conn.execute(
            "UPDATE usage_windows SET billed = 1, kind = 'billed-by-mvp'",
            [],
        )
        .unwrap();
        let mut s = b.fake.state();
        // CAROL's e-1 is on chain, so her e-2 can no longer be billed (order rule).
        s.chain.put_bill(CAROL, (e - 1) as u64, 1);
    }
    let r = b.reconcile(&["--format", "tsv"]);
    assert_eq!(r.code, 4, "{}{}", r.stdout, r.stderr);
    let lines: Vec<&str> = r.stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), 2, "{}", r.stdout);
    assert!(
        r.stdout
            .contains(&format!("{ALICE}\t{}\tbilled-by-mvp\tnot billed", e - 2)),
        "{}",
        r.stdout
    );
    let r = b.reconcile(&["--apply"]);
    assert_eq!(
        r.code, 4,
        "a lost epoch needs a human: {}{}",
        r.stdout, r.stderr
    );
    assert_eq!(kind(&b, ALICE, e - 2), None, "re-opened");
    assert_eq!(kind(&b, CAROL, e - 2).as_deref(), Some("lost"));
    assert_eq!(
        kind(&b, CAROL, e - 1).as_deref(),
        Some("billed-by-mvp"),
        "the chain has it"
    );
    b.tick_until_settled();
    assert_eq!(kind(&b, ALICE, e - 2).as_deref(), Some("billed"));
    let r = b.reconcile(&[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    // Bounded and resumable: one pair per run still gets through the whole ledger.
    let mut runs = 0;
    loop {
        runs += 1;
        let r = b.reconcile(&["--max-pairs", "1"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        if r.stderr.contains("whole ledger") {
            break;
        }
        assert!(runs < 10);
    }
    assert!(runs >= 3, "{runs}");
}

#[test]
fn the_migration_gives_every_existing_outcome_its_kind() {
    let sb = Sandbox::new();
    {
        let conn = rusqlite::Connection::open(&sb.db).unwrap();
        conn.execute_batch(include_str!("../../sql/0001_initial.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute_batch(
            "INSERT INTO agents (id, address, stream_signature, fee_bps, enrolled_ms, updated_ms)
               VALUES (1, 'claw1qyu5wthldzr8wx5c9ucg8kjagg0jfs53s8nr3zpz3hypefsdd8ss0ekavn', 'aa', 500, 0, 0);
             INSERT INTO usage_windows (agent_id, epoch, windows, billed, outcome) VALUES
               (1, 1, 2, 1, 'billed'), (1, 2, 2, 1, 'billed (found on chain)'),
               (1, 3, 2, 0, 'expired: older than max_backbill_epochs (30)'),
               (1, 4, 2, 0, 'refused: agent cancelled on the escrow'),
               (1, 5, 2, 0, 'clipped: the contract''s guards allow 0 windows'),
               (1, 6, 2, 0, 'needs a human: failed 3 times: boom'),
               (1, 7, 2, 0, NULL);
             INSERT INTO billing_attempts (agent_id, epoch, windows, created_ms, updated_ms, status, reason) VALUES
               (1, 1, 2, 0, 0, 'success', 'billed'), (1, 6, 2, 0, 0, 'failed', 'unexplained: boom'),
               (1, 7, 2, 0, 0, 'failed', 'failed, will retry: Epoch not closed yet');",
        )
        .unwrap();
    }
    std::fs::set_permissions(&sb.db, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    sb.ok(&["report"]);
    let kinds: Vec<(i64, Option<String>)> = sb
        .conn()
        .prepare("SELECT epoch, kind FROM usage_windows ORDER BY epoch")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected = [
        "billed",
        "billed-found-on-chain",
        "expired",
        "refused",
        "clipped",
        "held",
    ];
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(kinds[i].1.as_deref(), Some(*want), "epoch {}", kinds[i].0);
    }
    assert_eq!(kinds[6].1, None, "an open epoch stays open");
    assert_eq!(
        sb.query_i64("SELECT COUNT(*) FROM billing_attempts WHERE kind IS NULL"),
        0
    );
    assert_eq!(
        sb.query_i64("SELECT COUNT(*) FROM billing_attempts WHERE kind = 'retry'"),
        1
    );
    assert_eq!(sb.query_i64("PRAGMA user_version"), 10);
    println!("migration 0002 on a v1 database: {kinds:?}");
}

#[test]
fn an_unreadable_signature_fails_its_agent_alone() {
    let fake = FakeClaws::steady();
    let sb = Sandbox::new();
    let key = sb.dir.path().join("k.key");
    sb.ok(&["keygen", "--out", key.to_str().unwrap()]);
    let k = key.to_str().unwrap();
    for (_, addr, sig) in wallets() {
        sb.ok(&[
            "--secret-key-file",
            k,
            "enroll",
            "--address",
            &addr,
            "--signature",
            &sig,
        ]);
    }
    sb.conn()
        .execute(
            "UPDATE agents SET stream_signature = substr(stream_signature, 1, length(stream_signature) - 4) || 'AAAA' WHERE address = ?1",
            [ALICE],
        )
        .unwrap();
    let mut args = vec!["--secret-key-file", k, "tick"];
    let net = net_args(&fake);
    args.extend(net.iter().map(String::as_str));
    let r = sb.run(&args);
    assert!(
        r.stdout
            .contains("2 renewed, 0 already streaming, 1 failed"),
        "{}{}",
        r.stdout,
        r.stderr
    );
    let error: String = sb
        .conn()
        .query_row(
            "SELECT last_error FROM agents WHERE address = ?1",
            [ALICE],
            |r| r.get(0),
        )
        .unwrap();
    assert!(error.contains("stored signature unreadable"), "{error}");
}
