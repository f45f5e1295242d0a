//! Billing bookkeeping: which (agent, epoch) to bill next, the write-ahead record of each
//! `billEpoch` transaction, and how each epoch was settled.

use rusqlite::params;

use super::Store;
use crate::error::Result;
use crate::keys::Address;

/// An (agent, epoch) ready to bill: the agent's lowest unsettled closed epoch.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub agent_id: i64,
    pub agent: Address,
    pub epoch: i64,
    pub windows: i64,
}

/// A transaction that was signed and stored, and is not settled yet.
#[derive(Debug, Clone)]
pub struct PendingTx {
    pub id: i64,
    pub agent_id: i64,
    pub address: String,
    pub epoch: i64,
    pub windows: i64,
    pub nonce: i64,
    pub tx_hash: Option<String>,
    pub signed_tx: String,
}

impl Store {
    /// Per agent, the lowest epoch up to `newest` (inclusive) with windows that is neither
    /// billed nor settled, for agents with no transaction in flight and no window still
    /// waiting for its epoch (it might belong to an earlier epoch, and epochs must go in
    /// increasing order). An agent whose stored address does not parse is skipped, loudly.
    pub fn billing_candidates(&self, newest: i64) -> Result<Vec<Candidate>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT u.agent_id, a.address, MIN(u.epoch) FROM usage_windows u
             JOIN agents a ON a.id = u.agent_id
             WHERE u.billed = 0 AND u.outcome IS NULL AND u.epoch <= ?1
               AND NOT EXISTS (SELECT 1 FROM billing_attempts b
                               WHERE b.agent_id = u.agent_id AND b.status = 'pending')
             GROUP BY u.agent_id ORDER BY MIN(u.epoch), u.agent_id",
        )?;
        let firsts: Vec<(i64, String, i64)> = stmt
            .query_map([newest], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(firsts.len());
        for (agent_id, address, epoch) in firsts {
            let waiting: bool = self.conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM stream_windows WHERE agent_id = ?1 AND epoch IS NULL
                                AND (min_epoch IS NULL OR min_epoch <= ?2))",
            )?
            .query_row(params![agent_id, epoch], |r| r.get(0))?;
            if waiting {
                continue;
            }
            let windows: i64 = self.conn.query_row(
                "SELECT windows FROM usage_windows WHERE agent_id = ?1 AND epoch = ?2",
                params![agent_id, epoch],
                |r| r.get(0),
            )?;
            let agent = match Address::parse(&address) {
                Ok(a) => a,
                Err(e) => {
                    log::error!("agent {address} has an invalid address in the database: {e}");
                    continue;
                }
            };
            out.push(Candidate {
                agent_id,
                agent,
                epoch,
                windows,
            });
        }
        Ok(out)
    }

    pub fn pending_transactions(&self) -> Result<Vec<PendingTx>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT b.id, b.agent_id, a.address, b.epoch, b.windows, b.nonce, b.tx_hash, b.signed_tx
             FROM billing_attempts b JOIN agents a ON a.id = b.agent_id
             WHERE b.status = 'pending' ORDER BY b.nonce, b.id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(PendingTx {
                id: r.get(0)?,
                agent_id: r.get(1)?,
                address: r.get(2)?,
                epoch: r.get(3)?,
                windows: r.get(4)?,
                nonce: r.get(5)?,
                tx_hash: r.get(6)?,
                signed_tx: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Write-ahead: the signed transaction and its nonce, stored before it is sent.
    pub fn record_signed(
        &self,
        c: &Candidate,
        windows: i64,
        nonce: u64,
        signed: &str,
        now: i64,
    ) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO billing_attempts (agent_id, epoch, windows, created_ms, updated_ms, nonce, signed_tx, status)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, 'pending')",
            params![c.agent_id, c.epoch, windows, now, nonce as i64, signed],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn record_hash(&self, id: i64, hash: &str, now: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE billing_attempts SET tx_hash = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, hash, now],
        )?;
        Ok(())
    }

    /// Settles a transaction as failed (its usage stays to be retried or is settled apart).
    pub fn record_tx_failed(&self, id: i64, reason: &str, now: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE billing_attempts SET status = 'failed', reason = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, reason, now],
        )?;
        Ok(())
    }

    /// A decision not to send, with its reason (shown by `billing-attempts`).
    pub fn record_skipped(&self, c: &Candidate, reason: &str, now: i64) -> Result<()> {
        self.conn.execute(
            "INSERT INTO billing_attempts (agent_id, epoch, windows, created_ms, updated_ms, status, reason)
             VALUES (?1, ?2, ?3, ?4, ?4, 'skipped', ?5)",
            params![c.agent_id, c.epoch, c.windows, now, reason],
        )?;
        Ok(())
    }

    /// The epoch is billed: by our transaction `tx` (`(attempt id, windows charged, hash)`),
    /// or found billed on chain (`None`). One transaction for both rows.
    pub fn record_billed(
        &mut self,
        agent_id: i64,
        epoch: i64,
        tx: Option<(i64, i64, Option<&str>)>,
        outcome: &str,
        now: i64,
    ) -> Result<()> {
        let t = self.conn.transaction()?;
        if let Some((id, _, hash)) = tx {
            t.execute(
                "UPDATE billing_attempts SET status = 'success', tx_hash = COALESCE(?2, tx_hash),
                        reason = ?3, updated_ms = ?4 WHERE id = ?1",
                params![id, hash, outcome, now],
            )?;
        }
        let charged = tx.map(|(_, windows, _)| windows);
        let hash = tx.and_then(|(_, _, h)| h);
        t.execute(
            "UPDATE usage_windows SET billed = 1, billed_ms = ?3, billed_windows = ?4,
                    clipped_windows = CASE WHEN ?4 IS NULL THEN 0 ELSE MAX(windows - ?4, 0) END,
                    billed_tx_hash = ?5, outcome = ?6
             WHERE agent_id = ?1 AND epoch = ?2",
            params![agent_id, epoch, now, charged, hash, outcome],
        )?;
        t.commit()?;
        Ok(())
    }

    /// The epoch can never be billed (expired, refused by the contract's rules, clipped to 0).
    pub fn record_unbillable(
        &self,
        agent_id: i64,
        epoch: i64,
        outcome: &str,
        clipped: bool,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE usage_windows SET outcome = ?3,
                    clipped_windows = CASE WHEN ?4 THEN windows ELSE clipped_windows END
             WHERE agent_id = ?1 AND epoch = ?2",
            params![agent_id, epoch, outcome, clipped],
        )?;
        Ok(())
    }

    /// Failed transactions of (agent, epoch) whose message was not one of the contract's.
    pub fn unexplained_failures(&self, agent_id: i64, epoch: i64) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM billing_attempts WHERE agent_id = ?1 AND epoch = ?2
             AND status = 'failed' AND reason LIKE 'unexplained:%'",
            params![agent_id, epoch],
            |r| r.get(0),
        )?)
    }

    pub fn meta_window_reward(&self) -> Result<Option<u128>> {
        Ok(self
            .meta_get("escrow_window_reward")?
            .and_then(|v| v.parse().ok()))
    }

    /// Keeps the escrow's figures for `report`; writes only when they changed.
    pub fn set_meta_escrow(&self, window_reward: u128, max_backbill: u64) -> Result<()> {
        if self.meta_window_reward()? != Some(window_reward) {
            self.meta_set("escrow_window_reward", &window_reward.to_string())?;
        }
        if self.meta_get_i64("escrow_max_backbill_epochs")? != Some(max_backbill as i64) {
            self.meta_set("escrow_max_backbill_epochs", &max_backbill.to_string())?;
        }
        Ok(())
    }
}
