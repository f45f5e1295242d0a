//! The owner's cash-out (`withdraw`): `withdrawOwner` on the escrow, signed with the
//! owner's key. Checked (the key is the escrow's owner, the amount within its claimable),
//! simulated, its fee shown, written ahead and sent once, then confirmed by the contract's
//! view (`getClaimableOwner` went down by the amount). A withdrawal still pending from an
//! earlier run is resolved first, and nothing new is sent in that run.

use std::time::{Duration, Instant};

use super::pass::{Biller, Preflight};
use crate::chain::fees::claw;
use crate::chain::gateway::{Sent, Simulated};
use crate::chain::tx::withdraw_owner_data;
use crate::crypto::keys::Address;
use crate::error::{Error, Result};
use crate::net::clock::now_ms;
use crate::store::withdrawals::PendingWithdrawal;
use crate::store::Store;

/// What to withdraw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    All,
    Atto(u128),
}

/// A withdrawal confirmed: the claimable before and after, the fee paid.
#[derive(Debug)]
pub struct Withdrawn {
    pub amount: u128,
    pub hash: String,
    pub fee: Option<u128>,
    pub before: Option<u128>,
    pub after: u128,
    /// It was sent by an earlier run (resolved now; nothing new was sent).
    pub earlier: bool,
}

fn unavailable(e: impl std::fmt::Display) -> Error {
    Error::runtime(format!(
        "the gateway did not answer ({e}): nothing was sent, run withdraw again"
    ))
}

/// How long the outcome of a sent withdrawal is waited for.
const CONFIRM_WAIT: Duration = Duration::from_secs(120);

impl Biller {
    pub fn withdraw_owner(
        &mut self,
        store: &Store,
        amount: Amount,
        to: Option<Address>,
        say: &mut dyn FnMut(String),
    ) -> Result<Withdrawn> {
        let owner = self.cfg.operator.address();
        if let Some(pending) = store.pending_withdrawal(&owner.to_bech32())? {
            return self.resolve_earlier(store, pending, say);
        }
        match self.check_network() {
            Some(Preflight::Blocked(why)) => return Err(Error::usage(why)),
            Some(Preflight::Unavailable(why)) => return Err(unavailable(why)),
            Some(Preflight::Ready(_)) | None => {}
        }
        let (before, amount) = self.checked_amount(amount)?;
        let data = withdraw_owner_data(amount, to.as_ref());
        let nonce = self
            .gateway
            .account_nonce(&owner.to_bech32())
            .map_err(unavailable)?;
        let sizing = self.size(store, &data, nonce)?;
        let signed = self.call(nonce, data, sizing).sign(&self.cfg.operator);
        if let Simulated::Fail(why) = self.gateway.simulate(&signed) {
            return Err(Error::usage(format!(
                "the escrow would refuse this withdrawal ({why}): nothing was sent"
            )));
        }
        let fee = match sizing.expected_fee {
            Some(fee) => format!("fee about {} CLAW (", claw(fee)),
            None => "(the gateway gives no fee rule; ".into(),
        };
        say(format!(
            "withdrawing {} CLAW of {} CLAW claimable; {fee}gas limit {} at price {})",
            claw(amount),
            claw(before),
            sizing.gas_limit,
            sizing.gas_price
        ));
        let to_text = to.map(|t| t.to_bech32());
        let id = store.record_withdrawal(
            &owner.to_bech32(),
            (amount, to_text.as_deref()),
            (nonce, &signed),
            now_ms(),
        )?;
        let pending = PendingWithdrawal {
            id,
            amount,
            signed_tx: signed,
            tx_hash: None,
            created_ms: now_ms(),
        };
        let mut done = self.send_and_confirm(store, pending)?;
        done.before = Some(before);
        Ok(done)
    }

    /// The key is the escrow's owner, and the amount within its claimable: (claimable,
    /// amount).
    fn checked_amount(&self, amount: Amount) -> Result<(u128, u128)> {
        let owner = self.cfg.operator.address();
        let config = self.escrow().config().map_err(unavailable)?;
        if config.owner != owner {
            return Err(Error::usage(format!(
                "--owner-pem holds {owner}, which is not the escrow's owner ({}): give the owner's key",
                config.owner
            )));
        }
        let before = self.escrow().claimable_owner().map_err(unavailable)?;
        let amount = match amount {
            Amount::All => before,
            Amount::Atto(a) if a > before => {
                return Err(Error::usage(format!(
                    "--amount {} CLAW is more than the owner's claimable, {} CLAW: ask for less, or --all",
                    claw(a),
                    claw(before)
                )))
            }
            Amount::Atto(a) => a,
        };
        if amount == 0 {
            return Err(Error::usage(
                "nothing to withdraw: the owner's claimable is 0",
            ));
        }
        Ok((before, amount))
    }

    /// An earlier run's withdrawal: sent again byte for byte if it has no hash yet (the
    /// chain takes a transaction once), then confirmed.
    fn resolve_earlier(
        &self,
        store: &Store,
        pending: PendingWithdrawal,
        say: &mut dyn FnMut(String),
    ) -> Result<Withdrawn> {
        say(format!(
            "a withdrawal of {} CLAW written at {} is not resolved yet: resolving it first (nothing new is sent in this run)",
            claw(pending.amount),
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(pending.created_ms.max(0) as u64))
        ));
        let mut done = self.send_and_confirm(store, pending)?;
        done.earlier = true;
        Ok(done)
    }

    fn send_and_confirm(&self, store: &Store, p: PendingWithdrawal) -> Result<Withdrawn> {
        let hash = match p.tx_hash.clone() {
            Some(hash) => hash,
            None => match self.gateway.send_transaction(&p.signed_tx) {
                Sent::Accepted(hash) => {
                    store.withdrawal_hash(p.id, &hash, now_ms())?;
                    hash
                }
                Sent::Refused(why) => {
                    store.finish_withdrawal(p.id, Err(&why), None, now_ms())?;
                    return Err(Error::runtime(format!(
                        "the gateway refused the withdrawal: {why}"
                    )));
                }
                Sent::NonceUsed(why) | Sent::Unknown(why) => {
                    return Err(Error::runtime(format!("the withdrawal's outcome is not known ({why}): run withdraw again to resolve it (it is never sent twice)")));
                }
            },
        };
        self.confirm_withdrawal(store, p, hash)
    }

    /// Waits for the call's own status, then reads the claimable (the contract's word).
    fn confirm_withdrawal(
        &self,
        store: &Store,
        p: PendingWithdrawal,
        hash: String,
    ) -> Result<Withdrawn> {
        let deadline = Instant::now() + CONFIRM_WAIT;
        let status = loop {
            match self.gateway.process_status(&hash) {
                Ok((s, reason)) if s == "success" || s == "fail" || s == "invalid" => {
                    break (s, reason)
                }
                _ if Instant::now() >= deadline => {
                    return Err(Error::runtime(format!("withdrawal {hash} is still pending after {} s: run withdraw again to resolve it (it is never sent twice)", CONFIRM_WAIT.as_secs())));
                }
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        };
        let fee = self
            .gateway
            .receipt(&hash)
            .ok()
            .flatten()
            .map(|r| r.fee_atto);
        if status.0 != "success" {
            let why = self
                .gateway
                .transaction_error(&hash)
                .ok()
                .flatten()
                .or(status.1)
                .unwrap_or_else(|| status.0.clone());
            store.finish_withdrawal(p.id, Err(&why), fee, now_ms())?;
            return Err(Error::runtime(format!(
                "the withdrawal {hash} failed on chain: {why}"
            )));
        }
        let after = self.escrow().claimable_owner().map_err(|e| {
            Error::runtime(format!(
                "withdrawal {hash} succeeded; the claimable could not be read to confirm it ({e})"
            ))
        })?;
        store.finish_withdrawal(p.id, Ok(()), fee, now_ms())?;
        Ok(Withdrawn {
            amount: p.amount,
            hash,
            fee,
            before: None,
            after,
            earlier: false,
        })
    }
}
