//! The fake chain behind the gateway: the operator's account and nonce rules, a transaction
//! pool that executes a little later, and the StreamAgencyEscrow contract's rules in the
//! spec's order. Its record of executed calls is the truth the billing tests check against.

use std::collections::{BTreeMap, HashMap, VecDeque};

use base64::Engine as _;
use serde_json::{json, Value};
use sha3::{Digest, Keccak256};
use stream_agency::keys::{self, Address};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub const CONTRACT: &str = "claw1qqqqqqqqqqqqqpgqnlglzrzv598wqgx6zlhjr6rky2k694jtkgcqdfq0ge";
pub const BOB: &str = "claw1spyavw0956vq68xj8y4tenjpq2wd5a9p2c6j8gsz7ztyrnpxrruqfa0a4z";

#[derive(Clone, Debug)]
pub struct EscrowAgent {
    pub fee_bps: u64,
    pub max_windows: u64,
    pub max_charge: u128,
    pub status: u8,
    pub joined_epoch: u64,
    pub last_billed_epoch: Option<u64>,
}

impl Default for EscrowAgent {
    fn default() -> Self {
        EscrowAgent {
            fee_bps: 500,
            max_windows: 1_000,
            max_charge: u128::MAX / 4,
            status: 0,
            joined_epoch: 0,
            last_billed_epoch: None,
        }
    }
}

/// A planned misbehaviour of the next `/transaction/send`.
#[derive(Clone, Debug)]
pub enum SendFault {
    /// Accept the transaction, then close without answering.
    LostReply,
    /// Refuse with HTTP 400 and this error.
    Refuse(String),
    /// Wait this long, then handle normally.
    Delay(u64),
    /// Accept the transaction, then wait this long before answering.
    SlowReply(u64),
}

#[derive(Clone, Debug)]
pub struct Executed {
    pub agent: String,
    pub epoch: u64,
    pub windows: u64,
    pub nonce: u64,
    pub error: Option<String>,
}

#[derive(Clone, Debug)]
struct TxRecord {
    nonce: u64,
    data: String,
    sender: String,
    gas_limit: u64,
    ready_at: i64,
    status: &'static str,
    error: Option<String>,
}

pub struct Chain {
    pub chain_id: String,
    pub min_gas_price: u64,
    pub operator: String,
    pub window_reward: u128,
    pub max_backbill_epochs: u64,
    pub hard_max: u64,
    pub agents: HashMap<String, EscrowAgent>,
    pub billed: HashMap<(String, u64), u64>,
    pub executed: Vec<Executed>,
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
    /// Guards changed between the views and the transaction: the contract enforces this
    /// `max_windows_per_epoch` while `getAgentInfo` still shows the old one.
    pub enforced_max_windows: Option<u64>,
    /// Settlement states set by a test: (agent, epoch) -> getEpochState index.
    pub settlements: HashMap<(String, u64), u8>,
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            chain_id: "C".into(),
            min_gas_price: 1_000_000_000,
            operator: BOB.into(),
            window_reward: 1_000_000_000_000_000,
            max_backbill_epochs: 30,
            hard_max: 500,
            agents: HashMap::new(),
            billed: HashMap::new(),
            executed: Vec::new(),
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
            enforced_max_windows: None,
            settlements: HashMap::new(),
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

fn arg_u64(hex_arg: &str) -> u64 {
    let bytes = hex::decode(hex_arg).unwrap_or_default();
    bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b))
}

fn arg_address(hex_arg: &str) -> String {
    let bytes: [u8; 32] = hex::decode(hex_arg)
        .ok()
        .and_then(|b| b.try_into().ok())
        .unwrap_or([0; 32]);
    Address::from_bytes(bytes).to_bech32()
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
            let outcome = self.bill_epoch(&tx, contract_epoch);
            let record = self.txs.get_mut(&hash).unwrap();
            record.status = if outcome.is_ok() { "success" } else { "fail" };
            record.error = outcome.err();
        }
    }

    /// `billEpoch`, failing with the contract's messages in the spec's order.
    fn bill_epoch(&mut self, tx: &TxRecord, current: u64) -> Result<(), String> {
        let parts: Vec<&str> = tx.data.split('@').collect();
        if parts.len() != 4 || parts[0] != "billEpoch" {
            return Err("invalid function".into());
        }
        let (agent, epoch, windows) = (arg_address(parts[1]), arg_u64(parts[2]), arg_u64(parts[3]));
        let result = if tx.gas_limit < self.bill_gas {
            Err("not enough gas".to_string())
        } else {
            self.check_bill(&tx.sender, &agent, epoch, windows, current)
        };
        if result.is_ok() {
            self.billed.insert((agent.clone(), epoch), windows);
            self.agents.get_mut(&agent).unwrap().last_billed_epoch = Some(epoch);
        }
        self.executed.push(Executed {
            agent,
            epoch,
            windows,
            nonce: tx.nonce,
            error: result.clone().err(),
        });
        result
    }

    fn check_bill(
        &self,
        sender: &str,
        agent: &str,
        epoch: u64,
        windows: u64,
        current: u64,
    ) -> Result<(), String> {
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
        if a.status == 3 {
            return fail("Agent cancelled");
        }
        if epoch < a.joined_epoch {
            return fail("Cannot bill before join epoch");
        }
        if a.last_billed_epoch.is_some_and(|l| epoch < l) {
            return fail("Epoch already passed in billing order");
        }
        if windows > self.enforced_max_windows.unwrap_or(a.max_windows) {
            return fail("Exceeds max windows per epoch");
        }
        if windows > self.hard_max {
            return fail("Exceeds global windows hard cap");
        }
        if self.billed.contains_key(&(agent.to_string(), epoch)) {
            return fail("Epoch already billed");
        }
        let due = self.window_reward * u128::from(windows) * u128::from(a.fee_bps) / 10_000;
        if due > a.max_charge {
            return fail("Exceeds agent max charge per epoch");
        }
        Ok(())
    }

    /// `/transaction/send`: signature, chain id, gas price and nonce rules.
    pub fn send(&mut self, body: &str, now: i64) -> (u16, String) {
        self.sends.push(body.to_string());
        let Ok(tx) = serde_json::from_str::<Value>(body) else {
            return err(400, "invalid json");
        };
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
        let refuse = |this: &mut Chain, m: &str| {
            this.refused.push(m.to_string());
            err(400, m)
        };
        if !sig_ok {
            return refuse(self, "invalid signature");
        }
        if s("chainID") != self.chain_id {
            return refuse(self, "invalid chain ID");
        }
        if n("gasPrice") < self.min_gas_price {
            return refuse(self, "insufficient gas price");
        }
        let hash = hex::encode(Keccak256::digest(
            format!("{signing}{}", s("signature")).as_bytes(),
        ));
        let nonce = n("nonce");
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
        let data = String::from_utf8(B64.decode(&data_b64).unwrap_or_default()).unwrap_or_default();
        self.txs.insert(
            hash.clone(),
            TxRecord {
                nonce,
                data,
                sender: s("sender"),
                gas_limit: n("gasLimit"),
                ready_at: now + self.exec_delay_ms,
                status: "pending",
                error: None,
            },
        );
        self.pool.insert(nonce, hash.clone());
        ok(json!({"txHash": hash}))
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
        ok(json!({"transaction": {"status": shallow, "logs": {"events": events}}}))
    }

    pub fn account(&self, address: &str) -> (u16, String) {
        let nonce = if address == BOB { self.nonce } else { 0 };
        ok(
            json!({"account": {"address": address, "nonce": nonce, "balance": "1000000000000000000000"}}),
        )
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
        let items: Vec<Vec<u8>> = match q["funcName"].as_str().unwrap_or("") {
            "getConfig" => {
                let operator = Address::parse(&self.operator).unwrap();
                vec![
                    vec![7; 32],
                    operator.as_bytes().to_vec(),
                    min_bytes(self.window_reward),
                    min_bytes(10),
                    min_bytes(100),
                    min_bytes(5),
                    min_bytes(2),
                    min_bytes(u128::from(self.max_backbill_epochs)),
                    min_bytes(u128::from(self.hard_max)),
                ]
            }
            "getAgentInfo" => match self
                .agents
                .get(&arg_address(args.first().map_or("", String::as_str)))
            {
                None => vec![],
                Some(a) => {
                    let mut b = Vec::new();
                    b.extend(a.fee_bps.to_be_bytes());
                    b.extend(a.max_windows.to_be_bytes());
                    let charge = min_bytes(a.max_charge);
                    b.extend((charge.len() as u32).to_be_bytes());
                    b.extend(charge);
                    b.extend(700u64.to_be_bytes());
                    b.push(a.status);
                    b.push(0);
                    b.extend(a.joined_epoch.to_be_bytes());
                    b.extend(a.last_billed_epoch.unwrap_or(0).to_be_bytes());
                    b.extend(4u32.to_be_bytes());
                    b.extend(b"meta");
                    vec![b]
                }
            },
            "getEpochState" => {
                let agent = arg_address(args.first().map_or("", String::as_str));
                let epoch = arg_u64(args.get(1).map_or("", String::as_str));
                let key = (agent, epoch);
                match (self.billed.contains_key(&key), self.settlements.get(&key)) {
                    (false, _) => vec![],
                    (true, None | Some(0)) => vec![vec![]],
                    (true, Some(&state)) => vec![vec![state]],
                }
            }
            _ => return err(400, "function not found"),
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
