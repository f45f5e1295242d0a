//! The fake chain behind the gateway: the operator's account and nonce rules, a transaction
//! pool that executes a little later, and the StreamAgencyEscrow contract as the spec's
//! escrow section describes it when run in the VM: registration (Suspended, credit 420,
//! last billed = joined - 1), the framework's refusals, billEpoch's refusals in the
//! contract's order (billing order before "already billed", "Fee rounds to zero"),
//! settlement on time, late, in part or overpaid, enforceEpoch to Slashed or Delinquent,
//! cancellation with debt paid from the bond, probation as deployed or fixed (a switch),
//! every view, and `/transaction/simulate` (a switch). Its record of executed calls is the
//! truth the billing tests check against.

use std::collections::{BTreeMap, HashMap, VecDeque};

use base64::Engine as _;
use serde_json::{json, Value};
use sha3::{Digest, Keccak256};
use stream_agency::crypto::keys::{self, Address};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub const CONTRACT: &str = "claw1qqqqqqqqqqqqqpgqnlglzrzv598wqgx6zlhjr6rky2k694jtkgcqdfq0ge";
pub const BOB: &str = "claw1spyavw0956vq68xj8y4tenjpq2wd5a9p2c6j8gsz7ztyrnpxrruqfa0a4z";

/// The contract's `EpochState` indexes (Unbilled = 0 is never stored).
pub const BILLED: u8 = 1;
pub const SETTLED_ON_TIME: u8 = 2;
pub const SETTLED_LATE: u8 = 3;
pub const SLASHED: u8 = 4;
pub const DELINQUENT: u8 = 5;
/// Agent status: Active=0, Paused=1, Suspended=2, Cancelled=3.
pub const SUSPENDED: u8 = 2;
pub const CANCELLED: u8 = 3;

#[derive(Clone, Debug)]
pub struct EscrowAgent {
    pub fee_bps: u64,
    pub max_windows: u64,
    pub max_charge: u128,
    pub credit_score: u64,
    pub status: u8,
    pub used_promo: bool,
    pub joined_epoch: u64,
    pub last_billed_epoch: u64,
    pub bond: u128,
    pub outstanding: u128,
    /// Bills settled on time (probation ends at 3, where probation applies).
    pub on_time: u32,
    pub billed_windows: u64,
    pub fees_billed: u128,
}

impl Default for EscrowAgent {
    /// An agent that registered in epoch 1 (so it may be billed from epoch 1 on), as
    /// `register` leaves it: Suspended, credit 420, last billed = joined - 1.
    fn default() -> Self {
        EscrowAgent {
            fee_bps: 500,
            max_windows: 1_000,
            max_charge: u128::MAX / 4,
            credit_score: 420,
            status: SUSPENDED,
            used_promo: false,
            joined_epoch: 1,
            last_billed_epoch: 0,
            bond: 100_000_000_000_000_000_000,
            outstanding: 0,
            on_time: 0,
            billed_windows: 0,
            fees_billed: 0,
        }
    }
}

/// One billed epoch on the contract.
#[derive(Clone, Debug)]
pub struct Bill {
    pub windows: u64,
    /// What is still due.
    pub due: u128,
    pub deadline: u64,
    pub state: u8,
    /// Its first enforcement marked the agent (credit, probation, status): never twice.
    pub marked: bool,
}

/// A planned misbehaviour of the next `/transaction/send`.
#[derive(Clone, Debug)]
pub enum SendFault {
    /// Accept the transaction, then close without answering.
    LostReply,
    /// Refuse with HTTP 400 and this error.
    Refuse(String),
    /// Accept the transaction, then wait this long before answering.
    SlowReply(u64),
}

/// How the gateway answers `/transaction/simulate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimulateRoute {
    /// 404, as a gateway without the route.
    Absent,
    /// 200 with an answer of another shape.
    Nonsense,
    /// Runs the transaction against the current state, commits nothing.
    Served,
}

#[derive(Clone, Debug)]
pub struct Executed {
    pub agent: String,
    pub epoch: u64,
    pub nonce: u64,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
struct TxRecord {
    nonce: u64,
    data: String,
    value: String,
    sender: String,
    gas_limit: u64,
    gas_price: u64,
    ready_at: i64,
    status: &'static str,
    error: Option<String>,
    /// Once executed: (fee paid, gas used, fee at the whole limit).
    paid: Option<(u128, u64, u128)>,
}

/// How the gateway answers `/transaction/cost`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CostRoute {
    Absent,
    Nonsense,
    Served,
}

pub struct Chain {
    pub chain_id: String,
    pub min_gas_price: u64,
    pub owner: String,
    pub operator: String,
    pub window_reward: u128,
    pub setup_fee: u128,
    pub min_bond: u128,
    pub promo_free_slots: u64,
    pub promo_used: u64,
    pub grace_epochs: u64,
    pub max_backbill_epochs: u64,
    pub hard_max: u64,
    pub claimable_owner: u128,
    pub agents: HashMap<String, EscrowAgent>,
    /// Windows billed per (agent, epoch).
    pub billed: HashMap<(String, u64), u64>,
    pub bills: HashMap<(String, u64), Bill>,
    /// Every `billEpoch` executed, in order.
    pub executed: Vec<Executed>,
    /// Every `enforceEpoch` executed, in order.
    pub enforce_calls: Vec<Executed>,
    pub nonce: u64,
    pool: BTreeMap<u64, String>,
    txs: HashMap<String, TxRecord>,
    pub exec_delay_ms: i64,
    /// The contract's shard sees an epoch change this much later than the metachain.
    pub shard_lag_ms: i64,
    pub send_faults: VecDeque<SendFault>,
    /// Every body received by `/transaction/send`, in order.
    pub sends: Vec<String>,
    pub refused: Vec<String>,
    /// Operator and contract on different shards: the shallow status of a failed contract
    /// call says `success`; only the results (process-status, signalError) tell.
    pub cross_shard: bool,
    /// Gas a `billEpoch` needs: below it the call fails out of gas (the whole limit spent).
    pub bill_gas: u64,
    /// Execution gas an `enforceEpoch` needs.
    pub enforce_gas: u64,
    /// The fee rule (spec, "Fees"): move gas at the full price, execution gas at the price
    /// times `modifier_num / modifier_den`, a failure pays its whole limit, a success the
    /// gas it used unless it was given more than twice that.
    pub min_gas_limit: u64,
    pub gas_per_data_byte: u64,
    pub modifier_num: u128,
    pub modifier_den: u128,
    pub cost_route: CostRoute,
    /// The operator's balance, debited by every fee paid.
    pub operator_balance: u128,
    /// `withdrawOwner` calls executed: (paid to, amount).
    pub owner_withdrawals: Vec<(String, u128)>,
    /// Every fee the chain charged, in order.
    pub fees_paid: Vec<u128>,
    /// A contract that refuses an agent's bills with a message the spec does not know
    /// (an upgraded contract's new guard).
    pub new_refusals: HashMap<String, String>,
    /// Guards changed between the views and the transaction: the contract enforces this
    /// `max_windows_per_epoch` while `getAgentInfo` still shows the old one.
    pub enforced_max_windows: Option<u64>,
    /// The same, for one agent: its guard changed just before its bill.
    pub enforced_guards: HashMap<String, u64>,
    /// The owner fixed probation: bills above 12 windows of an agent with fewer than 3
    /// on-time settlements fail (as deployed, probation never applies).
    pub probation_fixed: bool,
    pub simulate: SimulateRoute,
    /// Planted `getEpochState` answers (an index the spec does not know, another shape).
    pub odd_states: HashMap<(String, u64), Vec<Vec<u8>>>,
    /// Simulations answered, and the failures among them.
    pub simulations: usize,
    pub simulated_failures: Vec<String>,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            chain_id: "C".into(),
            // Low enough that the small test bills pay for themselves; fee tests set the
            // spec's numbers.
            min_gas_price: 1_000_000,
            owner: BOB.into(),
            operator: BOB.into(),
            window_reward: 1_000_000_000_000_000,
            setup_fee: 1_000_000_000_000_000_000,
            min_bond: 10_000_000_000_000_000_000,
            promo_free_slots: 5,
            promo_used: 0,
            grace_epochs: 2,
            max_backbill_epochs: 30,
            hard_max: 500,
            claimable_owner: 0,
            agents: HashMap::new(),
            billed: HashMap::new(),
            bills: HashMap::new(),
            executed: Vec::new(),
            enforce_calls: Vec::new(),
            nonce: 0,
            pool: BTreeMap::new(),
            txs: HashMap::new(),
            exec_delay_ms: 150,
            shard_lag_ms: 0,
            send_faults: VecDeque::new(),
            sends: Vec::new(),
            refused: Vec::new(),
            cross_shard: false,
            bill_gas: 6_000_000,
            enforce_gas: 6_000_000,
            min_gas_limit: 50_000,
            gas_per_data_byte: 1_500,
            modifier_num: 1,
            modifier_den: 100,
            cost_route: CostRoute::Served,
            operator_balance: 1_000_000_000_000_000_000_000,
            owner_withdrawals: Vec::new(),
            fees_paid: Vec::new(),
            new_refusals: HashMap::new(),
            enforced_max_windows: None,
            enforced_guards: HashMap::new(),
            probation_fixed: false,
            simulate: SimulateRoute::Absent,
            odd_states: HashMap::new(),
            simulations: 0,
            simulated_failures: Vec::new(),
        }
    }
}

fn ok(data: Value) -> (u16, String) {
    (
        200,
        json!({"data": data, "error": "", "code": "successful"}).to_string(),
    )
}

fn err(status: u16, error: &str) -> (u16, String) {
    (
        status,
        json!({"data": null, "error": error, "code": "bad_request"}).to_string(),
    )
}

fn min_bytes(n: u128) -> Vec<u8> {
    let b = n.to_be_bytes();
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[first..].to_vec()
}

/// A u64 argument as the framework decodes it.
fn arg_u64(hex_arg: &str, name: &str) -> Result<u64, String> {
    let bytes =
        hex::decode(hex_arg).map_err(|_| format!("argument decode error ({name}): not hex"))?;
    if bytes.len() > 8 {
        return Err("argument out of range".into());
    }
    Ok(bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b)))
}

/// An address argument as the framework decodes it.
fn arg_address(hex_arg: &str) -> Result<String, String> {
    let bytes: [u8; 32] = hex::decode(hex_arg)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("argument decode error (agent): input of the wrong length")?;
    Ok(Address::from_bytes(bytes).to_bech32())
}

/// A view argument, leniently (views answer nothing for nonsense).
fn view_address(args: &[String]) -> String {
    arg_address(args.first().map_or("", String::as_str)).unwrap_or_default()
}

fn view_epoch(args: &[String]) -> u64 {
    arg_u64(args.get(1).map_or("", String::as_str), "epoch").unwrap_or(0)
}

impl Chain {
    /// Executes the pool's transactions that are ready, in nonce order. `epoch_at` maps a
    /// time to the metachain epoch.
    pub fn advance(&mut self, now: i64, epoch_at: &dyn Fn(i64) -> i64) {
        while let Some(hash) = self.pool.get(&self.nonce).cloned() {
            let tx = self.txs.get(&hash).unwrap().clone();
            if tx.ready_at > now {
                break;
            }
            self.pool.remove(&self.nonce);
            self.nonce += 1;
            let contract_epoch = epoch_at(now - self.shard_lag_ms) as u64;
            let outcome = self.execute(&tx, contract_epoch);
            let paid = self.charge(&tx, outcome.is_ok());
            self.operator_balance = self.operator_balance.saturating_sub(paid.0);
            self.fees_paid.push(paid.0);
            let record = self.txs.get_mut(&hash).unwrap();
            record.status = if outcome.is_ok() { "success" } else { "fail" };
            record.error = outcome.err();
            record.paid = Some(paid);
        }
    }

    /// Runs a contract call: the framework's checks, then the endpoint.
    fn execute(&mut self, tx: &TxRecord, current: u64) -> Result<(), String> {
        let parts: Vec<&str> = tx.data.split('@').collect();
        let need = self.execution_gas(&tx.data);
        let result = self.framework(tx, &parts).and_then(|()| {
            if tx.gas_limit < self.move_gas(&tx.data) + need {
                return Err("not enough gas".to_string());
            }
            match parts[0] {
                "billEpoch" => self.bill_call(&tx.sender, &parts, current),
                "withdrawOwner" => self.withdraw_call(&tx.sender, &parts),
                _ => self.enforce_call(&parts, current),
            }
        });
        let (agent, epoch) = (
            parts
                .get(1)
                .and_then(|a| arg_address(a).ok())
                .unwrap_or_default(),
            parts
                .get(2)
                .and_then(|e| arg_u64(e, "epoch").ok())
                .unwrap_or(0),
        );
        let record = Executed {
            agent,
            epoch,
            nonce: tx.nonce,
            error: result.clone().err(),
        };
        match parts[0] {
            "enforceEpoch" => self.enforce_calls.push(record),
            "withdrawOwner" => {}
            _ => self.executed.push(record),
        }
        result
    }

    /// What the framework refuses before the endpoint runs.
    fn framework(&self, tx: &TxRecord, parts: &[&str]) -> Result<(), String> {
        let arity = match parts[0] {
            "billEpoch" => 3,
            "enforceEpoch" => 2,
            // withdrawOwner(amount: BigUint, to: OptionalValue<ManagedAddress>)
            "withdrawOwner" => parts.len().clamp(2, 3) - 1,
            _ => return Err("invalid function (not found)".into()),
        };
        if !tx.value.is_empty() && tx.value != "0" {
            return Err("function does not accept EGLD payment".into());
        }
        if parts[0] == "withdrawOwner" {
            if parts.len() != arity + 1 {
                return Err("wrong number of arguments".into());
            }
            hex::decode(parts[1]).map_err(|_| "argument decode error (amount): not hex")?;
            if let Some(to) = parts.get(2) {
                arg_address(to)?;
            }
            return Ok(());
        }
        if parts.len() != arity + 1 {
            return Err("wrong number of arguments".into());
        }
        arg_address(parts[1])?;
        for (i, p) in parts[2..].iter().enumerate() {
            arg_u64(p, if i == 0 { "epoch" } else { "windows" })?;
        }
        Ok(())
    }

    /// `withdrawOwner`: only the owner, at most the claimable.
    fn withdraw_call(&mut self, sender: &str, parts: &[&str]) -> Result<(), String> {
        if sender != self.owner {
            return Err("Only owner".into());
        }
        let bytes = hex::decode(parts[1]).map_err(|_| "argument decode error (amount)")?;
        if bytes.len() > 16 {
            return Err("Not enough claimable".into());
        }
        let amount = bytes.iter().fold(0u128, |n, &b| (n << 8) | u128::from(b));
        if amount == 0 || amount > self.claimable_owner {
            return Err("Not enough claimable".into());
        }
        self.claimable_owner -= amount;
        let to = match parts.get(2) {
            Some(to) => arg_address(to)?,
            None => sender.to_string(),
        };
        self.owner_withdrawals.push((to, amount));
        Ok(())
    }

    fn bill_call(&mut self, sender: &str, parts: &[&str], current: u64) -> Result<(), String> {
        if let Some(m) = parts
            .get(1)
            .and_then(|a| arg_address(a).ok())
            .and_then(|a| self.new_refusals.get(&a))
        {
            return Err(m.clone());
        }
        let agent = arg_address(parts[1])?;
        let epoch = arg_u64(parts[2], "epoch")?;
        let windows = arg_u64(parts[3], "windows")?;
        let due = self.check_bill(sender, &agent, epoch, windows, current)?;
        self.record_bill(&agent, epoch, windows, due);
        Ok(())
    }

    /// What a successful `billEpoch` stores.
    fn record_bill(&mut self, agent: &str, epoch: u64, windows: u64, due: u128) {
        let a = self.agents.entry(agent.to_string()).or_default();
        a.last_billed_epoch = a.last_billed_epoch.max(epoch);
        a.outstanding += due;
        a.billed_windows += windows;
        a.fees_billed += due;
        self.billed.insert((agent.to_string(), epoch), windows);
        let bill = Bill {
            windows,
            due,
            deadline: epoch + self.grace_epochs,
            state: BILLED,
            marked: false,
        };
        self.bills.insert((agent.to_string(), epoch), bill);
    }

    /// `billEpoch`'s checks in the contract's order; the due on success.
    fn check_bill(
        &self,
        sender: &str,
        agent: &str,
        epoch: u64,
        windows: u64,
        current: u64,
    ) -> Result<u128, String> {
        let fail = |m: &str| Err(m.to_string());
        if sender != self.operator {
            return fail("Only operator");
        }
        let Some(a) = self.agents.get(agent) else {
            return fail("Agent not enrolled");
        };
        if windows == 0 {
            return fail("Windows must be positive");
        }
        if epoch >= current {
            return fail("Epoch not closed yet");
        }
        if current - epoch > self.max_backbill_epochs {
            return fail("Epoch too old to bill");
        }
        if a.status == CANCELLED {
            return fail("Agent cancelled");
        }
        if epoch < a.joined_epoch {
            return fail("Cannot bill before join epoch");
        }
        // This is also what a second bill of a billed epoch gets.
        if epoch <= a.last_billed_epoch {
            return fail("Epoch already passed in billing order");
        }
        let guard = self.enforced_guards.get(agent).copied();
        if windows > guard.or(self.enforced_max_windows).unwrap_or(a.max_windows) {
            return fail("Exceeds max windows per epoch");
        }
        if self.probation_fixed && a.on_time < 3 && windows > 12 {
            return fail("Exceeds probation windows cap");
        }
        if windows > self.hard_max {
            return fail("Exceeds global windows hard cap");
        }
        if self.bills.contains_key(&(agent.to_string(), epoch)) {
            return fail("Epoch already billed"); // unreachable, as in the contract
        }
        let due = self.window_reward * u128::from(windows) * u128::from(a.fee_bps) / 10_000;
        if due == 0 {
            return fail("Fee rounds to zero");
        }
        if due > a.max_charge {
            return fail("Exceeds agent max charge per epoch");
        }
        Ok(due)
    }

    /// `enforceEpoch(agent, epoch)`: anyone, after the deadline; takes the due from the bond.
    fn enforce_call(&mut self, parts: &[&str], current: u64) -> Result<(), String> {
        let agent = arg_address(parts[1])?;
        let epoch = arg_u64(parts[2], "epoch")?;
        let key = (agent.clone(), epoch);
        let Some(bill) = self.bills.get(&key).filter(|b| b.due > 0).cloned() else {
            return Err("Epoch not billed".into());
        };
        if current <= bill.deadline {
            return Err("Still in grace period".into());
        }
        let a = self.agents.get_mut(&agent).ok_or("Agent not enrolled")?;
        let taken = bill.due.min(a.bond);
        a.bond -= taken;
        a.outstanding = a.outstanding.saturating_sub(taken);
        let b = self.bills.get_mut(&key).unwrap();
        b.due -= taken;
        b.state = if b.due == 0 { SLASHED } else { DELINQUENT };
        // The first enforcement marks the agent, even with nothing taken; later ones of the
        // same epoch only take what the bond has again.
        if !b.marked {
            b.marked = true;
            let penalty = if b.due == 0 { 60 } else { 90 };
            a.credit_score = a.credit_score.saturating_sub(penalty);
            a.on_time = 0;
            let can_be_active =
                a.credit_score >= 500 && a.bond >= self.min_bond && a.outstanding == 0;
            if a.status != CANCELLED && !can_be_active {
                a.status = SUSPENDED;
            }
        }
        self.claimable_owner += taken;
        Ok(())
    }

    /// `register(metadata, fee_bps, max_windows, max_charge)` by the agent with `payment`.
    pub fn register(
        &mut self,
        agent: &str,
        (fee_bps, max_windows, max_charge): (u64, u64, u128),
        payment: u128,
        current: u64,
    ) -> Result<(), String> {
        if !(1..=10_000).contains(&fee_bps) || max_windows == 0 || max_windows > self.hard_max {
            return Err("Invalid billing guards".into());
        }
        if max_charge == 0 {
            return Err("Max charge must be positive".into());
        }
        if let Some(a) = self.agents.get_mut(agent) {
            if payment == 0 {
                return Err("Payment required".into());
            }
            if a.status == CANCELLED {
                if payment < self.min_bond || a.outstanding > 0 {
                    return Err("Bond below minimum".into());
                }
                a.status = SUSPENDED;
                a.joined_epoch = current;
                a.last_billed_epoch = current.saturating_sub(1);
                a.bond = payment;
            } else {
                a.bond += payment;
            }
            (a.fee_bps, a.max_windows, a.max_charge) = (fee_bps, max_windows, max_charge);
            return Ok(());
        }
        let promo = self.promo_used < self.promo_free_slots;
        let fee = if promo { 0 } else { self.setup_fee };
        if payment < fee + self.min_bond {
            return Err("Insufficient payment".into());
        }
        self.promo_used += u64::from(promo);
        self.claimable_owner += fee;
        let a = EscrowAgent {
            fee_bps,
            max_windows,
            max_charge,
            used_promo: promo,
            joined_epoch: current,
            last_billed_epoch: current.saturating_sub(1),
            bond: payment - fee,
            ..EscrowAgent::default()
        };
        self.agents.insert(agent.to_string(), a);
        Ok(())
    }

    /// `settleEpoch(epoch)` by the agent with `payment`: the excess goes to its bond.
    pub fn settle(
        &mut self,
        agent: &str,
        epoch: u64,
        payment: u128,
        current: u64,
    ) -> Result<(), String> {
        let a = self.agents.get_mut(agent).ok_or("Agent not enrolled")?;
        if a.status == CANCELLED {
            return Err("Agent cancelled".into());
        }
        let b = self
            .bills
            .get_mut(&(agent.to_string(), epoch))
            .filter(|b| b.due > 0)
            .ok_or("Epoch not billed")?;
        let paid = payment.min(b.due);
        b.due -= paid;
        a.outstanding = a.outstanding.saturating_sub(paid);
        a.bond += payment - paid;
        if b.due == 0 {
            if current <= b.deadline {
                b.state = SETTLED_ON_TIME;
                a.on_time += 1;
                a.credit_score = (a.credit_score + 5).min(1000);
            } else {
                b.state = SETTLED_LATE;
                a.credit_score = a.credit_score.saturating_sub(15);
            }
        }
        Ok(())
    }

    /// `cancelAndWithdraw()`: the outstanding total is taken from the bond (the epochs keep
    /// state Billed and their due), 5 % of the rest is kept within 14 epochs of joining.
    pub fn cancel(&mut self, agent: &str, current: u64) -> Result<(), String> {
        let a = self.agents.get_mut(agent).ok_or("Agent not enrolled")?;
        let taken = a.outstanding.min(a.bond);
        a.bond -= taken;
        a.outstanding -= taken;
        let kept = if current < a.joined_epoch + 14 {
            a.bond / 20
        } else {
            0
        };
        self.claimable_owner += taken + kept;
        a.bond = 0;
        a.status = CANCELLED;
        Ok(())
    }

    /// A bill made earlier (by another tool, or before a backup): as `billEpoch` leaves it.
    pub fn put_bill(&mut self, agent: &str, epoch: u64, windows: u64) {
        let fee = self.agents.entry(agent.to_string()).or_default().fee_bps;
        let due = self.window_reward * u128::from(windows) * u128::from(fee) / 10_000;
        self.record_bill(agent, epoch, windows, due);
    }

    /// The state index of a bill (0: never billed).
    pub fn state_of(&self, agent: &str, epoch: u64) -> u8 {
        self.bills
            .get(&(agent.to_string(), epoch))
            .map_or(0, |b| b.state)
    }

    /// Decodes a signed transaction body and checks its signature; `(signing bytes, tx)`.
    fn signed(&self, body: &str) -> Result<(String, Value), &'static str> {
        let tx = serde_json::from_str::<Value>(body).map_err(|_| "invalid json")?;
        let s = |k: &str| tx[k].as_str().unwrap_or("").to_string();
        let n = |k: &str| tx[k].as_u64().unwrap_or(0);
        let data_b64 = s("data");
        let mut signing = format!(
            r#"{{"nonce":{},"value":"{}","receiver":"{}","sender":"{}","gasPrice":{},"gasLimit":{}"#,
            n("nonce"),
            s("value"),
            s("receiver"),
            s("sender"),
            n("gasPrice"),
            n("gasLimit")
        );
        if !data_b64.is_empty() {
            signing.push_str(&format!(r#","data":"{data_b64}""#));
        }
        signing.push_str(&format!(
            r#","chainID":"{}","version":{}}}"#,
            s("chainID"),
            n("version")
        ));
        let sig_ok = match (Address::parse(&s("sender")), hex::decode(s("signature"))) {
            (Ok(sender), Ok(sig)) if sig.len() == 64 => {
                let key = ed25519_dalek::VerifyingKey::from_bytes(sender.as_bytes()).unwrap();
                let sig = ed25519_dalek::Signature::from_bytes(&sig.try_into().unwrap());
                key.verify_strict(signing.as_bytes(), &sig).is_ok()
            }
            _ => false,
        };
        if !sig_ok {
            return Err("invalid signature");
        }
        if s("chainID") != self.chain_id {
            return Err("invalid chain ID");
        }
        if n("gasPrice") < self.min_gas_price {
            return Err("insufficient gas price");
        }
        Ok((signing, tx))
    }

    fn record_of(tx: &Value, ready_at: i64) -> TxRecord {
        let s = |k: &str| tx[k].as_str().unwrap_or("").to_string();
        let data = B64.decode(s("data")).unwrap_or_default();
        TxRecord {
            nonce: tx["nonce"].as_u64().unwrap_or(0),
            data: String::from_utf8(data).unwrap_or_default(),
            value: s("value"),
            sender: s("sender"),
            gas_limit: tx["gasLimit"].as_u64().unwrap_or(0),
            gas_price: tx["gasPrice"].as_u64().unwrap_or(0),
            ready_at,
            status: "pending",
            error: None,
            paid: None,
        }
    }

    /// `/transaction/send`: signature, chain id, gas price and nonce rules.
    pub fn send(&mut self, body: &str, now: i64) -> (u16, String) {
        self.sends.push(body.to_string());
        let (signing, tx) = match self.signed(body) {
            Ok(v) => v,
            Err(m) => {
                self.refused.push(m.to_string());
                return err(400, m);
            }
        };
        let refuse = |this: &mut Chain, m: &str| {
            this.refused.push(m.to_string());
            err(400, m)
        };
        let signature = tx["signature"].as_str().unwrap_or("");
        let hash = hex::encode(Keccak256::digest(
            format!("{signing}{signature}").as_bytes(),
        ));
        let nonce = tx["nonce"].as_u64().unwrap_or(0);
        if let Some(known) = self.txs.get(&hash) {
            if known.status == "pending" {
                return ok(json!({"txHash": hash}));
            }
        }
        if nonce < self.nonce {
            return refuse(self, "transaction generation failed: lowerNonceInTx: true");
        }
        if nonce > self.nonce + 100 {
            return refuse(
                self,
                "transaction generation failed: veryHighNonceInTx: true",
            );
        }
        if self.pool.contains_key(&nonce) {
            return refuse(self, "transaction with the same nonce already in pool");
        }
        let record = Chain::record_of(&tx, now + self.exec_delay_ms);
        self.txs.insert(hash.clone(), record);
        self.pool.insert(nonce, hash.clone());
        ok(json!({"txHash": hash}))
    }

    /// `/transaction/simulate`: the call run against the current state, nothing committed.
    pub fn simulate(&mut self, body: &str, current: u64) -> (u16, String) {
        match self.simulate {
            SimulateRoute::Absent => return err(404, "no route"),
            SimulateRoute::Nonsense => return ok(json!({"whatever": [1, 2, 3]})),
            SimulateRoute::Served => {}
        }
        let (_, tx) = match self.signed(body) {
            Ok(v) => v,
            Err(m) => return err(400, m),
        };
        if tx["nonce"].as_u64().unwrap_or(0) < self.nonce {
            return err(400, "transaction generation failed: lowerNonceInTx: true");
        }
        self.simulations += 1;
        let record = Chain::record_of(&tx, 0);
        // Run on a copy of the contract's state: nothing is committed.
        let mut scratch = self.scratch();
        let outcome = scratch.execute(&record, current);
        let result = match &outcome {
            Ok(()) => json!({"status": "success", "scResults": {}, "hash": "00"}),
            Err(m) => {
                self.simulated_failures.push(m.clone());
                json!({"status": "fail", "failReason": m, "hash": "00"})
            }
        };
        let result = if self.cross_shard {
            json!({"senderShard": {"status": "success"}, "receiverShard": result})
        } else {
            result
        };
        ok(json!({ "result": result }))
    }

    /// The move part of a transaction's gas.
    pub fn move_gas(&self, data: &str) -> u64 {
        self.min_gas_limit + self.gas_per_data_byte * data.len() as u64
    }

    /// The execution gas a call needs.
    pub fn execution_gas(&self, data: &str) -> u64 {
        if data.starts_with("enforceEpoch") {
            self.enforce_gas
        } else {
            self.bill_gas
        }
    }

    /// What the chain charges a transaction: (fee, gas used, fee at the whole limit).
    fn charge(&self, tx: &TxRecord, succeeded: bool) -> (u128, u64, u128) {
        let moved = self.move_gas(&tx.data).min(tx.gas_limit);
        let given = tx.gas_limit - moved;
        let used = self.execution_gas(&tx.data);
        let charged = if succeeded && given <= 2 * used {
            used.min(given)
        } else {
            given
        };
        let price = u128::from(tx.gas_price);
        let fee_of = |exec: u64| {
            u128::from(moved) * price
                + u128::from(exec) * price * self.modifier_num / self.modifier_den
        };
        (fee_of(charged), moved + charged, fee_of(given))
    }

    /// `/transaction/cost`: the gas the transaction needs, or why it would fail.
    pub fn cost(&mut self, body: &str, current: u64) -> (u16, String) {
        match self.cost_route {
            CostRoute::Absent => return err(404, "no route"),
            CostRoute::Nonsense => return ok(json!({"txGasUnits": "lots"})),
            CostRoute::Served => {}
        }
        let Ok(tx) = serde_json::from_str::<Value>(body) else {
            return err(400, "invalid json");
        };
        let mut record = Chain::record_of(&tx, 0);
        record.gas_limit = u64::MAX / 4;
        let mut scratch = self.scratch();
        match scratch.execute(&record, current) {
            Ok(()) => ok(
                json!({"txGasUnits": self.move_gas(&record.data) + self.execution_gas(&record.data), "returnMessage": ""}),
            ),
            Err(m) => ok(json!({"txGasUnits": 0, "returnMessage": m})),
        }
    }

    /// A copy of the contract's state for a simulation.
    fn scratch(&self) -> Chain {
        Chain {
            chain_id: self.chain_id.clone(),
            operator: self.operator.clone(),
            window_reward: self.window_reward,
            grace_epochs: self.grace_epochs,
            max_backbill_epochs: self.max_backbill_epochs,
            hard_max: self.hard_max,
            agents: self.agents.clone(),
            bills: self.bills.clone(),
            bill_gas: self.bill_gas,
            enforce_gas: self.enforce_gas,
            new_refusals: self.new_refusals.clone(),
            min_gas_limit: self.min_gas_limit,
            gas_per_data_byte: self.gas_per_data_byte,
            enforced_max_windows: self.enforced_max_windows,
            enforced_guards: self.enforced_guards.clone(),
            probation_fixed: self.probation_fixed,
            owner: self.owner.clone(),
            claimable_owner: self.claimable_owner,
            ..Chain::default()
        }
    }

    /// The shallow status: in cross-shard mode a failed contract call says `success`.
    pub fn status(&self, hash: &str) -> (u16, String) {
        match self.txs.get(hash) {
            Some(t) if self.cross_shard && t.status == "fail" => ok(json!({"status": "success"})),
            Some(t) => ok(json!({"status": t.status})),
            None => err(404, "transaction not found"),
        }
    }

    /// The status of the call itself, from its results.
    pub fn process_status(&self, hash: &str) -> (u16, String) {
        match self.txs.get(hash) {
            Some(t) => {
                ok(json!({"status": t.status, "reason": t.error.clone().unwrap_or_default()}))
            }
            None => err(404, "transaction not found"),
        }
    }

    pub fn with_results(&self, hash: &str) -> (u16, String) {
        let Some(t) = self.txs.get(hash) else {
            return err(404, "transaction not found");
        };
        let events: Vec<Value> = t
            .error
            .iter()
            .map(|m| json!({"identifier": "signalError", "topics": [B64.encode(t.sender.as_bytes()), B64.encode(m.as_bytes())]}))
            .collect();
        let shallow = if self.cross_shard && t.status == "fail" {
            "success"
        } else {
            t.status
        };
        let mut transaction = json!({"status": shallow, "logs": {"events": events},
                                     "gasLimit": t.gas_limit, "gasPrice": t.gas_price});
        if let Some((fee, used, initially)) = t.paid {
            transaction["fee"] = json!(fee.to_string());
            transaction["gasUsed"] = json!(used);
            transaction["initiallyPaidFee"] = json!(initially.to_string());
        }
        ok(json!({ "transaction": transaction }))
    }

    pub fn account(&self, address: &str) -> (u16, String) {
        let nonce = if address == BOB { self.nonce } else { 0 };
        ok(
            json!({"account": {"address": address, "nonce": nonce, "balance": self.operator_balance.to_string()}}),
        )
    }

    /// The nested encoding of `getAgentInfo`.
    fn agent_info(a: &EscrowAgent) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(a.fee_bps.to_be_bytes());
        b.extend(a.max_windows.to_be_bytes());
        let charge = min_bytes(a.max_charge);
        b.extend((charge.len() as u32).to_be_bytes());
        b.extend(charge);
        b.extend(a.credit_score.to_be_bytes());
        b.push(a.status);
        b.push(u8::from(a.used_promo));
        b.extend(a.joined_epoch.to_be_bytes());
        b.extend(a.last_billed_epoch.to_be_bytes());
        b.extend(4u32.to_be_bytes());
        b.extend(b"meta");
        b
    }

    fn config_items(&self) -> Vec<Vec<u8>> {
        let address = |a: &str| Address::parse(a).unwrap().as_bytes().to_vec();
        vec![
            address(&self.owner),
            address(&self.operator),
            min_bytes(self.window_reward),
            min_bytes(self.setup_fee),
            min_bytes(self.min_bond),
            min_bytes(u128::from(self.promo_free_slots)),
            min_bytes(u128::from(self.grace_epochs)),
            min_bytes(u128::from(self.max_backbill_epochs)),
            min_bytes(u128::from(self.hard_max)),
        ]
    }

    /// The views' return data, item by item.
    fn view(&self, function: &str, args: &[String]) -> Option<Vec<Vec<u8>>> {
        let agent = || self.agents.get(&view_address(args));
        let bill = || self.bills.get(&(view_address(args), view_epoch(args)));
        let n = |v: u64| min_bytes(u128::from(v));
        Some(match function {
            "getConfig" => self.config_items(),
            "getAgentInfo" => agent().map(Chain::agent_info).into_iter().collect(),
            "getEpochState" => match self.odd_states.get(&(view_address(args), view_epoch(args))) {
                Some(odd) => odd.clone(),
                None => bill().map(|b| vec![b.state]).into_iter().collect(),
            },
            "getEpochDebt" => vec![min_bytes(bill().map_or(0, |b| b.due))],
            "getAgentFinancials" => {
                let a = agent();
                vec![
                    min_bytes(a.map_or(0, |a| a.bond)),
                    min_bytes(a.map_or(0, |a| a.outstanding)),
                ]
            }
            "getClaimableOwner" => vec![min_bytes(self.claimable_owner)],
            "getPromoUsage" => vec![n(self.promo_used)],
            "getActiveAgentCount" => vec![n(self.active_agents())],
            "getServiceStats" => self.service_stats(),
            "getAgentServiceStats" => {
                let a = agent().cloned().unwrap_or_default();
                vec![
                    n(a.billed_windows),
                    min_bytes(a.fees_billed),
                    min_bytes(a.bond),
                ]
            }
            _ => return None,
        })
    }

    fn active_agents(&self) -> u64 {
        self.agents.values().filter(|a| a.status == 0).count() as u64
    }

    fn service_stats(&self) -> Vec<Vec<u8>> {
        let n = |v: u64| min_bytes(u128::from(v));
        let windows: u64 = self.agents.values().map(|a| a.billed_windows).sum();
        let fees: u128 = self.agents.values().map(|a| a.fees_billed).sum();
        let protected: u128 = self.agents.values().map(|a| a.bond).sum();
        vec![
            n(self.agents.len() as u64),
            n(self.active_agents()),
            n(self.promo_used),
            n(self.promo_free_slots),
            n(windows),
            min_bytes(fees),
            min_bytes(protected),
        ]
    }

    pub fn query(&self, body: &str) -> (u16, String) {
        let q: Value = serde_json::from_str(body).unwrap_or_default();
        let args: Vec<String> = q["args"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|a| a.as_str().unwrap_or("").to_string())
            .collect();
        let Some(items) = self.view(q["funcName"].as_str().unwrap_or(""), &args) else {
            return err(400, "function not found");
        };
        let data: Vec<String> = items.iter().map(|i| B64.encode(i)).collect();
        ok(json!({"data": {"returnData": data, "returnCode": "ok", "returnMessage": ""}}))
    }
}

/// Whether a stream signature of `address` is valid (used by the stream service).
pub fn valid_stream_signature(address: &str, sig: &str) -> bool {
    match (Address::parse(address), keys::parse_signature_hex(sig)) {
        (Ok(a), Ok(s)) => keys::verify_message(&a, b"stream", &s),
        _ => false,
    }
}
