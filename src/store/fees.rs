//! What transactions cost (their receipts' `fee` and `gasUsed`) and the bills held back as
//! unprofitable (expected fee above their charge).

use rusqlite::{params, OptionalExtension};

use super::Store;
use crate::error::Result;

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
    pub agent_id: i64,
    pub address: String,
    pub epoch: i64,
    pub charge_atto: u128,
    pub fee_atto: u128,
}

impl Store {
    /// Transactions settled (either way) without a recorded fee, oldest first.
    pub fn fees_unknown(&self, limit: usize) -> Result<Vec<FeeUnknown>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT 0, id, tx_hash, kind IN ('billed', 'billed-found-on-chain'), signed_tx, updated_ms
               FROM billing_attempts
              WHERE tx_hash IS NOT NULL AND fee_atto IS NULL AND status != 'pending'
                AND signed_tx IS NOT NULL AND kind IS NOT 'mvp'
             UNION ALL
             SELECT 1, id, tx_hash, status = 'done', signed_tx, updated_ms FROM enforcements
              WHERE tx_hash IS NOT NULL AND fee_atto IS NULL AND status != 'pending'
             ORDER BY 6 LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
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
        let before: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM unprofitable WHERE agent_id = ?1 AND epoch = ?2
                                                           AND kind = ?3)",
            params![agent_id, epoch, kind],
            |r| r.get(0),
        )?;
        self.conn.execute(
            "INSERT INTO unprofitable (agent_id, epoch, kind, charge_atto, fee_atto, weighed_epoch,
                                       created_ms)
             VALUES (?1, ?2, ?7, ?3, ?4, ?5, ?6)
             ON CONFLICT (agent_id, epoch, kind) DO UPDATE SET charge_atto = ?3, fee_atto = ?4,
                                                               weighed_epoch = ?5",
            params![
                agent_id,
                epoch,
                charge_atto.to_string(),
                fee_atto.to_string(),
                current,
                now,
                kind
            ],
        )?;
        Ok(!before)
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

    /// The hold of a bill, when it is sent or settled: it is no longer held.
    pub fn release_unprofitable(&self, agent_id: i64, epoch: i64) -> Result<Option<Unprofitable>> {
        let held = self
            .unprofitable(Some((agent_id, epoch)))?
            .into_iter()
            .next();
        self.conn.execute(
            "DELETE FROM unprofitable WHERE agent_id = ?1 AND epoch = ?2 AND kind = 'bill'",
            params![agent_id, epoch],
        )?;
        Ok(held)
    }

    /// Every bill held as unprofitable (or the one of `only`), by agent and epoch.
    pub fn unprofitable(&self, only: Option<(i64, i64)>) -> Result<Vec<Unprofitable>> {
        let (agent, epoch) = only.unwrap_or((-1, -1));
        let mut stmt = self.conn.prepare_cached(
            "SELECT u.agent_id, a.address, u.epoch, u.charge_atto, u.fee_atto
               FROM unprofitable u JOIN agents a ON a.id = u.agent_id
              WHERE u.kind = 'bill' AND (?1 = -1 OR (u.agent_id = ?1 AND u.epoch = ?2))
              ORDER BY a.address, u.epoch",
        )?;
        let rows = stmt.query_map(params![agent, epoch], |r| {
            let amount = |i: usize| -> rusqlite::Result<u128> {
                Ok(r.get::<_, String>(i)?.parse().unwrap_or(0))
            };
            Ok(Unprofitable {
                agent_id: r.get(0)?,
                address: r.get(1)?,
                epoch: r.get(2)?,
                charge_atto: amount(3)?,
                fee_atto: amount(4)?,
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
