//! What transactions cost (their receipts' `fee` and `gasUsed`) and the bills held back as
//! unprofitable (expected fee above their charge).

use rusqlite::{params, OptionalExtension};

use super::Store;
use crate::error::Result;

/// How long after its outcome a transaction's receipt is asked for its fee.
pub const RECEIPT_WAIT_MS: i64 = 86_400_000;

/// A transaction whose outcome is known and whose fee is not recorded yet.
#[derive(Debug, Clone)]
pub struct FeeUnknown {
    /// An `enforceEpoch` (else a `billEpoch`).
    pub enforcement: bool,
    pub id: i64,
    pub hash: String,
    /// Its call succeeded (billed, or enforced).
    pub succeeded: bool,
    /// The body that was sent (its data gives the function and the move gas).
    pub signed_tx: String,
}

/// A bill held as unprofitable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprofitable {
    pub address: String,
    pub epoch: i64,
    pub charge_atto: u128,
    pub fee_atto: u128,
    /// The windows the held bill is for.
    pub windows: i64,
}

impl Store {
    /// Transactions settled (either way) within the last [`RECEIPT_WAIT_MS`] without a
    /// recorded fee, oldest first: a receipt that never gives one is not asked for forever.
    pub fn fees_unknown(&self, limit: usize, now: i64) -> Result<Vec<FeeUnknown>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT 0, id, tx_hash, kind IN ('billed', 'billed-found-on-chain'), signed_tx, updated_ms
               FROM billing_attempts
              WHERE tx_hash IS NOT NULL AND fee_atto IS NULL AND status != 'pending'
                AND signed_tx IS NOT NULL AND kind IS NOT 'mvp' AND updated_ms >= ?2
             UNION ALL
             SELECT 1, id, tx_hash, status = 'done', signed_tx, updated_ms FROM enforcements
              WHERE tx_hash IS NOT NULL AND fee_atto IS NULL AND status != 'pending'
                AND updated_ms >= ?2
             ORDER BY 6 LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit as i64, now - RECEIPT_WAIT_MS], |r| {
            Ok(FeeUnknown {
                enforcement: r.get(0)?,
                id: r.get(1)?,
                hash: r.get(2)?,
                succeeded: r.get(3)?,
                signed_tx: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn record_fee(&self, tx: &FeeUnknown, fee_atto: u128, gas_used: u64) -> Result<()> {
        let sql = if tx.enforcement {
            "UPDATE enforcements SET fee_atto = ?2, gas_used = ?3 WHERE id = ?1"
        } else {
            "UPDATE billing_attempts SET fee_atto = ?2, gas_used = ?3 WHERE id = ?1"
        };
        self.conn
            .execute(sql, params![tx.id, fee_atto.to_string(), gas_used as i64])?;
        Ok(())
    }

    /// Holds a bill (`kind` "bill") or its enforcement ("enforcement") as unprofitable in
    /// epoch `current`. Returns true when it was not held before (said once).
    pub fn hold_unprofitable(
        &self,
        (agent_id, epoch, kind): (i64, i64, &str),
        charge_atto: u128,
        fee_atto: u128,
        current: i64,
        now: i64,
    ) -> Result<bool> {
        // created_ms stays as first written: the row is new when it equals `now`.
        let new: bool = self.conn.query_row(
            "INSERT INTO unprofitable (agent_id, epoch, kind, charge_atto, fee_atto, weighed_epoch,
                                       created_ms)
             VALUES (?1, ?2, ?7, ?3, ?4, ?5, ?6)
             ON CONFLICT (agent_id, epoch, kind) DO UPDATE SET charge_atto = ?3, fee_atto = ?4,
                                                               weighed_epoch = ?5
             RETURNING created_ms = ?6",
            params![
                agent_id,
                epoch,
                charge_atto.to_string(),
                fee_atto.to_string(),
                current,
                now,
                kind
            ],
            |r| r.get(0),
        )?;
        Ok(new)
    }

    /// The epoch a held bill was last weighed in (`None`: not held).
    pub fn unprofitable_weighed(&self, agent_id: i64, epoch: i64) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT weighed_epoch FROM unprofitable WHERE agent_id = ?1 AND epoch = ?2
                                                          AND kind = 'bill'",
            )?
            .query_row(params![agent_id, epoch], |r| r.get(0))
            .optional()?)
    }

    /// The hold of a bill, when it is sent or settled: it is no longer held. Returns
    /// (charge, fee) as last weighed, when it was held.
    pub fn release_unprofitable(&self, agent_id: i64, epoch: i64) -> Result<Option<(u128, u128)>> {
        let held: Option<(String, String)> = self
            .conn
            .query_row(
                "DELETE FROM unprofitable WHERE agent_id = ?1 AND epoch = ?2 AND kind = 'bill'
                 RETURNING charge_atto, fee_atto",
                params![agent_id, epoch],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(held.map(|(c, f)| (c.parse().unwrap_or(0), f.parse().unwrap_or(0))))
    }

    /// Every bill held as unprofitable, by agent and epoch.
    pub fn unprofitable(&self) -> Result<Vec<Unprofitable>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT a.address, u.epoch, u.charge_atto, u.fee_atto,
                    (SELECT w.windows FROM usage_windows w WHERE w.agent_id = u.agent_id AND w.epoch = u.epoch)
               FROM unprofitable u JOIN agents a ON a.id = u.agent_id
              WHERE u.kind = 'bill'
              ORDER BY a.address, u.epoch",
        )?;
        let rows = stmt.query_map([], |r| {
            let amount = |i: usize| -> rusqlite::Result<u128> {
                Ok(r.get::<_, String>(i)?.parse().unwrap_or(0))
            };
            Ok(Unprofitable {
                address: r.get(0)?,
                epoch: r.get(1)?,
                charge_atto: amount(2)?,
                fee_atto: amount(3)?,
                windows: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

impl Store {
    /// The fees paid per agent (bills, enforcements, failed transactions alike), for the
    /// epochs from `since_epoch` on; summed exactly (the column is a decimal string).
    pub fn fees_by_agent(&self, since_epoch: i64) -> Result<Vec<(i64, String, u128)>> {
        let mut stmt = self.conn.prepare(
            "SELECT f.agent_id, a.address, f.fee_atto FROM (
                 SELECT agent_id, fee_atto FROM billing_attempts
                  WHERE fee_atto IS NOT NULL AND epoch >= ?1
                 UNION ALL
                 SELECT agent_id, fee_atto FROM enforcements
                  WHERE fee_atto IS NOT NULL AND epoch >= ?1) f
             JOIN agents a ON a.id = f.agent_id",
        )?;
        let rows = stmt.query_map([since_epoch], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut sums: std::collections::BTreeMap<(i64, String), u128> = Default::default();
        for row in rows {
            let (agent, address, fee) = row?;
            *sums.entry((agent, address)).or_default() += fee.parse::<u128>().unwrap_or(0);
        }
        Ok(sums.into_iter().map(|((id, a), f)| (id, a, f)).collect())
    }
}

/// `meta` key of the fee a `billEpoch` was last expected to pay.
const EXPECTED_BILL_FEE: &str = "expected_bill_fee_atto";

impl Store {
    /// Keeps the fee a bill is expected to pay at today's price, for `report` and `enroll`.
    pub fn set_expected_bill_fee(&self, fee_atto: u128) -> Result<()> {
        if self.meta_get(EXPECTED_BILL_FEE)?.as_deref() != Some(fee_atto.to_string().as_str()) {
            self.meta_set(EXPECTED_BILL_FEE, &fee_atto.to_string())?;
        }
        Ok(())
    }

    pub fn expected_bill_fee(&self) -> Result<Option<u128>> {
        Ok(self
            .meta_get(EXPECTED_BILL_FEE)?
            .and_then(|v| v.parse().ok()))
    }

    /// The escrow's cap on windows per epoch, as last seen.
    pub fn meta_hard_max_windows(&self) -> Result<Option<i64>> {
        self.meta_get_i64("escrow_hard_max_windows")
    }

    /// The windows of the agent's latest counted epoch.
    pub fn latest_windows(&self, agent_id: i64) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT windows FROM usage_windows WHERE agent_id = ?1 ORDER BY epoch DESC LIMIT 1",
            )?
            .query_row([agent_id], |r| r.get(0))
            .optional()?)
    }
}
