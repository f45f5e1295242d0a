//! The escrow as deployed (the spec's corrected escrow section): settlement read by the
//! contract's enum, every kind of bill followed to the contract's state, collections with
//! `--enforce-after-grace`, refusals learned by simulation without gas, probation, each
//! agent's lifecycle, and the migration of settlements recorded one index off.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use common::bill::{setup, Bill, ALICE, CAROL};
use common::chain::{SimulateRoute, BILLED, CONTRACT, DELINQUENT};
use common::*;

const BOB: &str = common::chain::BOB;

/// Every bill on the chain: (agent, epoch) -> (state index, due left, agent's outstanding).
fn chain_bills(b: &Bill) -> HashMap<(String, i64), (u8, u128, u128)> {
    let s = b.fake.state();
    s.chain
        .bills
        .iter()
        .map(|((a, e), bill)| {
            let owed = s.chain.agents[a].outstanding;
            ((a.clone(), *e as i64), (bill.state, bill.due, owed))
        })
        .collect()
}

/// A bill in the database: (settlement, due_atto, paid_at_cancel).
type LocalBill = (Option<String>, Option<String>, bool);

/// Every bill in the database, by (agent, epoch).
fn local_bills(b: &Bill) -> HashMap<(String, i64), LocalBill> {
    let conn = b.sb.conn();
    let mut stmt = conn
        .prepare(
            "SELECT a.address, u.epoch, u.settlement, u.due_atto, u.paid_at_cancel FROM usage_windows u
             JOIN agents a ON a.id = u.agent_id WHERE u.billed = 1",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(((r.get(0)?, r.get(1)?), (r.get(2)?, r.get(3)?, r.get(4)?)))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn state_name(index: u8) -> &'static str {
    [
        "Unbilled",
        "Billed",
        "SettledOnTime",
        "SettledLate",
        "Slashed",
        "Delinquent",
    ][index as usize]
}

/// `receivables --refresh` through the fake, with more arguments.
fn refresh(b: &Bill, extra: &[&str]) -> Ran {
    let mut args = vec![
        "receivables",
        "--refresh",
        "--escrow-contract",
        CONTRACT,
        "--billing-proxy",
        &b.fake.url,
    ];
    args.extend_from_slice(extra);
    b.sb.run(&args)
}

/// `receivables --refresh` through the fake; its JSON rows.
fn receivables(b: &Bill) -> Vec<serde_json::Value> {
    let r = refresh(b, &["--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let out = r.stdout;
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Local settlement == the contract's state for every bill (a bill paid from the bond at
/// cancellation reads as paid although the contract still says Billed), and receivables
/// lists exactly the unpaid ones. Returns the mismatches found (to print).
fn assert_ledger_matches_chain(b: &Bill) -> usize {
    let open = receivables(b);
    let chain = chain_bills(b);
    let local = local_bills(b);
    assert_eq!(chain.len(), local.len(), "{chain:?} vs {local:?}");
    let mut expected_open = Vec::new();
    for (key, (state, due, owed)) in &chain {
        let (settlement, local_due, paid_at_cancel) = &local[key];
        assert_eq!(settlement.as_deref(), Some(state_name(*state)), "{key:?}");
        let cancel_paid = (*state == BILLED || *state == DELINQUENT) && *owed == 0;
        assert_eq!(*paid_at_cancel, cancel_paid, "{key:?}");
        if (*state == BILLED || *state == DELINQUENT) && !cancel_paid {
            assert_eq!(
                local_due.as_deref(),
                Some(due.to_string().as_str()),
                "{key:?}"
            );
            expected_open.push(key.clone());
        }
    }
    let mut listed: Vec<(String, i64)> = open
        .iter()
        .map(|r| {
            let agent = r["agent"].as_str().unwrap().to_string();
            (agent, r["epoch"].as_i64().unwrap())
        })
        .collect();
    listed.sort();
    expected_open.sort();
    assert_eq!(
        listed, expected_open,
        "receivables lists exactly the unpaid bills"
    );
    0
}

fn due_of(b: &Bill, agent: &str, epoch: i64) -> u128 {
    b.fake.state().chain.bills[&(agent.to_string(), epoch as u64)].due
}

fn settle(b: &Bill, agent: &str, epoch: i64, amount: u128) {
    let mut s = b.fake.state();
    let current = s.contract_epoch();
    s.chain
        .settle(agent, epoch as u64, amount, current)
        .unwrap();
}

#[test]
fn every_kind_of_bill_settles_locally_as_on_chain_and_overdue_ones_are_enforced_once() {
    let b = setup(3_600_000, 3_000);
    b.pause_all();
    let e = b.current_epoch();
    for agent in [ALICE, BOB, CAROL] {
        for epoch in [e - 8, e - 7, e - 6, e - 1] {
            b.usage(agent, epoch, 4);
        }
    }
    b.tick_until_settled();
    assert_eq!(b.fake.state().chain.bills.len(), 12, "every epoch billed");
    // Alice pays: late in full, late in part, late overpaid, on time.
    settle(&b, ALICE, e - 8, due_of(&b, ALICE, e - 8));
    settle(&b, ALICE, e - 7, due_of(&b, ALICE, e - 7) / 2);
    settle(&b, ALICE, e - 6, due_of(&b, ALICE, e - 6) * 2);
    settle(&b, ALICE, e - 1, due_of(&b, ALICE, e - 1));
    // Bob never pays and his bond is empty: enforcement leaves his bills Delinquent.
    b.fake.state().chain.agents.get_mut(BOB).unwrap().bond = 0;
    // Carol cancels owing: her bond pays every bill, whose state stays Billed.
    {
        let mut s = b.fake.state();
        let current = s.contract_epoch();
        s.chain.cancel(CAROL, current).unwrap();
    }
    // Without --enforce-after-grace, nothing is enforced.
    for _ in 0..2 {
        b.tick();
    }
    assert!(b.fake.state().chain.enforce_calls.is_empty());
    // With it: each overdue unpaid bill once (alice e-7's rest, bob e-8, e-7, e-6). Bob's
    // empty bond recovers nothing, so his are sent only at a loss (see the fee tests).
    let enforce = ["--enforce-after-grace", "--bill-at-a-loss"];
    let enforced = wait_for(Duration::from_secs(30), || {
        b.tick_with(&enforce);
        b.sb.query_i64("SELECT COUNT(*) FROM enforcements WHERE status = 'done'") == 4
    });
    assert!(enforced, "{:?}", b.fake.state().chain.enforce_calls);
    for _ in 0..3 {
        b.tick_with(&enforce);
    }
    let calls = b.fake.state().chain.enforce_calls.clone();
    let mut once: HashMap<(String, u64), usize> = HashMap::new();
    for c in calls.iter().filter(|c| c.error.is_none()) {
        *once.entry((c.agent.clone(), c.epoch)).or_default() += 1;
    }
    assert_eq!(once.len(), 4, "{calls:?}");
    assert!(once.values().all(|&n| n == 1), "{calls:?}");
    assert!(calls.iter().all(|c| c.error.is_none()), "{calls:?}");
    let states: Vec<u8> = chain_bills(&b).values().map(|v| v.0).collect();
    for want in 1..=5u8 {
        assert!(
            states.contains(&want),
            "no bill in state {want}: {states:?}"
        );
    }
    let mismatches = assert_ledger_matches_chain(&b);
    println!("12 bills, states {states:?}: {mismatches} receivables/chain mismatches");
    let shown = b.sb.ok(&["receivables"]);
    assert!(shown.contains("Delinquent"), "{shown}");
    let report: serde_json::Value =
        serde_json::from_str(&b.sb.ok(&["report", "--format", "json"])).unwrap();
    let carol = report
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == CAROL)
        .unwrap();
    assert_eq!(carol["outstanding_claw"], "0.0000", "{carol}");
}

#[test]
fn odd_settlement_answers_leave_the_bill_open_and_nothing_paid() {
    let b = setup(3_600_000, 3_000);
    b.pause_all();
    let e = b.current_epoch();
    b.usage(ALICE, e - 3, 2);
    b.usage(BOB, e - 3, 2);
    b.usage(CAROL, e - 3, 2);
    b.tick_until_settled();
    {
        let mut s = b.fake.state();
        s.chain
            .odd_states
            .insert((ALICE.to_string(), (e - 3) as u64), vec![vec![9]]);
        s.chain
            .odd_states
            .insert((BOB.to_string(), (e - 3) as u64), vec![vec![1, 2], vec![]]);
        s.chain
            .bills
            .get_mut(&(CAROL.to_string(), (e - 3) as u64))
            .unwrap()
            .state = DELINQUENT;
    }
    receivables(&b);
    // Carol's bill goes back from Delinquent to Billed: said, kept open.
    b.fake
        .state()
        .chain
        .bills
        .get_mut(&(CAROL.to_string(), (e - 3) as u64))
        .unwrap()
        .state = BILLED;
    let r = refresh(&b, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("unknown state index 9"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{ALICE} epoch {}", e - 3)),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("another shape"), "{}", r.stderr);
    assert!(
        r.stderr.contains("went back from Delinquent to Billed"),
        "{}",
        r.stderr
    );
    let local = local_bills(&b);
    for agent in [ALICE, BOB, CAROL] {
        let (settlement, _, paid) = &local[&(agent.to_string(), e - 3)];
        assert!(!paid);
        assert!(
            matches!(settlement.as_deref(), Some("Billed") | None),
            "{agent}: {settlement:?}"
        );
    }
    assert_eq!(receivables(&b).len(), 3, "all three stay open");
}

/// The refusals the views can predict and those only a simulation can: a zero fee, a
/// guard changed after the views were read, a cancelled agent, probation fixed. Returns
/// (failed transactions, bills billed).
fn planted_refusals(route: SimulateRoute) -> (usize, usize, Bill) {
    let b = setup(3_600_000, 3_000);
    b.pause_all();
    let e = b.current_epoch();
    {
        let mut s = b.fake.state();
        s.chain.simulate = route;
        // Alice: probation fixed by the owner, 20 windows in her bill.
        s.chain.probation_fixed = true;
        // Bob: the guard the contract enforces is lower than the views say.
        s.chain.agents.get_mut(BOB).unwrap().fee_bps = 500;
        // Carol: a fee so low that the due rounds to zero.
        s.chain.agents.get_mut(CAROL).unwrap().fee_bps = 1;
    }
    b.usage(ALICE, e - 2, 20);
    b.usage(BOB, e - 2, 5);
    b.usage(CAROL, e - 2, 3);
    b.fake.state().chain.window_reward = 1_000;
    b.fake
        .state()
        .chain
        .enforced_guards
        .insert(BOB.to_string(), 4);
    // Bills of a few thousand atto pay for no fee: sent at a loss, to meet the refusals.
    b.tick_until_settled_with(&["--bill-at-a-loss"]);
    let s = b.fake.state();
    let failed = s
        .chain
        .executed
        .iter()
        .filter(|x| x.error.is_some())
        .count();
    let billed = s.chain.bills.len();
    drop(s);
    (failed, billed, b)
}

#[test]
fn with_the_simulate_route_no_predictable_refusal_costs_gas() {
    let (failed, billed, b) = planted_refusals(SimulateRoute::Served);
    let s = b.fake.state();
    println!(
        "with simulation: {failed} failed transactions, {billed} bills, {} simulations ({} refused)",
        s.chain.simulations,
        s.chain.simulated_failures.len()
    );
    assert_eq!(failed, 0, "{:?}", s.chain.executed);
    assert!(s.chain.simulations >= 2);
    // Alice in probation: 12 windows billed, 8 clipped with the reason.
    let alice = s
        .chain
        .bills
        .iter()
        .find(|(k, _)| k.0 == ALICE)
        .map(|(_, v)| v.windows);
    drop(s);
    assert_eq!(alice, Some(12));
    let (billed_w, clipped): (i64, i64) = b
        .sb
        .conn()
        .query_row(
            "SELECT billed_windows, clipped_windows FROM usage_windows u JOIN agents a ON a.id = u.agent_id
             WHERE a.address = ?1",
            [ALICE],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((billed_w, clipped), (12, 8));
    let attempts = b.sb.ok(&["billing-attempts", "--limit", "50"]);
    assert!(attempts.contains("probation"), "{attempts}");
    assert!(attempts.contains("simulated, not sent"), "{attempts}");
    // A simulated refusal is never a failed transaction.
    assert_eq!(
        b.sb.query_i64("SELECT COUNT(*) FROM billing_attempts WHERE status = 'failed'"),
        0
    );
    // Carol's zero fee was never even simulated: the views said it.
    let carol = b.sb.query_i64(&format!(
        "SELECT COUNT(*) FROM usage_windows u JOIN agents a ON a.id = u.agent_id
         WHERE a.address = '{CAROL}' AND u.kind = 'refused' AND u.outcome LIKE '%fee rounds to zero%'"
    ));
    assert_eq!(carol, 1);
}

#[test]
fn without_the_route_billing_works_as_before_and_pays_only_what_the_views_cannot_see() {
    for route in [SimulateRoute::Absent, SimulateRoute::Nonsense] {
        let (failed, billed, b) = planted_refusals(route);
        let s = b.fake.state();
        let errors: Vec<_> = s
            .chain
            .executed
            .iter()
            .filter_map(|x| x.error.clone())
            .collect();
        println!("{route:?}: {failed} failed transactions ({errors:?}), {billed} bills");
        // The zero fee never reaches the chain; the changed guard and probation do, once.
        assert!(
            !errors.iter().any(|m| m.contains("Fee rounds to zero")),
            "{errors:?}"
        );
        assert_eq!(failed, 2, "{errors:?}");
        // Probation learned from the failure: alice billed 12 windows after it.
        let alice = s
            .chain
            .bills
            .iter()
            .find(|(k, _)| k.0 == ALICE)
            .map(|(_, v)| v.windows);
        assert_eq!(alice, Some(12), "{route:?}");
    }
}

#[test]
fn a_cancelled_agent_is_not_renewed_and_one_that_registers_again_is() {
    let fake_epoch_ms = 2_000;
    let b = setup(1_500, fake_epoch_ms);
    let args = b.args("run");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--poll-seconds", "1"]);
    let child = b.sb.spawn(&args);
    let renewals = |b: &Bill| b.fake.state().windows.get(CAROL).map_or(0, Vec::len);
    assert!(wait_for(Duration::from_secs(20), || renewals(&b) >= 2));
    let cancel_epoch = {
        let mut s = b.fake.state();
        let current = s.contract_epoch();
        s.chain.cancel(CAROL, current).unwrap();
        current
    };
    let cancelled_at = renewals(&b);
    // Read at most once per epoch: renewals stop within the next epoch.
    let stopped = wait_for(Duration::from_secs(20), || {
        b.sb.query_i64(&format!(
            "SELECT COUNT(*) FROM agents WHERE address = '{CAROL}' AND escrow_status = 'cancelled'"
        )) == 1
    });
    assert!(stopped);
    let at_read = renewals(&b);
    std::thread::sleep(Duration::from_millis(3 * fake_epoch_ms as u64));
    assert_eq!(
        renewals(&b),
        at_read,
        "renewed after its cancellation was read"
    );
    println!(
        "cancelled: {} renewals between the cancellation and the read, none after",
        at_read - cancelled_at
    );
    let report = b.sb.ok(&["report", "--format", "json"]);
    assert!(report.contains("cancelled-on-escrow"), "{report}");
    let check = b.sb.run(&["check"]);
    assert!(
        check.stdout.contains("cancelled on the escrow"),
        "{}",
        check.stdout
    );
    // Carol registers again: served again from her new join epoch.
    let joined = {
        let mut s = b.fake.state();
        let current = s.contract_epoch();
        let bond = s.chain.min_bond;
        s.chain
            .register(CAROL, (500, 500, u128::MAX / 4), bond, current)
            .unwrap();
        current
    };
    assert!(wait_for(Duration::from_secs(20), || renewals(&b) > at_read));
    // ... and billed again: her windows from the new join epoch, once it has closed.
    let billed_again = wait_for(
        Duration::from_secs(25 + 2 * fake_epoch_ms as u64 / 1000),
        || {
            let s = b.fake.state();
            s.chain
                .bills
                .keys()
                .any(|(a, e)| a == CAROL && *e >= joined)
        },
    );
    assert!(
        billed_again,
        "no bill of carol's from epoch {joined} on: {}",
        b.sb.ok(&["billing-attempts", "--limit", "30"])
    );
    let (code, _, stderr) = terminate(child);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("registered on the escrow again"),
        "{stderr}"
    );
    assert_eq!(
        stderr
            .matches(&format!("{CAROL} cancelled on the escrow"))
            .count(),
        1,
        "said once: {stderr}"
    );
    // Nothing billed for her windows while she was away. The one transaction that may fail
    // is a bill of hers sent before she cancelled and executed after (no view or
    // simulation can see a change made after it): never one sent once it was read.
    let s = b.fake.state();
    let failed: Vec<_> = s
        .chain
        .executed
        .iter()
        .filter(|x| x.error.is_some())
        .collect();
    assert!(failed.len() <= 1, "{failed:?}");
    assert!(
        failed.iter().all(|x| x.agent == CAROL
            && x.error.as_deref() == Some("Agent cancelled")
            && x.epoch < cancel_epoch),
        "{failed:?}"
    );
}

#[test]
fn settlements_recorded_one_index_off_are_forgotten_and_read_again() {
    let b = setup(3_600_000, 3_000);
    b.pause_all();
    let e = b.current_epoch();
    b.usage(ALICE, e - 2, 2);
    b.tick_until_settled();
    // As the old numbering recorded it: index 1 (Billed) read as SettledOnTime, schema 3.
    {
        let conn = b.sb.conn();
        conn.execute_batch(
            "UPDATE usage_windows SET settlement = 'SettledOnTime', settlement_checked_epoch = 1;
             DROP INDEX agents_served;
             DROP INDEX usage_windows_epoch;
             DROP INDEX billing_attempts_epoch;
             DROP TRIGGER usage_windows_history_insert;
             DROP TRIGGER usage_windows_history_update;
             DROP TRIGGER billing_fee_history;
             DROP TRIGGER enforcement_fee_history;
             DROP TABLE epoch_history;
             DROP TABLE epoch_history_stale;
             DROP TABLE operator_sessions;
             DROP TABLE owner_withdrawals;
             ALTER TABLE usage_windows DROP COLUMN due_atto;
             ALTER TABLE usage_windows DROP COLUMN paid_at_cancel;
             ALTER TABLE agents DROP COLUMN escrow_status;
             ALTER TABLE agents DROP COLUMN escrow_joined_epoch;
             ALTER TABLE agents DROP COLUMN escrow_checked_epoch;
             ALTER TABLE agents DROP COLUMN serve_cancelled;
             ALTER TABLE agents DROP COLUMN escrow_probation;
             DROP TABLE enforcements;
             DROP TABLE api_tokens;
             DROP TABLE used_messages;
             ALTER TABLE agents DROP COLUMN remove_requested_ms;
             DROP TABLE alerts;
             DROP TABLE notify_outbox;
             ALTER TABLE billing_attempts DROP COLUMN gas_limit;
             ALTER TABLE billing_attempts DROP COLUMN fee_atto;
             ALTER TABLE billing_attempts DROP COLUMN gas_used;
             DROP TABLE unprofitable;
             ALTER TABLE usage_windows DROP COLUMN late_windows;
             ALTER TABLE usage_windows DROP COLUMN standby_clip;
             ALTER TABLE agents DROP COLUMN debt_hold_ms;
             ALTER TABLE agents DROP COLUMN debt_hold_reason;
             ALTER TABLE agents DROP COLUMN debt_released_ms;
             ALTER TABLE agents DROP COLUMN intake_confirm_ms;
             ALTER TABLE agents DROP COLUMN operator_hold_ms;
             ALTER TABLE agents DROP COLUMN escrow_checked_ms;
             PRAGMA user_version = 3;",
        )
        .unwrap();
    }
    let before = b.sb.ok(&["receivables", "--format", "json"]);
    assert!(before.contains("\"unknown\""), "{before}");
    assert_eq!(b.sb.query_i64("PRAGMA user_version"), 10);
    let after = receivables(&b);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["state"], "Billed");
    println!("migration: 1 settlement recorded one off forgotten, re-read as Billed");
}

#[test]
fn the_fake_contract_refuses_in_the_documented_order() {
    let mut c = common::chain::Chain::default();
    c.register(ALICE, (500, 10, u128::MAX), c.min_bond + c.setup_fee, 100)
        .unwrap();
    let a = &c.agents[ALICE];
    assert_eq!(
        (
            a.status,
            a.credit_score,
            a.joined_epoch,
            a.last_billed_epoch
        ),
        (2, 420, 100, 99)
    );
    let info = c.query(&serde_json::json!({"funcName": "getConfig", "args": []}).to_string());
    assert!(info.1.contains("returnData"));
    // Billing order is checked before "already billed": a second bill gets the order's.
    c.put_bill(ALICE, 100, 3);
    let s = c.settle(ALICE, 100, 1, 101);
    assert!(s.is_ok());
    assert_eq!(
        c.state_of(ALICE, 100),
        BILLED,
        "a partial payment leaves it Billed"
    );
    assert!(c.settle(BOB, 100, 1, 101).is_err());
}

#[test]
fn a_non_payer_is_enforced_once_per_epoch_then_not_renewed_until_it_tops_up() {
    let b = setup(3_000, 3_000);
    {
        // Alice's bond covers one bill of one window; her bills are one window each.
        let mut s = b.fake.state();
        let one_window = s.chain.window_reward * 500 / 10_000;
        let a = s.chain.agents.get_mut(ALICE).unwrap();
        a.max_windows = 1;
        a.bond = one_window;
    }
    let args = b.args("run");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--poll-seconds", "1", "--enforce-after-grace"]);
    let child = b.sb.spawn(&args);
    let renewals = |b: &Bill| b.fake.state().windows.get(ALICE).map_or(0, Vec::len);
    let held = wait_for(Duration::from_secs(90), || {
        b.sb.query_i64(&format!(
            "SELECT COUNT(*) FROM agents WHERE address = '{ALICE}' AND debt_hold_ms IS NOT NULL"
        )) == 1
    });
    if !held {
        let (_, _, log) = terminate(child);
        panic!("alice was never held: {log}");
    }
    let at_hold = renewals(&b);
    let report = b.sb.ok(&["report", "--format", "json"]);
    let check = b.sb.run(&["check"]);
    std::thread::sleep(Duration::from_millis(9_000));
    let while_held = renewals(&b) - at_hold;
    // She tops up her bond with a second register: renewed again.
    {
        let mut s = b.fake.state();
        let current = s.contract_epoch();
        let bond = 10 * s.chain.min_bond;
        s.chain
            .register(ALICE, (500, 1, u128::MAX / 4), bond, current)
            .unwrap();
    }
    let resumed = wait_for(Duration::from_secs(20), || {
        renewals(&b) > at_hold + while_held
    });
    let (code, _, log) = terminate(child);
    assert_eq!(code, 0, "{log}");
    let calls = b.fake.state().chain.enforce_calls.clone();
    let mut once: HashMap<(String, u64), usize> = HashMap::new();
    for c in calls
        .iter()
        .filter(|c| c.error.is_none() && c.agent == ALICE)
    {
        *once.entry((c.agent.clone(), c.epoch)).or_default() += 1;
    }
    let states: Vec<u8> = chain_bills(&b)
        .iter()
        .filter(|((a, _), _)| a == ALICE)
        .map(|(_, v)| v.0)
        .collect();
    let delinquent = states.iter().filter(|&&s| s == DELINQUENT).count();
    let unenforced = {
        let s = b.fake.state();
        let current = s.contract_epoch();
        let enforced_at_hold = b.sb.query_i64(&format!(
            "SELECT COUNT(*) FROM enforcements e JOIN agents a ON a.id = e.agent_id
             WHERE a.address = '{ALICE}' AND e.status = 'done'"
        ));
        let overdue = s
            .chain
            .bills
            .iter()
            .filter(|((a, _), bill)| a == ALICE && bill.deadline < current)
            .count();
        (overdue as i64 - enforced_at_hold, overdue)
    };
    println!(
        "non-payer: {} of alice's epochs enforced (each once: {}), {delinquent} Delinquent; overdue bills left unenforced at the end: {} of {} (the newest just past their deadline); renewals while held: {while_held}",
        once.len(),
        once.values().all(|&n| n == 1),
        unenforced.0,
        unenforced.1
    );
    assert!(once.values().all(|&n| n == 1), "{calls:?}");
    assert!(states.contains(&4), "first Slashed: {states:?}");
    assert!(delinquent >= 2, "{states:?}");
    assert_eq!(while_held, 0, "renewed while held for its debt");
    assert!(report.contains("held-for-debt"), "{report}");
    assert!(
        check.stdout.contains("enforced epochs unpaid"),
        "{}",
        check.stdout
    );
    assert!(resumed, "not renewed after the top-up: {log}");
    assert!(log.contains("healthy on the escrow again"), "{log}");
}
