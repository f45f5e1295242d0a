//! Every bill pays for itself: the fake charges the spec's fee rule (move gas at the full
//! price, execution gas at the modifier, a failure or a limit above twice the use pays the
//! whole limit), and the tool sizes gas, records what each transaction cost, holds what
//! would cost more than it brings in, and says what billing earns.

use std::time::Duration;

use serde_json::Value;

use crate::common;
use common::bill::{setup, Bill, ALICE, CAROL};
use common::chain::{CostRoute, BOB};
use common::*;

const CLAW: u128 = 1_000_000_000_000_000_000;
/// The price every public Claws example uses.
const EXAMPLE_PRICE: &str = "20000000000000";

/// A chain with the spec's numbers: MultiversX's minimum price and gas rule, the deployed
/// escrow's window reward (1 CLAW) and backbill limit (2 epochs), `execution` gas a call.
fn spec_chain(epoch_ms: i64, execution: u64) -> Bill {
    let b = setup(3_600_000, epoch_ms);
    b.pause_all();
    let mut s = b.fake.state();
    s.chain.min_gas_price = 1_000_000_000;
    s.chain.window_reward = CLAW;
    s.chain.max_backbill_epochs = 2;
    s.chain.bill_gas = execution;
    s.chain.enforce_gas = execution;
    drop(s);
    b
}

fn set_fee_bps(b: &Bill, agent: &str, bps: u64) {
    b.fake.state().chain.agents.get_mut(agent).unwrap().fee_bps = bps;
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn attempts(b: &Bill) -> Vec<Value> {
    let out =
        b.sb.ok(&["billing-attempts", "--limit", "100", "--format", "json"]);
    json(&out).as_array().unwrap().clone()
}

/// Ticks until every settled transaction's fee is read from its receipt.
fn fees_recorded(b: &Bill) -> bool {
    wait_for(Duration::from_secs(30), || {
        b.tick();
        attempts(b).iter().all(|a| !a["fee_atto"].is_null())
    })
}

/// The least fee a call with `data_len` bytes of data and `execution` gas can pay.
fn least_fee(b: &Bill, data_len: usize, execution: u64, price: u128) -> u128 {
    let s = b.fake.state();
    let moved = u128::from(s.chain.min_gas_limit + s.chain.gas_per_data_byte * data_len as u64);
    moved * price + u128::from(execution) * price * s.chain.modifier_num / s.chain.modifier_den
}

fn data_len(attempt: &Value) -> usize {
    // billEpoch@<64 hex>@<epoch hex>@<windows hex>
    let epoch = attempt["epoch"].as_u64().unwrap();
    let windows = attempt["windows"].as_u64().unwrap();
    let hex_len = |n: u64| {
        if n == 0 {
            0
        } else {
            2 * (64 - n.leading_zeros() as usize).div_ceil(8)
        }
    };
    "billEpoch@".len() + 64 + 1 + hex_len(epoch) + 1 + hex_len(windows)
}

#[test]
fn a_bill_pays_the_least_fee_and_its_cost_is_recorded_to_the_atto() {
    let b = spec_chain(3_000, 3_000_000);
    let e = b.current_epoch();
    b.usage(ALICE, e - 1, 48);
    b.usage(BOB, e - 1, 24);
    b.tick_until_settled();
    assert!(fees_recorded(&b), "{:?}", attempts(&b));
    let rows = attempts(&b);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let chain_fees: Vec<u128> = b.fake.state().chain.fees_paid.clone();
    let mut sum = 0u128;
    for a in &rows {
        let fee: u128 = a["fee_atto"].as_str().unwrap().parse().unwrap();
        let least = least_fee(&b, data_len(a), 3_000_000, 1_000_000_000);
        println!(
            "bill of {} windows: gas limit {}, used {}, fee {fee} atto = {:.3} x the least",
            a["windows"],
            a["gas_limit"],
            a["gas_used"],
            fee as f64 / least as f64
        );
        assert_eq!(fee, least, "auto gas pays the least fee: {a}");
        assert!(a["gas_used"].as_u64().unwrap() > 0);
        sum += fee;
    }
    assert_eq!(
        sum,
        chain_fees.iter().sum::<u128>(),
        "what the chain charged, to the atto"
    );
    // earnings: charged, fees and net as the chain has them.
    let earned = json(&b.sb.ok(&["earnings", "--format", "json"]));
    let total = &earned["total"];
    let charged: u128 = (48 + 24) * CLAW * 500 / 10_000;
    assert_eq!(total["charged_atto"], charged.to_string());
    assert_eq!(total["fees_atto"], sum.to_string());
    assert_eq!(total["net_atto"], (charged - sum).to_string());
    assert_eq!(total["bills"], 2);
    assert_eq!(total["windows"], 72);
    assert_eq!(
        total["outstanding_atto"],
        charged.to_string(),
        "nothing paid yet"
    );
    assert_eq!(earned["agents"].as_array().unwrap().len(), 2);
    // The Prometheus textfile has the totals too (milli-CLAW).
    let prom = b.sb.dir.path().join("agency.prom");
    b.sb.run(&["check", "--prometheus", prom.to_str().unwrap()]);
    let text = std::fs::read_to_string(&prom).unwrap();
    let milli = charged / 1_000_000_000_000_000;
    assert!(
        text.contains(&format!(
            "stream_agency_earnings_milliclaw{{kind=\"charged\"}} {milli}"
        )),
        "{text}"
    );
    assert!(
        text.contains("stream_agency_earnings_milliclaw{kind=\"fees\"}"),
        "{text}"
    );
}

#[test]
fn a_bill_that_costs_more_than_it_brings_is_held_then_lost_and_sent_only_at_a_loss() {
    let b = spec_chain(4_000, 3_000_000);
    let price = ["--billing-gas-price", EXAMPLE_PRICE];
    set_fee_bps(&b, ALICE, 100);
    set_fee_bps(&b, BOB, 5_000);
    set_fee_bps(&b, CAROL, 500);
    let e = b.current_epoch();
    b.usage(ALICE, e - 1, 2); // 0.02 CLAW against a fee of about 4 CLAW
    b.usage(BOB, e - 1, 48); // 24 CLAW
    b.usage(CAROL, e - 1, 24); // 1.2 CLAW
    let mut said = 0;
    let sent = wait_for(Duration::from_secs(30), || {
        let r = b.tick_with(&price);
        said += r
            .stderr
            .matches("held as unprofitable and weighed again")
            .count();
        b.fake.state().chain.bills.len() == 1
    });
    assert!(sent);
    for _ in 0..3 {
        let r = b.tick_with(&price);
        said += r
            .stderr
            .matches("held as unprofitable and weighed again")
            .count();
    }
    assert_eq!(said, 2, "said once per held bill");
    let s = b.fake.state();
    assert!(s
        .chain
        .bills
        .contains_key(&(BOB.to_string(), (e - 1) as u64)));
    assert_eq!(s.chain.executed.len(), 1, "{:?}", s.chain.executed);
    drop(s);
    let check = b.sb.run(&["check"]);
    assert_eq!(check.code, 4, "{}", check.stdout);
    let named = format!("{}{}", check.stdout, check.stderr);
    assert!(named.contains(ALICE) && named.contains(CAROL), "{named}");
    assert!(named.contains("unprofitable"), "{named}");
    // report: the fee at which each agent's bills would pay (none does for alice's 2).
    let report = json(&b.sb.ok(&["report", "--format", "json"]));
    let even = |who: &str| {
        report
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["address"] == who)
            .unwrap()["break_even_bps"]
            .clone()
    };
    let carol = even(CAROL).as_u64().expect("carol's break-even");
    assert!(carol > 500 && carol <= 10_000, "{carol}");
    assert!(even(ALICE).is_null(), "{}", even(ALICE));
    // enroll says when a fee can never pay for a bill, with the break-even fee.
    let (_, _, sig) = wallets().into_iter().find(|w| w.1 == CAROL).unwrap();
    let r = b.sb.run(&[
        "enroll",
        "--address",
        CAROL,
        "--signature",
        &sig,
        "--fee-bps",
        "1",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("held as unprofitable") && r.stderr.contains("break-even"),
        "{}",
        r.stderr
    );
    b.sb.ok(&[
        "enroll",
        "--address",
        CAROL,
        "--signature",
        &sig,
        "--fee-bps",
        "500",
    ]);
    b.sb.ok(&["pause", "--address", CAROL]);
    // Too old for the escrow (2 epochs back): lost, with the reason.
    let lost = wait_for(Duration::from_secs(40), || {
        b.tick_with(&price);
        b.sb.query_i64("SELECT COUNT(*) FROM usage_windows WHERE kind = 'lost'") == 2
    });
    assert!(lost, "{}", b.sb.ok(&["billing-attempts"]));
    let reasons = b.sb.ok(&["billing-attempts", "--limit", "20"]);
    assert!(reasons.contains("held as unprofitable"), "{reasons}");
    assert_eq!(b.sb.run(&["check"]).code, 0, "nothing held any more");
    // --bill-at-a-loss sends the same bill.
    let e = b.current_epoch();
    b.usage(CAROL, e - 1, 24);
    let mut at_a_loss = price.to_vec();
    at_a_loss.push("--bill-at-a-loss");
    b.tick_until_settled_with(&at_a_loss);
    assert!(b
        .fake
        .state()
        .chain
        .bills
        .contains_key(&(CAROL.to_string(), (e - 1) as u64)));
}

#[test]
fn gas_follows_the_contract_with_or_without_an_estimate() {
    // A contract that needs 30 million gas: the estimate follows it, no out-of-gas failure.
    let b = spec_chain(3_000, 30_000_000);
    set_fee_bps(&b, ALICE, 5_000);
    let e = b.current_epoch();
    b.usage(ALICE, e - 1, 48);
    b.tick_until_settled();
    let s = b.fake.state();
    assert_eq!(s.chain.bills.len(), 1);
    assert!(
        s.chain.executed.iter().all(|x| x.error.is_none()),
        "{:?}",
        s.chain.executed
    );
    drop(s);
    // Without /transaction/cost (404, or an answer of another shape): the first bill from a
    // safe limit, the next from what it used.
    for route in [CostRoute::Absent, CostRoute::Nonsense] {
        let b = spec_chain(3_000, 3_000_000);
        b.fake.state().chain.cost_route = route;
        let e = b.current_epoch();
        b.usage(ALICE, e - 2, 48);
        b.tick_until_settled();
        assert!(fees_recorded(&b), "{:?}", attempts(&b));
        b.usage(ALICE, b.current_epoch() - 1, 48);
        b.tick_until_settled();
        let rows = attempts(&b);
        let limits: Vec<u64> = rows
            .iter()
            .map(|a| a["gas_limit"].as_u64().unwrap())
            .collect();
        println!("{route:?} /transaction/cost: gas limits {limits:?} (newest first)");
        assert_eq!(limits.len(), 2);
        assert_eq!(limits[1], 25_000_000, "the safe value first");
        assert!(
            limits[0] < limits[1] && limits[0] > 3_000_000,
            "then less, never below the need: {limits:?}"
        );
        assert!(b
            .fake
            .state()
            .chain
            .executed
            .iter()
            .all(|x| x.error.is_none()));
    }
}

#[test]
fn the_price_is_the_network_minimum_unless_fixed() {
    let b = spec_chain(3_000, 3_000_000);
    let e = b.current_epoch();
    b.usage(ALICE, e - 1, 48);
    b.tick_until_settled();
    let sent = b.fake.state().chain.sends.clone();
    assert!(!sent.is_empty());
    for body in &sent {
        assert_eq!(json(body)["gasPrice"], 1_000_000_000u64, "{body}");
    }
    let r = b.tick_with(&["--billing-gas-limit", "often"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("auto or a positive whole number"),
        "{}",
        r.stderr
    );
}

#[test]
fn reconcile_leaves_a_bill_in_flight_to_the_tick() {
    let b = setup(3_600_000, 3_000);
    b.pause_all();
    let e = b.current_epoch();
    b.usage(ALICE, e - 1, 4);
    // Sent by one tick and executed on chain, not yet confirmed locally.
    let sent = wait_for(Duration::from_secs(20), || {
        b.tick();
        b.sb.query_i64("SELECT COUNT(*) FROM billing_attempts WHERE status = 'pending'") == 1
    });
    assert!(sent);
    assert!(wait_for(Duration::from_secs(10), || {
        let mut s = b.fake.state();
        s.advance();
        !s.chain.bills.is_empty()
    }));
    for apply in [false, true] {
        let mut args = vec![];
        if apply {
            args.push("--apply");
        }
        let r = b.reconcile(&args);
        assert_eq!(r.code, 0, "not a difference: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("in flight"), "{}", r.stderr);
    }
    assert_eq!(
        b.sb.query_i64("SELECT COUNT(*) FROM billing_attempts WHERE status = 'pending'"),
        1,
        "--apply left it to the tick"
    );
    b.tick_until_settled();
    let r = b.reconcile(&[]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(b.fake.state().chain.executed.len(), 1, "billed once");
}

#[test]
fn a_simulated_refusal_the_spec_does_not_know_costs_no_transaction() {
    let b = setup(3_600_000, 3_000);
    b.pause_all();
    {
        let mut s = b.fake.state();
        s.chain.simulate = common::chain::SimulateRoute::Served;
        s.chain
            .new_refusals
            .insert(CAROL.to_string(), "Agent under review".to_string());
    }
    let e = b.current_epoch();
    b.usage(ALICE, e - 1, 4);
    b.usage(CAROL, e - 1, 4);
    b.tick_until_settled();
    let s = b.fake.state();
    assert_eq!(
        s.chain.executed.len(),
        1,
        "only alice's bill sent: {:?}",
        s.chain.executed
    );
    assert!(s
        .chain
        .simulated_failures
        .iter()
        .any(|m| m == "Agent under review"));
    drop(s);
    let held = b.sb.query_i64(&format!(
        "SELECT COUNT(*) FROM usage_windows u JOIN agents a ON a.id = u.agent_id
         WHERE a.address = '{CAROL}' AND u.kind = 'held' AND u.outcome LIKE '%Agent under review%'"
    ));
    assert_eq!(held, 1, "{}", b.sb.ok(&["billing-attempts"]));
    assert_eq!(
        b.sb.query_i64("SELECT COUNT(*) FROM billing_attempts WHERE status = 'failed'"),
        0,
        "no failed transaction"
    );
    assert_eq!(
        b.sb.run(&["billing", "retry"]).code,
        0,
        "billing was not stopped"
    );
}
