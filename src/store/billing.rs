//! Billing bookkeeping: which (agent, epoch) to bill next, the write-ahead record of each
//! `billEpoch` transaction, how each epoch was settled (by kind, see `ledger`), holds,
//! the circuit breaker's state and the receivables.

use rusqlite::{params, OptionalExtension};

use super::Store;
use crate::chain::ledger::{EpochState, Kind};
use crate::crypto::keys::Address;
use crate::error::Result;

/// An (agent, epoch) ready to bill: the agent's lowest open closed epoch.
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
    pub charged_atto: Option<String>,
    /// When the transaction was first found final (or its nonce used) while the contract
    /// showed no state for its epoch: how long we have waited for the contract.
    pub unresolved_ms: Option<i64>,
}

/// How an (agent, epoch) is settled, with what our transaction charged when it billed it.
#[derive(Debug, Clone, Copy)]
pub struct Settled<'a> {
    pub kind: Kind,
    pub reason: &'a str,
    /// The windows charged, when known (our transaction's).
    pub charged_windows: Option<i64>,
    pub tx_hash: Option<&'a str>,
    pub charged_atto: Option<&'a str>,
    /// The settlement state read from `getEpochState`, for billed kinds.
    pub settlement: Option<EpochState>,
}

impl<'a> Settled<'a> {
    pub fn new(kind: Kind, reason: &'a str) -> Settled<'a> {
        Settled {
            kind,
            reason,
            charged_windows: None,
            tx_hash: None,
            charged_atto: None,
            settlement: None,
        }
    }
}

impl Store {
    /// Per agent, the lowest open epoch up to `newest` (inclusive), for agents with no
    /// transaction in flight, no held epoch, and no window still waiting for its epoch (it
    /// might belong to an earlier epoch, and epochs must go in increasing order). An agent
    /// whose stored address does not parse is skipped, loudly.
    pub fn billing_candidates(&self, newest: i64) -> Result<Vec<Candidate>> {
        let mut stmt = self.conn.prepare_cached(
            // With one MIN(), SQLite takes the bare `u.windows` from that epoch's row.
            "SELECT u.agent_id, a.address, MIN(u.epoch), u.windows FROM usage_windows u
             JOIN agents a ON a.id = u.agent_id
             WHERE u.kind IS NULL AND u.epoch <= ?1 AND a.removed_ms IS NULL
               AND NOT EXISTS (SELECT 1 FROM billing_attempts b
                               WHERE b.agent_id = u.agent_id AND b.status = 'pending')
               AND NOT EXISTS (SELECT 1 FROM usage_windows h
                               WHERE h.agent_id = u.agent_id AND h.kind = 'held')
             GROUP BY u.agent_id ORDER BY MIN(u.epoch), u.agent_id",
        )?;
        let firsts: Vec<(i64, String, i64, i64)> = stmt
            .query_map([newest], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(firsts.len());
        for (agent_id, address, epoch, windows) in firsts {
            let waiting: bool = self.conn.prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM stream_windows WHERE agent_id = ?1 AND epoch IS NULL
                                AND (min_epoch IS NULL OR min_epoch <= ?2))",
            )?
            .query_row(params![agent_id, epoch], |r| r.get(0))?;
            if waiting {
                continue;
            }
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

    /// "Try later" failures of (agent, epoch) since a human last released it.
    pub fn retries(&self, agent_id: i64, epoch: i64) -> Result<(i64, Option<i64>)> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*), MAX(updated_ms) FROM billing_attempts
             WHERE agent_id = ?1 AND epoch = ?2 AND kind = 'retry'
               AND id > COALESCE((SELECT MAX(id) FROM billing_attempts WHERE agent_id = ?1
                                  AND epoch = ?2 AND kind = 'retried-by-human'), 0)",
            params![agent_id, epoch],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    pub fn pending_transactions(&self) -> Result<Vec<PendingTx>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT b.id, b.agent_id, a.address, b.epoch, b.windows, b.nonce, b.tx_hash, b.signed_tx,
                    b.charged_atto, b.unresolved_ms
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
                signed_tx: r.get::<_, Option<String>>(7)?.unwrap_or_default(),
                charged_atto: r.get(8)?,
                unresolved_ms: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Write-ahead: the signed transaction, its nonce and expected charge, stored before it
    /// is sent.
    /// Write-ahead of a `billEpoch`: `(nonce, signed body, gas limit)`.
    pub fn record_signed(
        &self,
        c: &Candidate,
        windows: i64,
        (nonce, signed, gas_limit): (u64, &str, u64),
        charged_atto: u128,
        now: i64,
    ) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO billing_attempts (agent_id, epoch, windows, created_ms, updated_ms, nonce, signed_tx,
                                           status, kind, charged_atto, gas_limit)
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, 'pending', 'pending', ?7, ?8)",
            params![c.agent_id, c.epoch, windows, now, nonce as i64, signed, charged_atto.to_string(), gas_limit as i64],
        )?;
        let id = self.conn.last_insert_rowid();
        // Every window counted so far is in this bill: only those counted from now on are late.
        self.conn.execute(
            "UPDATE usage_windows SET late_windows = 0 WHERE agent_id = ?1 AND epoch = ?2",
            params![c.agent_id, c.epoch],
        )?;
        Ok(id)
    }

    pub fn record_hash(&self, id: i64, hash: &str, now: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE billing_attempts SET tx_hash = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, hash, now],
        )?;
        Ok(())
    }

    /// The transaction looks final but the contract shows no state yet: remember since when.
    pub fn record_unresolved(&self, id: i64, now: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE billing_attempts SET unresolved_ms = COALESCE(unresolved_ms, ?2) WHERE id = ?1",
            params![id, now],
        )?;
        Ok(())
    }

    /// Ends a transaction's attempt row with a kind and reason (its epoch is settled apart).
    pub fn record_attempt(&self, id: i64, kind: Kind, reason: &str, now: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE billing_attempts SET status = ?2, kind = ?3, reason = ?4, updated_ms = ?5 WHERE id = ?1",
            params![id, kind.attempt_status(), kind.as_str(), reason, now],
        )?;
        Ok(())
    }

    /// A decision without a transaction (not sent, skipped, released), shown by
    /// `billing-attempts`.
    pub fn record_decision(
        &self,
        agent_id: i64,
        epoch: i64,
        windows: i64,
        kind: Kind,
        reason: &str,
        now: i64,
    ) -> Result<()> {
        let decided = (agent_id, epoch, windows);
        insert_decision(
            &self.conn,
            decided,
            (kind, kind.attempt_status()),
            reason,
            now,
        )
    }

    /// A refusal learned from a simulation: a decision row (`skipped`: no transaction was
    /// sent, so it is never counted as a failed one) with the kind it would have had.
    pub fn record_simulated(
        &self,
        (agent_id, epoch, windows): (i64, i64, i64),
        kind: Kind,
        reason: &str,
        now: i64,
    ) -> Result<()> {
        let decided = (agent_id, epoch, windows);
        insert_decision(&self.conn, decided, (kind, "skipped"), reason, now)
    }

    /// Settles (agent, epoch): billed, or unbillable, or held, with the reason.
    pub fn settle_epoch(&self, agent_id: i64, epoch: i64, s: &Settled, now: i64) -> Result<()> {
        let billed = s.kind.is_billed();
        self.conn.execute(
            "UPDATE usage_windows SET kind = ?3, outcome = ?4, billed = ?5,
                    billed_ms = CASE WHEN ?5 THEN ?6 ELSE billed_ms END,
                    billed_windows = CASE WHEN ?5 THEN ?7 ELSE billed_windows END,
                    clipped_windows = CASE WHEN ?3 = 'clipped' THEN windows - late_windows
                                           WHEN ?5 AND ?7 IS NOT NULL THEN MAX(windows - late_windows - ?7, 0)
                                           ELSE clipped_windows END,
                    billed_tx_hash = CASE WHEN ?5 THEN ?8 ELSE billed_tx_hash END,
                    charged_atto = CASE WHEN ?5 THEN ?9 ELSE charged_atto END,
                    settlement = CASE WHEN ?5 THEN ?10 ELSE settlement END
             WHERE agent_id = ?1 AND epoch = ?2",
            params![
                agent_id,
                epoch,
                s.kind.as_str(),
                s.reason,
                billed,
                now,
                s.charged_windows,
                s.tx_hash,
                s.charged_atto,
                s.settlement
                    .or(billed.then_some(EpochState::Billed))
                    .map(EpochState::as_str),
            ],
        )?;
        Ok(())
    }

    /// Re-opens held epochs for billing: of one agent (one epoch of it), or all with
    /// `None`. Returns how many were released; each release is recorded.
    pub fn release_holds(
        &mut self,
        agent_id: Option<i64>,
        epoch: Option<i64>,
        reason: &str,
        now: i64,
    ) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let held: Vec<(i64, i64, i64)> = tx
            .prepare(
                "SELECT agent_id, epoch, windows FROM usage_windows WHERE kind = 'held'
                 AND (?1 IS NULL OR agent_id = ?1) AND (?2 IS NULL OR epoch = ?2)",
            )?
            .query_map(params![agent_id, epoch], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        for &(agent, epoch, windows) in &held {
            tx.execute(
                "UPDATE usage_windows SET kind = NULL, outcome = NULL WHERE agent_id = ?1 AND epoch = ?2",
                params![agent, epoch],
            )?;
            let released = (agent, epoch, windows);
            let kind = Kind::RetriedByHuman;
            insert_decision(&tx, released, (kind, kind.attempt_status()), reason, now)?;
        }
        tx.commit()?;
        Ok(held.len())
    }

    /// `billing skip`: settles an open or held epoch for good, with the human's reason.
    /// Returns false when (agent, epoch) has nothing open.
    pub fn skip_epoch(
        &mut self,
        agent_id: i64,
        epoch: i64,
        reason: &str,
        now: i64,
    ) -> Result<bool> {
        let tx = self.conn.transaction()?;
        let windows: Option<i64> = tx
            .query_row(
                "SELECT windows FROM usage_windows WHERE agent_id = ?1 AND epoch = ?2
                 AND (kind IS NULL OR kind = 'held')",
                params![agent_id, epoch],
                |r| r.get(0),
            )
            .optional()?;
        let Some(windows) = windows else {
            return Ok(false);
        };
        tx.execute(
            "UPDATE usage_windows SET kind = 'skipped-by-human', outcome = ?3 WHERE agent_id = ?1 AND epoch = ?2",
            params![agent_id, epoch, reason],
        )?;
        let skipped = (agent_id, epoch, windows);
        let kind = Kind::SkippedByHuman;
        insert_decision(&tx, skipped, (kind, kind.attempt_status()), reason, now)?;
        tx.commit()?;
        Ok(true)
    }

    /// Held epochs, as lines for a human: `address epoch N: reason`.
    pub fn held_epochs(&self) -> Result<Vec<(String, i64, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT a.address, u.epoch, COALESCE(u.outcome, '') FROM usage_windows u
             JOIN agents a ON a.id = u.agent_id WHERE u.kind = 'held' ORDER BY u.epoch, a.address",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn meta_window_reward(&self) -> Result<Option<u128>> {
        Ok(self
            .meta_get("escrow_window_reward")?
            .and_then(|v| v.parse().ok()))
    }

    /// Keeps the escrow's figures for `report` and `receivables`.
    pub fn set_meta_escrow(&self, config: &crate::chain::escrow::EscrowConfig) -> Result<()> {
        self.meta_set("escrow_window_reward", &config.window_reward.to_string())?;
        self.meta_set("escrow_grace_epochs", &config.grace_epochs.to_string())?;
        self.meta_set(
            "escrow_hard_max_windows",
            &config.hard_max_windows_per_epoch.to_string(),
        )?;
        self.meta_set(
            "escrow_max_backbill_epochs",
            &config.max_backbill_epochs.to_string(),
        )?;
        // The terms `/` shows (read by the tick, never by `serve`).
        self.meta_set("escrow_setup_fee", &config.setup_fee.to_string())?;
        self.meta_set("escrow_min_bond", &config.min_bond.to_string())?;
        self.meta_set(
            "escrow_promo_free_slots",
            &config.promo_free_slots.to_string(),
        )
    }

    /// The escrow's terms as last read: (setup fee, min bond, promo free slots).
    pub fn meta_escrow_terms(&self) -> Result<(Option<u128>, Option<u128>, Option<u64>)> {
        let number = |key: &str| -> Result<Option<u128>> {
            Ok(self.meta_get(key)?.and_then(|v| v.parse().ok()))
        };
        Ok((
            number("escrow_setup_fee")?,
            number("escrow_min_bond")?,
            number("escrow_promo_free_slots")?.map(|n| n as u64),
        ))
    }

    /// The escrow's grace period as last seen.
    pub fn meta_grace_epochs(&self) -> Result<Option<i64>> {
        self.meta_get_i64("escrow_grace_epochs")
    }

    /// The escrow's backbill limit as last seen (u64: "no limit" may be u64::MAX).
    pub fn meta_max_backbill(&self) -> Result<Option<u64>> {
        Ok(self
            .meta_get("escrow_max_backbill_epochs")?
            .and_then(|v| v.parse().ok()))
    }
}

/// One (agent, epoch) of the local ledger, as `reconcile` compares it with the chain.
#[derive(Debug, Clone)]
pub struct LedgerRow {
    pub agent_id: i64,
    pub address: String,
    pub fee_bps: i64,
    pub epoch: i64,
    pub windows: i64,
    /// None: open.
    pub kind: Option<Kind>,
    /// A bill of it is in flight (sent, not confirmed yet): the tick confirms it.
    pub in_flight: bool,
    /// Billed here, but what is still due (or its settlement) was never read.
    pub unread: bool,
}

/// What `reconcile --apply` does to one (agent, epoch).
#[derive(Debug, Clone)]
pub enum Correction {
    /// The chain has it billed: so do we (with its settlement state).
    FoundOnChain(EpochState),
    /// The chain lacks it and can still take it: open for billing again.
    Reopen,
    /// The chain lacks it and can no longer take it.
    Lost(String),
    /// The chain billed an epoch the local ledger has no row of (a restored backup, a copy
    /// behind its primary): recorded as billed, with what is still due.
    Missing(EpochState, u128),
    /// What the chain's bill of an epoch was made of, once known: the windows it charged
    /// (when they can be told), its charge, and what is still due.
    Known {
        windows: Option<i64>,
        charged_atto: Option<u128>,
        due_atto: u128,
        settlement: EpochState,
    },
}

impl Store {
    /// Up to `limit` rows with windows after `(agent_id, epoch)` = `after`, from
    /// `since_epoch` on, in (agent, epoch) order: a bounded, resumable walk.
    pub fn ledger_rows(
        &self,
        since_epoch: i64,
        after: (i64, i64),
        limit: usize,
    ) -> Result<Vec<LedgerRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT u.agent_id, a.address, a.fee_bps, u.epoch, u.windows, u.kind,
                    EXISTS (SELECT 1 FROM billing_attempts b WHERE b.agent_id = u.agent_id
                            AND b.epoch = u.epoch AND b.status = 'pending'),
                    u.billed = 1 AND (u.due_atto IS NULL OR u.settlement IS NULL)
             FROM usage_windows u JOIN agents a ON a.id = u.agent_id
             WHERE u.windows > 0 AND u.epoch >= ?1 AND (u.agent_id, u.epoch) > (?2, ?3)
             ORDER BY u.agent_id, u.epoch LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![since_epoch, after.0, after.1, limit as i64], |r| {
            let kind: Option<String> = r.get(5)?;
            Ok(LedgerRow {
                agent_id: r.get(0)?,
                address: r.get(1)?,
                fee_bps: r.get(2)?,
                epoch: r.get(3)?,
                windows: r.get(4)?,
                kind: kind.as_deref().and_then(Kind::parse),
                in_flight: r.get(6)?,
                unread: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Makes the local ledger follow the chain, all corrections in one transaction.
    pub fn apply_corrections(
        &mut self,
        corrections: &[(i64, i64, Correction)],
        now: i64,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        for (agent_id, epoch, c) in corrections {
            if let Correction::Missing(state, due) = c {
                insert_found(&tx, (*agent_id, *epoch), *state, *due, now)?;
                continue;
            }
            if let Correction::Known {
                windows,
                charged_atto,
                due_atto,
                settlement,
            } = c
            {
                // The chain's windows were kept alive too: the local count is at least them.
                tx.execute(
                    "UPDATE usage_windows SET billed_windows = COALESCE(?3, billed_windows),
                            windows = MAX(windows, COALESCE(?3, 0)),
                            charged_atto = COALESCE(?4, charged_atto), due_atto = ?5,
                            settlement = ?6
                     WHERE agent_id = ?1 AND epoch = ?2",
                    params![
                        agent_id,
                        epoch,
                        windows,
                        charged_atto.map(|c| c.to_string()),
                        due_atto.to_string(),
                        settlement.as_str()
                    ],
                )?;
                continue;
            }
            let (kind, billed, outcome, settlement): (
                Option<&str>,
                bool,
                Option<String>,
                Option<&str>,
            ) = match c {
                Correction::FoundOnChain(state) => (
                    Some(Kind::BilledFoundOnChain.as_str()),
                    true,
                    Some("billed (found on chain by reconcile)".into()),
                    Some(state.as_str()),
                ),
                Correction::Reopen => (None, false, None, None),
                Correction::Lost(reason) => {
                    (Some(Kind::Lost.as_str()), false, Some(reason.clone()), None)
                }
                Correction::Missing(..) | Correction::Known { .. } => unreachable!("handled above"),
            };
            tx.execute(
                "UPDATE usage_windows SET kind = ?3, billed = ?4, outcome = ?5, settlement = ?6,
                        billed_ms = CASE WHEN ?4 THEN COALESCE(billed_ms, ?7) ELSE NULL END
                 WHERE agent_id = ?1 AND epoch = ?2
                   -- A bill sent since the walk read the row is the tick's to confirm.
                   AND NOT EXISTS (SELECT 1 FROM billing_attempts b WHERE b.agent_id = ?1
                                   AND b.epoch = ?2 AND b.status = 'pending')",
                params![agent_id, epoch, kind, billed, outcome, settlement, now],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// A bill the chain has and the local ledger had no row of: billed, its windows unknown
/// (0), its charge at least what is still due (exact while nothing was paid).
fn insert_found(
    conn: &rusqlite::Connection,
    (agent_id, epoch): (i64, i64),
    state: EpochState,
    due: u128,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO usage_windows (agent_id, epoch, windows, billed, billed_ms, kind, outcome,
                                    settlement, due_atto, charged_atto)
         VALUES (?1, ?2, 0, 1, ?3, ?4, ?5, ?6, ?7, ?7)
         ON CONFLICT (agent_id, epoch) DO UPDATE SET billed = 1, billed_ms = excluded.billed_ms,
             kind = excluded.kind, outcome = excluded.outcome, settlement = excluded.settlement,
             due_atto = excluded.due_atto, charged_atto = excluded.charged_atto
         WHERE kind IS NULL AND NOT EXISTS (SELECT 1 FROM billing_attempts b
             WHERE b.agent_id = ?1 AND b.epoch = ?2 AND b.status = 'pending')",
        params![
            agent_id,
            epoch,
            now,
            Kind::BilledFoundOnChain.as_str(),
            "billed on chain with no local record (found by reconcile from the escrow's last billed epoch)",
            state.as_str(),
            due.to_string()
        ],
    )?;
    Ok(())
}

impl Store {
    /// The latest epoch of an agent whose row is settled (not open, not held): after a
    /// restore, the chain's bills the ledger lacks all come after it.
    pub fn latest_settled_epoch(&self, agent_id: i64) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT MAX(epoch) FROM usage_windows WHERE agent_id = ?1
                 AND kind IS NOT NULL AND kind != 'held'",
            )?
            .query_row([agent_id], |r| r.get(0))?)
    }

    /// Windows the local ledger says the chain billed an agent, over its billed rows but
    /// `except` (epochs whose bill is being learned).
    pub fn billed_windows_known(&self, agent_id: i64, except: &[i64]) -> Result<i64> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT epoch, COALESCE(billed_windows, windows) FROM usage_windows
             WHERE agent_id = ?1 AND kind IN ('billed', 'billed-found-on-chain', 'billed-by-mvp')",
        )?;
        let rows = stmt.query_map([agent_id], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?;
        let mut sum = 0;
        for row in rows {
            let (epoch, windows) = row?;
            if !except.contains(&epoch) {
                sum += windows;
            }
        }
        Ok(sum)
    }

    pub fn has_usage_row(&self, agent_id: i64, epoch: i64) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM usage_windows WHERE agent_id = ?1 AND epoch = ?2
                                AND (windows > 0 OR kind IS NOT NULL))",
            )?
            .query_row(params![agent_id, epoch], |r| r.get(0))?)
    }

    pub fn agent_address(&self, agent_id: i64) -> Result<String> {
        Ok(self
            .conn
            .prepare_cached("SELECT address FROM agents WHERE id = ?1")?
            .query_row([agent_id], |r| r.get(0))?)
    }

    /// Every agent ever enrolled (removed ones too: their bills stay theirs).
    pub fn agent_list(&self) -> Result<Vec<(i64, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, address FROM agents ORDER BY id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// A billing attempt row for a decision without a transaction: `(agent, epoch, windows)`,
/// its kind and its `status` column.
fn insert_decision(
    conn: &rusqlite::Connection,
    (agent_id, epoch, windows): (i64, i64, i64),
    (kind, status): (Kind, &str),
    reason: &str,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO billing_attempts (agent_id, epoch, windows, created_ms, updated_ms, status, kind, reason)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![agent_id, epoch, windows, now, status, kind.as_str(), reason])?;
    Ok(())
}
