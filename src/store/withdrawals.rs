//! The owner's withdrawals from the escrow (`withdraw`), written ahead of the send like a
//! bill, so a crash never sends one twice: a pending one is resolved before any new one.

use rusqlite::{params, OptionalExtension};

use super::Store;
use crate::error::Result;

/// A withdrawal written, whose outcome is not known yet.
#[derive(Debug, Clone)]
pub struct PendingWithdrawal {
    pub id: i64,
    pub amount: u128,
    pub signed_tx: String,
    pub tx_hash: Option<String>,
    pub created_ms: i64,
}

impl Store {
    pub fn pending_withdrawal(&self, owner: &str) -> Result<Option<PendingWithdrawal>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id, amount_atto, signed_tx, tx_hash, created_ms FROM owner_withdrawals
                 WHERE owner = ?1 AND status = 'pending' ORDER BY id LIMIT 1",
                [owner],
                |r| {
                    Ok(PendingWithdrawal {
                        id: r.get(0)?,
                        amount: r.get::<_, String>(1)?.parse().unwrap_or(0),
                        signed_tx: r.get(2)?,
                        tx_hash: r.get(3)?,
                        created_ms: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Written before the send; returns its id.
    pub fn record_withdrawal(
        &self,
        owner: &str,
        (amount, to): (u128, Option<&str>),
        (nonce, signed_tx): (u64, &str),
        now: i64,
    ) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO owner_withdrawals (owner, amount_atto, to_address, nonce, signed_tx, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
            params![owner, amount.to_string(), to, nonce as i64, signed_tx, now],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn withdrawal_hash(&self, id: i64, hash: &str, now: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE owner_withdrawals SET tx_hash = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, hash, now],
        )?;
        Ok(())
    }

    /// The outcome: `success` or `fail` (with why), and the fee paid when known.
    pub fn finish_withdrawal(
        &self,
        id: i64,
        outcome: std::result::Result<(), &str>,
        fee: Option<u128>,
        now: i64,
    ) -> Result<()> {
        let (status, reason) = match outcome {
            Ok(()) => ("success", None),
            Err(why) => ("fail", Some(why)),
        };
        self.conn.execute(
            "UPDATE owner_withdrawals SET status = ?2, reason = ?3, fee_atto = ?4, updated_ms = ?5 WHERE id = ?1",
            params![id, status, reason, fee.map(|f| f.to_string()), now],
        )?;
        Ok(())
    }
}
