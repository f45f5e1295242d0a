//! What each transaction costs: its gas sized (the gateway's estimate with a margin, else
//! what the last call of its function used), its fee expected before it is signed and
//! weighed against what it brings in, and its real fee read from its receipt afterwards.

use super::pass::Biller;
use crate::chain::fees::{FeeRule, SAFE_GAS_LIMIT};
use crate::chain::gateway::Cost;
use crate::chain::tx::{call_of, Transaction};
use crate::config::Gas;
use crate::error::Result;
use crate::store::Store;

/// A transaction's gas, sized before signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sizing {
    pub gas_limit: u64,
    pub gas_price: u64,
    /// The fee it is expected to pay (`None`: the chain's fee rule is unknown).
    pub expected_fee: Option<u128>,
}

/// `meta` key of the execution gas the last successful call of `function` used.
fn learned_key(function: &str) -> String {
    format!("execution_gas:{function}")
}

/// Learns a function's execution gas from a successful call that used `gas_used`. A call
/// charged its whole limit (no refund: it was given more than twice its use) says only
/// that it used less than half of what it was given: the next limit gives it three
/// quarters, never less than it needs, until a refund tells the real figure.
fn learn(store: &Store, rule: FeeRule, signed_tx: &str, gas_used: u64) -> Result<()> {
    let Some((data, limit)) = call_of(signed_tx) else {
        return Ok(());
    };
    let moved = rule.move_gas(data.len());
    let execution = if gas_used >= limit {
        limit.saturating_sub(moved) / 2
    } else {
        gas_used.saturating_sub(moved)
    };
    let function = data.split('@').next().unwrap_or("");
    store.meta_set(&learned_key(function), &execution.max(1).to_string())
}

impl Biller {
    /// A contract call of the operator's to the escrow, with its gas.
    pub(super) fn call(&self, nonce: u64, data: String, sizing: Sizing) -> Transaction {
        Transaction {
            nonce,
            receiver: self.cfg.escrow,
            sender: self.cfg.operator.address(),
            gas_price: sizing.gas_price,
            gas_limit: sizing.gas_limit,
            data,
            chain_id: self.cfg.chain.clone(),
        }
    }

    /// The gas of a call with `data` (`function` is its first part) at this pass's price.
    pub(super) fn size(&self, store: &Store, data: &str, nonce: u64) -> Result<Sizing> {
        let function = data.split('@').next().unwrap_or("");
        let rule = self.fee_rule.get();
        let execution = match self.estimate(data, nonce, rule) {
            Some(exec) => Some(exec),
            None => store
                .meta_get_i64(&learned_key(function))?
                .and_then(|v| u64::try_from(v).ok()),
        };
        let gas_limit = match (self.cfg.gas_limit, rule, execution) {
            (Gas::Fixed(limit), _, _) => limit,
            (Gas::Auto, Some(rule), Some(exec)) => rule.limit_for(data.len(), exec),
            (Gas::Auto, None, Some(exec)) => exec.saturating_mul(2),
            (Gas::Auto, _, None) => SAFE_GAS_LIMIT,
        };
        let gas_price = self.gas_price.get();
        let expected_fee = rule.map(|rule| {
            // Unknown execution gas: the whole limit, as a failure would pay.
            let exec = execution.unwrap_or(gas_limit);
            rule.expected(data.len(), gas_limit, gas_price, exec)
        });
        if let (Some(fee), "billEpoch") = (expected_fee, function) {
            store.set_expected_bill_fee(fee)?;
        }
        Ok(Sizing {
            gas_limit,
            gas_price,
            expected_fee,
        })
    }

    /// The execution gas `/transaction/cost` says the call needs; `None` where the gateway
    /// does not serve it (404, nonsense, time-out) or says the call would fail.
    fn estimate(&self, data: &str, nonce: u64, rule: Option<FeeRule>) -> Option<u64> {
        if self.cost_absent.get() {
            return None;
        }
        let sizing = Sizing {
            gas_limit: SAFE_GAS_LIMIT,
            gas_price: self.gas_price.get(),
            expected_fee: None,
        };
        let tx = self.call(nonce, data.to_string(), sizing);
        match self.gateway.cost(&tx.unsigned()) {
            Ok(Cost::Units(units)) => {
                let moved = rule.map_or(0, |r| r.move_gas(data.len()));
                Some(units.saturating_sub(moved).max(1))
            }
            Ok(Cost::Fails(message)) => {
                log::debug!("/transaction/cost says the call would fail: {message}");
                None
            }
            Err(e) => {
                log::info!("no gas estimate from the gateway ({e}): sized from the last call");
                self.cost_absent.set(true);
                None
            }
        }
    }

    /// Reads the fee and gas used of every transaction whose outcome is known and whose
    /// cost is not recorded yet, a bounded number per pass; learns each function's
    /// execution gas from the successful ones.
    pub(super) fn record_fees(&self, store: &Store, limit: usize) -> Result<usize> {
        let mut recorded = 0;
        for tx in store.fees_unknown(limit, crate::net::clock::now_ms())? {
            let receipt = match self.gateway.receipt(&tx.hash) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    log::debug!("fee of tx {} unknown this pass: {e}", tx.hash);
                    break;
                }
            };
            store.record_fee(&tx, receipt.fee_atto, receipt.gas_used)?;
            recorded += 1;
            if let (true, Some(rule)) = (tx.succeeded, self.fee_rule.get()) {
                learn(store, rule, &tx.signed_tx, receipt.gas_used)?;
            }
        }
        Ok(recorded)
    }
}
