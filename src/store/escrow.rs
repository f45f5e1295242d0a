//! What the escrow said about each agent and bill: its lifecycle status (who is renewed),
//! probation, what is still due on each bill, and the `enforceEpoch` transactions.

use rusqlite::{params, OptionalExtension};

use super::Store;
use crate::chain::escrow::{AgentInfo, AgentStatus};
use crate::chain::ledger::EpochState;
use crate::crypto::keys::Address;
use crate::error::Result;

/// The `agents.escrow_status` of a `getAgentInfo` answer (`None`: not registered).
pub fn status_name(info: Option<&AgentInfo>) -> &'static str {
    match info.map(|i| i.status) {
        None => "unregistered",
        Some(AgentStatus::Active) => "active",
        Some(AgentStatus::Paused) => "paused",
        Some(AgentStatus::Cancelled) => "cancelled",
        // Suspended, and any status the spec does not know: billed, not cancelled.
        Some(AgentStatus::Suspended | AgentStatus::Other(_)) => "suspended",
    }
}

/// An agent whose escrow status is due for a read.
#[derive(Debug, Clone)]
pub struct ToCheck {
    pub agent_id: i64,
    pub address: String,
}

/// A bill whose settlement is followed: its stored state (None: unknown).
#[derive(Debug, Clone)]
pub struct OpenBill {
    pub agent_id: i64,
    pub address: String,
    pub epoch: i64,
    pub state: Option<EpochState>,
}

/// What the chain said of one bill in a settlement read.
#[derive(Debug, Clone, Copy)]
pub struct BillRead {
    pub state: EpochState,
    pub due_atto: u128,
    pub paid_at_cancel: bool,
}

impl BillRead {
    /// A bill as the views tell it: its state, what is left due on it, and what its agent
    /// owes in all. Something due on an open bill while the agent owes nothing: its bond
    /// paid it when it cancelled (the contract keeps the bill's state and due).
    pub fn from_views(state: EpochState, due_atto: u128, outstanding: u128) -> BillRead {
        BillRead {
            state,
            due_atto,
            paid_at_cancel: state.is_open() && outstanding == 0 && due_atto > 0,
        }
    }
}

/// A bill past its deadline that `--enforce-after-grace` may collect.
#[derive(Debug, Clone)]
pub struct Overdue {
    pub agent_id: i64,
    pub address: String,
    pub epoch: i64,
}

/// An `enforceEpoch` transaction sent and not settled.
#[derive(Debug, Clone)]
pub struct PendingEnforcement {
    pub id: i64,
    pub agent_id: i64,
    pub address: String,
    pub epoch: i64,
    pub nonce: i64,
    pub signed_tx: String,
    pub tx_hash: Option<String>,
    pub due_before_atto: u128,
}

/// How an enforcement ended, as kept in its `outcome` (the text people read) and its
/// `retry` flag (what the code selects on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The bill's new state (`Slashed`, `Delinquent`, ...).
    Done(String),
    /// Refused for now: sent again once the bill is still overdue.
    Retry(String),
    /// Failed for good: why.
    Failed(String),
}

impl Outcome {
    /// As shown by `billing-attempts` (the words of earlier versions kept).
    pub fn text(&self) -> String {
        match self {
            Outcome::Done(state) => state.clone(),
            Outcome::Retry(why) => format!("retry: {why}"),
            Outcome::Failed(why) => why.clone(),
        }
    }
}

impl Store {
    /// Records a `getAgentInfo` read. Returns the status before, when it changed (so that
    /// a change is said once, not at every tick).
    pub fn set_escrow_status(
        &self,
        agent_id: i64,
        info: Option<&AgentInfo>,
        (epoch, now): (i64, i64),
    ) -> Result<Option<Option<String>>> {
        let status = status_name(info);
        let before: Option<String> = self
            .conn
            .query_row(
                "SELECT escrow_status FROM agents WHERE id = ?1",
                [agent_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        // An intake enrollment waiting for this read is confirmed by a registered agent that
        // has not cancelled, at the escrow's fee (what the escrow charges).
        let confirms = info.filter(|i| i.status != AgentStatus::Cancelled);
        self.conn.execute(
            "UPDATE agents SET escrow_status = ?2, escrow_joined_epoch = ?3, escrow_checked_epoch = ?4,
                    escrow_checked_ms = ?7,
                    fee_bps = CASE WHEN intake_confirm_ms IS NOT NULL AND ?5 IS NOT NULL
                                   AND ?5 BETWEEN 1 AND 10000 THEN ?5 ELSE fee_bps END,
                    intake_confirm_ms = CASE WHEN ?6 THEN NULL ELSE intake_confirm_ms END
             WHERE id = ?1",
            params![
                agent_id,
                status,
                info.map(|i| i.joined_epoch as i64),
                epoch,
                confirms.map(|i| i.fee_bps as i64),
                confirms.is_some(),
                now
            ],
        )?;
        Ok((before.as_deref() != Some(status)).then_some(before))
    }

    /// Agents to read on the escrow: once an epoch, the due ones first (a cancelled agent
    /// must not be renewed); and every [`AWAITED_READ_MS`], those whose registration is
    /// awaited (cancelled, or an intake enrollment not confirmed yet), so one that
    /// registers is renewed within seconds, in its join epoch.
    pub fn escrow_checks_due(&self, epoch: i64, now: i64, limit: usize) -> Result<Vec<ToCheck>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, address FROM agents
             WHERE status = 'active' AND removed_ms IS NULL
               AND ((escrow_checked_epoch IS NULL OR escrow_checked_epoch < ?1)
                    AND (next_attempt_ms <= ?2 OR escrow_status = 'cancelled')
                 OR (escrow_status = 'cancelled' OR intake_confirm_ms IS NOT NULL)
                    AND COALESCE(escrow_checked_ms, 0) < ?2 - ?4)
             ORDER BY next_attempt_ms > ?2, next_attempt_ms LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![epoch, now, limit as i64, AWAITED_READ_MS], |r| {
            Ok(ToCheck {
                agent_id: r.get(0)?,
                address: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// `resume --even-if-cancelled` (true) or a plain resume (false).
    pub fn set_serve_cancelled(&self, agent_id: i64, serve: bool) -> Result<()> {
        self.conn.execute(
            "UPDATE agents SET serve_cancelled = ?2 WHERE id = ?1",
            params![agent_id, serve],
        )?;
        Ok(())
    }

    /// The contract capped an agent's bill for probation.
    pub fn set_probation(&self, agent_id: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE agents SET escrow_probation = 1 WHERE id = ?1",
            [agent_id],
        )?;
        Ok(())
    }

    /// Whether an agent's bills are capped for probation: learned from a refusal, and
    /// fewer than 3 of its bills settled on time since.
    pub fn in_probation(&self, agent_id: i64) -> Result<bool> {
        Ok(self.conn.query_row(
            "SELECT escrow_probation = 1 AND (SELECT COUNT(*) FROM usage_windows
                 WHERE agent_id = ?1 AND settlement = 'SettledOnTime') < 3
             FROM agents WHERE id = ?1",
            [agent_id],
            |r| r.get(0),
        )?)
    }

    /// Bills whose settlement may still change, not read this epoch (every one with
    /// `refresh`), the least recently read first.
    pub fn open_bills(&self, current: i64, limit: usize, refresh: bool) -> Result<Vec<OpenBill>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT u.agent_id, a.address, u.epoch, u.settlement FROM usage_windows u
             JOIN agents a ON a.id = u.agent_id
             WHERE u.kind IN ('billed', 'billed-found-on-chain') AND u.paid_at_cancel = 0
               AND (u.settlement IS NULL OR u.settlement IN ('Billed', 'Delinquent'))
               AND (?3 OR u.settlement_checked_epoch IS NULL OR u.settlement_checked_epoch < ?1)
             ORDER BY u.settlement_checked_epoch IS NOT NULL, u.settlement_checked_epoch, u.epoch
             LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![current, limit as i64, refresh], |r| {
            let state: Option<String> = r.get(3)?;
            Ok(OpenBill {
                agent_id: r.get(0)?,
                address: r.get(1)?,
                epoch: r.get(2)?,
                state: state.as_deref().and_then(EpochState::parse),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a settlement read (`None`: no usable answer; read again next epoch).
    pub fn set_bill_read(
        &self,
        agent_id: i64,
        epoch: i64,
        read: Option<BillRead>,
        checked: i64,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE usage_windows SET settlement_checked_epoch = ?3,
                    settlement = COALESCE(?4, settlement), due_atto = COALESCE(?5, due_atto),
                    paid_at_cancel = COALESCE(?6, paid_at_cancel)
             WHERE agent_id = ?1 AND epoch = ?2",
            params![
                agent_id,
                epoch,
                checked,
                read.map(|r| r.state.as_str()),
                read.map(|r| r.due_atto.to_string()),
                read.map(|r| r.paid_at_cancel),
            ],
        )?;
        Ok(())
    }

    /// Bills still Billed after their deadline (`epoch + grace < current`) with nothing
    /// paid from the bond, never enforced (a "try later" refusal may be tried again).
    pub fn overdue_bills(&self, current: i64, grace: i64, limit: usize) -> Result<Vec<Overdue>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT u.agent_id, a.address, u.epoch FROM usage_windows u
             JOIN agents a ON a.id = u.agent_id
             WHERE u.kind IN ('billed', 'billed-found-on-chain') AND u.paid_at_cancel = 0
               AND u.settlement = 'Billed' AND u.epoch + ?2 < ?1
               AND NOT EXISTS (SELECT 1 FROM enforcements e WHERE e.agent_id = u.agent_id
                               AND e.epoch = u.epoch
                               AND NOT (e.status = 'failed' AND e.retry = 1))
               AND NOT EXISTS (SELECT 1 FROM unprofitable p WHERE p.agent_id = u.agent_id
                               AND p.epoch = u.epoch AND p.kind = 'enforcement'
                               AND p.weighed_epoch >= ?1)
             ORDER BY u.epoch, u.agent_id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![current, grace, limit as i64], |r| {
            Ok(Overdue {
                agent_id: r.get(0)?,
                address: r.get(1)?,
                epoch: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Write-ahead of an `enforceEpoch` transaction. A row of an earlier "try later"
    /// refusal is replaced, so there is one row per bill.
    pub fn record_enforcement(
        &self,
        bill: &Overdue,
        (nonce, signed, gas_limit): (u64, &str, u64),
        due_before: u128,
        now: i64,
    ) -> Result<i64> {
        self.conn.execute(
            "INSERT INTO enforcements (agent_id, epoch, created_ms, updated_ms, nonce, signed_tx,
                                       status, due_before_atto, gas_limit)
             VALUES (?1, ?2, ?3, ?3, ?4, ?5, 'pending', ?6, ?7)
             ON CONFLICT (agent_id, epoch) DO UPDATE SET created_ms = ?3, updated_ms = ?3,
                 nonce = ?4, signed_tx = ?5, status = 'pending', due_before_atto = ?6,
                 gas_limit = ?7, tx_hash = NULL, outcome = NULL, retry = 0
             WHERE status = 'failed' AND retry = 1",
            params![
                bill.agent_id,
                bill.epoch,
                now,
                nonce as i64,
                signed,
                due_before.to_string(),
                gas_limit as i64
            ],
        )?;
        Ok(self.conn.query_row(
            "SELECT id FROM enforcements WHERE agent_id = ?1 AND epoch = ?2",
            params![bill.agent_id, bill.epoch],
            |r| r.get(0),
        )?)
    }

    pub fn enforcement_hash(&self, id: i64, hash: &str, now: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE enforcements SET tx_hash = ?2, updated_ms = ?3 WHERE id = ?1",
            params![id, hash, now],
        )?;
        Ok(())
    }

    pub fn pending_enforcements(&self) -> Result<Vec<PendingEnforcement>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT e.id, e.agent_id, a.address, e.epoch, e.nonce, e.signed_tx, e.tx_hash,
                    e.due_before_atto
             FROM enforcements e JOIN agents a ON a.id = e.agent_id
             WHERE e.status = 'pending' ORDER BY e.nonce",
        )?;
        let rows = stmt.query_map([], |r| {
            let due: String = r.get(7)?;
            Ok(PendingEnforcement {
                id: r.get(0)?,
                agent_id: r.get(1)?,
                address: r.get(2)?,
                epoch: r.get(3)?,
                nonce: r.get(4)?,
                signed_tx: r.get(5)?,
                tx_hash: r.get(6)?,
                due_before_atto: due.parse().unwrap_or(0),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The enforcement is done (`Some(read)`: the bill's new state and what is left due)
    /// or failed (`None`, with the contract's message in `outcome`; `retry`: it may be sent
    /// again once the bill is overdue again).
    pub fn finish_enforcement(
        &mut self,
        e: &PendingEnforcement,
        read: Option<BillRead>,
        outcome: &Outcome,
        now: i64,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        let taken = read.map(|r| e.due_before_atto.saturating_sub(r.due_atto).to_string());
        tx.execute(
            "UPDATE enforcements SET status = ?2, outcome = ?3, taken_atto = ?4, updated_ms = ?5,
                                     retry = ?6
             WHERE id = ?1",
            params![
                e.id,
                if read.is_some() { "done" } else { "failed" },
                outcome.text(),
                taken,
                now,
                matches!(outcome, Outcome::Retry(_))
            ],
        )?;
        if let Some(r) = read {
            tx.execute(
                "UPDATE usage_windows SET settlement = ?3, due_atto = ?4 WHERE agent_id = ?1 AND epoch = ?2",
                params![e.agent_id, e.epoch, r.state.as_str(), r.due_atto.to_string()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

/// How often an agent whose registration is awaited is read on the escrow.
pub const AWAITED_READ_MS: i64 = 15_000;

impl Store {
    /// The fee of an agent the escrow has confirmed (registered, not cancelled), as the
    /// agency keeps it.
    pub fn escrow_fee(&self, address: &Address) -> Result<Option<u32>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT fee_bps FROM agents WHERE address = ?1
                 AND escrow_status IN ('active', 'paused', 'suspended') AND intake_confirm_ms IS NULL",
            )?
            .query_row([address.to_bech32()], |r| r.get(0))
            .optional()?)
    }

    /// Holds every agent with at least `n` epochs enforced since its last release and still
    /// unpaid (Delinquent): it is not renewed (see `served!`) until the escrow shows it
    /// healthy. Returns the addresses newly held.
    pub fn hold_delinquent(&self, n: i64, now: i64) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "WITH owing AS (
                 SELECT u.agent_id, COUNT(*) AS epochs FROM usage_windows u
                 JOIN enforcements e ON e.agent_id = u.agent_id AND e.epoch = u.epoch
                 JOIN agents a ON a.id = u.agent_id
                 WHERE u.settlement = 'Delinquent' AND e.status = 'done'
                   AND e.updated_ms > COALESCE(a.debt_released_ms, 0)
                 GROUP BY u.agent_id)
             UPDATE agents SET debt_hold_ms = ?2,
                 debt_hold_reason = (SELECT epochs FROM owing WHERE owing.agent_id = agents.id)
                     || ' enforced epochs unpaid (Delinquent on the escrow): renewed again once the escrow shows it healthy (resumeIfHealthy, a bond top-up covering its debt, or its debt settled)'
             WHERE debt_hold_ms IS NULL AND removed_ms IS NULL
               AND id IN (SELECT agent_id FROM owing WHERE epochs >= ?1)
             RETURNING address",
        )?;
        let rows = stmt.query_map(params![n, now], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Agents held for their debt: (id, address).
    pub fn debt_held(&self, limit: usize) -> Result<Vec<(i64, String)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, address FROM agents WHERE debt_hold_ms IS NOT NULL AND removed_ms IS NULL
             ORDER BY debt_hold_ms LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The escrow shows a held agent healthy: renewed again, at once.
    pub fn release_debt_hold(&self, agent_id: i64, now: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE agents SET debt_hold_ms = NULL, debt_hold_reason = NULL, debt_released_ms = ?2,
                    next_attempt_ms = MIN(next_attempt_ms, ?2)
             WHERE id = ?1",
            params![agent_id, now],
        )?;
        Ok(())
    }
}
