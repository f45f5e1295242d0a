//! Read-only queries for `report`, `attempts`, `billing-attempts`, `check` and the
//! metrics. No query here ever selects `stream_signature`.

use rusqlite::params;

use super::{served, usage, Store};
use crate::chain::ledger::EpochState;
use crate::error::Result;

/// The windows of a `usage_windows u` row kept alive that can no longer be billed: counted
/// after its bill (late), or all of an epoch the escrow refused or that was lost. A literal,
/// for `concat!` (`report` and `earnings` add it up alike).
macro_rules! unbillable {
    () => {
        "u.late_windows + CASE WHEN u.kind IN ('refused', 'lost') THEN u.windows - u.late_windows ELSE 0 END"
    };
}

/// One agent's row of `report`.
#[derive(Debug)]
pub struct AgentRow {
    pub id: i64,
    pub address: String,
    pub status: String,
    pub fee_bps: i64,
    pub renewed: i64,
    pub failed: i64,
    /// Counted windows neither billed nor settled.
    pub pending: i64,
    pub billed: i64,
    pub clipped: i64,
    pub expired: i64,
    /// Windows of epochs held for a human.
    pub held: i64,
    pub next_attempt_ms: Option<i64>,
    pub window_end_ms: Option<i64>,
    pub last_error: Option<String>,
    /// The agent on the escrow as last read: active, paused, suspended, cancelled,
    /// unregistered (its windows cannot be billed), or unknown (not read yet).
    pub escrow: String,
    /// Windows kept alive that can no longer be billed: counted after their epoch's bill
    /// (late, a standby's brought home late), or of epochs the escrow refused or lost.
    pub unbillable: i64,
    /// Why it is not renewed although active (its unpaid, enforced epochs).
    pub hold: Option<String>,
}

/// One `/stream` attempt of `attempts`.
#[derive(Debug)]
pub struct AttemptRow {
    pub attempted_ms: i64,
    pub ok: bool,
    pub status_code: Option<i64>,
    pub duration_ms: i64,
    pub counted: bool,
    pub end_stream_ms: Option<i64>,
    pub reason: String,
    pub body_excerpt: Option<String>,
}

/// One row of `billing-attempts`.
#[derive(Debug)]
pub struct BillingRow {
    pub created_ms: i64,
    pub address: String,
    pub epoch: i64,
    pub windows: i64,
    pub nonce: Option<i64>,
    pub tx_hash: Option<String>,
    pub status: String,
    pub reason: Option<String>,
    pub kind: Option<String>,
    pub gas_limit: Option<i64>,
    /// From the receipt, once the outcome is known.
    pub gas_used: Option<i64>,
    pub fee_atto: Option<String>,
}

/// One window behind an epoch's count: the proof of service an owner checks against the
/// stream service.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProofWindow {
    /// When the renewal that opened it was answered (Unix ms).
    pub opened_ms: i64,
    /// The window's end, as the stream service said (`end_stream`, Unix ms).
    pub end_ms: i64,
    /// Found already open (counted by `--count-observed-windows`), not opened by us.
    pub observed: bool,
}

impl Store {
    /// The windows counted into one agent's epoch, in order (pruned once the epoch is
    /// settled and older than `prune`'s cutoff).
    pub fn proof_windows(&self, agent_id: i64, epoch: i64) -> Result<Vec<ProofWindow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT opened_ms, end_stream_ms, observed FROM stream_windows
             WHERE agent_id = ?1 AND epoch = ?2 ORDER BY end_stream_ms",
        )?;
        let rows = stmt.query_map(params![agent_id, epoch], |r| {
            Ok(ProofWindow {
                opened_ms: r.get(0)?,
                end_ms: r.get(1)?,
                observed: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One agent's counted windows per epoch, the newest `limit` epochs, oldest first.
    pub fn windows_per_epoch(&self, agent_id: i64, limit: usize) -> Result<Vec<(i64, i64)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT * FROM (SELECT epoch, windows FROM usage_windows WHERE agent_id = ?1
                            ORDER BY epoch DESC LIMIT ?2) ORDER BY epoch",
        )?;
        let rows = stmt.query_map(params![agent_id, limit as i64], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn strings(&self, sql: &str, p: impl rusqlite::Params) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map(p, |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn count(&self, sql: &str) -> Result<i64> {
        Ok(self.conn.query_row(sql, [], |r| r.get(0))?)
    }

    /// Agents for `report`; removed ones too with `all`; only `address` when given.
    pub fn agent_rows(&self, all: bool, address: Option<&str>) -> Result<Vec<AgentRow>> {
        let select = concat!(
            "SELECT a.id, a.address, a.status, a.fee_bps, a.success_count, a.failure_count,
                    (SELECT COALESCE(SUM(COALESCE(u.billed_windows, u.windows)), 0)
                       FROM usage_windows u WHERE u.agent_id = a.id AND u.billed = 1),
                    (SELECT COALESCE(SUM(u.clipped_windows), 0) FROM usage_windows u WHERE u.agent_id = a.id),
                    (SELECT COALESCE(SUM(u.windows), 0) FROM usage_windows u
                       WHERE u.agent_id = a.id AND u.kind = 'expired'),
                    a.next_attempt_ms, a.expected_end_ms, a.last_error,
                    (SELECT COALESCE(SUM(u.windows), 0) FROM usage_windows u
                       WHERE u.agent_id = a.id AND u.kind = 'held'),
                    a.removed_ms IS NOT NULL, a.escrow_status, a.serve_cancelled,
                    (SELECT COALESCE(SUM(", unbillable!(), "), 0)
                       FROM usage_windows u WHERE u.agent_id = a.id),
                    a.debt_hold_reason
             FROM agents a WHERE "
        );
        // One agent by its unique address (an index lookup: its page), else the list.
        let filter = match address {
            Some(_) => "a.address = ?2 AND ?1 IS NOT NULL",
            None => "(?1 OR a.removed_ms IS NULL) AND ?2 IS NULL",
        };
        let mut stmt = self
            .conn
            .prepare(&format!("{select}{filter} ORDER BY a.address"))?;
        let rows: Vec<(i64, AgentRow)> = stmt
            .query_map(params![all, address], |r| {
                let removed: bool = r.get(13)?;
                let escrow: Option<String> = r.get(14)?;
                let serve_cancelled: bool = r.get(15)?;
                let status: String = match (removed, escrow.as_deref()) {
                    (true, _) => "removed".into(),
                    (false, Some("cancelled")) if !serve_cancelled => "cancelled-on-escrow".into(),
                    (false, _) if r.get::<_, Option<String>>(17)?.is_some() => {
                        "held-for-debt".into()
                    }
                    _ => r.get(2)?,
                };
                let next = if status == "active" { r.get(9)? } else { None };
                Ok((
                    r.get(0)?,
                    AgentRow {
                        id: r.get(0)?,
                        address: r.get(1)?,
                        status,
                        fee_bps: r.get(3)?,
                        renewed: r.get(4)?,
                        failed: r.get(5)?,
                        pending: 0,
                        billed: r.get(6)?,
                        clipped: r.get(7)?,
                        expired: r.get(8)?,
                        held: r.get(12)?,
                        next_attempt_ms: next,
                        window_end_ms: r.get(10)?,
                        last_error: r.get(11)?,
                        escrow: escrow.unwrap_or_else(|| "unknown".into()),
                        unbillable: r.get(16)?,
                        hold: r.get(17)?,
                    },
                ))
            })?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(id, mut row)| {
                row.pending = usage::unbilled_windows(&self.conn, Some(id))?;
                Ok(row)
            })
            .collect()
    }

    pub fn attempt_rows(&self, agent_id: i64, limit: u32) -> Result<Vec<AttemptRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT attempted_ms, ok, status_code, duration_ms, counted, end_stream_ms, reason, body_excerpt
             FROM attempts WHERE agent_id = ?1 ORDER BY attempted_ms DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![agent_id, limit], |r| {
            Ok(AttemptRow {
                attempted_ms: r.get(0)?,
                ok: r.get(1)?,
                status_code: r.get(2)?,
                duration_ms: r.get(3)?,
                counted: r.get(4)?,
                end_stream_ms: r.get(5)?,
                reason: r.get(6)?,
                body_excerpt: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn billing_rows(&self, limit: u32) -> Result<Vec<BillingRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT b.created_ms, a.address, b.epoch, b.windows, b.nonce, b.tx_hash, b.status, b.reason, b.kind,
                    b.gas_limit, b.gas_used, b.fee_atto
             FROM billing_attempts b JOIN agents a ON a.id = b.agent_id
             ORDER BY b.created_ms DESC, b.id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |r| {
            Ok(BillingRow {
                created_ms: r.get(0)?,
                address: r.get(1)?,
                epoch: r.get(2)?,
                windows: r.get(3)?,
                nonce: r.get(4)?,
                tx_hash: r.get(5)?,
                status: r.get(6)?,
                reason: r.get(7)?,
                kind: r.get(8)?,
                gas_limit: r.get(9)?,
                gas_used: r.get(10)?,
                fee_atto: r.get(11)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Unbilled epochs that pass the contract's backbill limit when the next epoch begins.
    pub fn expiry_warnings(&self) -> Result<Vec<String>> {
        let (Some(current), Some(limit)) = (self.max_epoch_seen()?, self.meta_max_backbill()?)
        else {
            return Ok(Vec::new());
        };
        // A limit beyond any epoch (u64::MAX: "no limit") never expires anything.
        let Ok(limit) = i64::try_from(limit) else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare(
            "SELECT a.address, u.epoch, u.windows FROM usage_windows u JOIN agents a ON a.id = u.agent_id
             WHERE (u.kind IS NULL OR u.kind = 'held') AND ?1 - u.epoch >= ?2 ORDER BY u.epoch, a.address",
        )?;
        let rows = stmt.query_map(params![current, limit], |r| {
            let (address, epoch, windows): (String, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            Ok(format!(
                "{address} epoch {epoch} ({windows} windows) can no longer be billed once epoch {} begins",
                epoch + limit + 1
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Active agents whose window ended more than `grace_ms` ago without a new one.
    pub fn lapsed(&self, now: i64, grace_ms: i64) -> Result<Vec<String>> {
        self.strings(
            concat!("SELECT address || ': window ended ' || ((?1 - expected_end_ms) / 1000) || ' s ago without renewal'
             FROM agents WHERE ", served!(), " AND expected_end_ms < ?1 - ?2 ORDER BY address"),
            params![now, grace_ms],
        )
    }

    /// Active agents whose window ends within `warn_ms` with no attempt planned before its end.
    pub fn at_risk(&self, now: i64, warn_ms: i64) -> Result<Vec<String>> {
        self.strings(
            concat!("SELECT address || CASE WHEN expected_end_ms < ?1 THEN ': window lapsed ' || ((?1 - expected_end_ms) / 1000) || ' s ago'
                                    ELSE ': window ends in ' || ((expected_end_ms - ?1) / 1000) || ' s with no renewal planned before' END
             FROM agents WHERE ", served!(), " AND expected_end_ms < ?1 + ?2 AND next_attempt_ms > expected_end_ms
             ORDER BY address"),
            params![now, warn_ms],
        )
    }

    /// Active agents failing for longer than `for_ms`.
    pub fn failing(&self, now: i64, for_ms: i64) -> Result<Vec<String>> {
        self.strings(
            concat!("SELECT address || ': failing for ' || ((?1 - failing_since_ms) / 60000) || ' min: ' || COALESCE(last_error, '?')
             FROM agents WHERE ", served!(), " AND failing_since_ms < ?1 - ?2 ORDER BY address"),
            params![now, for_ms],
        )
    }

    /// Billing transactions pending for longer than `limit_ms`.
    pub fn stale_billing(&self, now: i64, limit_ms: i64) -> Result<Vec<String>> {
        self.strings(
            "SELECT a.address || ' epoch ' || b.epoch || ': billing transaction pending for ' || ((?1 - b.created_ms) / 1000) || ' s'
             FROM billing_attempts b JOIN agents a ON a.id = b.agent_id
             WHERE b.status = 'pending' AND b.created_ms < ?1 - ?2 ORDER BY b.created_ms",
            params![now, limit_ms],
        )
    }

    /// Per agent, windows kept alive that can no longer be billed (see
    /// [`AgentRow::unbillable`]), of epochs from `since` on.
    pub fn unbillable_by_agent(&self, since: i64) -> Result<Vec<(String, i64)>> {
        let mut stmt = self.conn.prepare(concat!(
            "SELECT a.address, SUM(",
            unbillable!(),
            ") AS n
             FROM usage_windows u JOIN agents a ON a.id = u.agent_id
             WHERE u.epoch >= ?1 GROUP BY a.address HAVING n > 0"
        ))?;
        let rows = stmt.query_map([since], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Active agents enrolled before `enrolled_before` that never had a window.
    pub fn never_renewed(&self, now: i64, enrolled_before: i64) -> Result<Vec<String>> {
        self.strings(
            concat!("SELECT address || ': enrolled ' || ((?1 - enrolled_ms) / 60000) || ' min ago and never renewed: is a tick timer or run scheduled?'
             FROM agents WHERE ", served!(), " AND removed_ms IS NULL AND last_success_ms IS NULL
               AND expected_end_ms IS NULL AND enrolled_ms < ?2 ORDER BY address"),
            params![now, enrolled_before],
        )
    }

    /// Agents the escrow says cannot pay: cancelled there (no longer renewed), or never
    /// registered (renewed, but their windows cannot be billed).
    pub fn escrow_notices(&self) -> Result<Vec<String>> {
        self.strings(
            "SELECT address || CASE escrow_status
                 WHEN 'cancelled' THEN CASE WHEN serve_cancelled = 1
                     THEN ': cancelled on the escrow, renewed on the operator''s word (never paid)'
                     ELSE ': cancelled on the escrow, no longer renewed or billed' END
                 ELSE ': not registered on the escrow: its windows cannot be billed until it registers' END
             FROM agents WHERE removed_ms IS NULL AND escrow_status IN ('cancelled', 'unregistered')
             UNION ALL
             SELECT address || ': not renewed: ' || debt_hold_reason
             FROM agents WHERE removed_ms IS NULL AND debt_hold_ms IS NOT NULL
             ORDER BY 1",
            [],
        )
    }

    /// Active agents: (all, with a window open now).
    pub fn streaming(&self, now: i64) -> Result<(i64, i64)> {
        Ok(self.conn.query_row(
            concat!(
                "SELECT COUNT(*), COALESCE(SUM(expected_end_ms > ?1), 0) FROM agents WHERE ",
                served!(),
                ""
            ),
            [now],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?)
    }

    pub fn agents_with_status(&self, status: &str) -> Result<i64> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM agents WHERE status = ?1",
            [status],
            |r| r.get(0),
        )?)
    }
}

/// Lifetime totals for the metrics.
#[derive(Debug, Default)]
/// What the database grows by: its size and the attempts it holds.
pub struct Growth {
    pub used_bytes: i64,
    pub attempts: i64,
    /// Attempts made in the last day (scaled up to a day when the history is shorter).
    pub last_day: i64,
}

impl Store {
    pub fn growth(&self, now: i64) -> Result<Growth> {
        let used_bytes: i64 = self.conn.query_row(
            "SELECT (page_count - freelist_count) * page_size
             FROM pragma_page_count, pragma_freelist_count, pragma_page_size",
            [],
            |r| r.get(0),
        )?;
        let day = 86_400_000;
        let (attempts, first, recent): (i64, Option<i64>, i64) = self.conn.query_row(
            "SELECT COUNT(*), MIN(attempted_ms), COUNT(*) FILTER (WHERE attempted_ms > ?1)
             FROM attempts",
            [now - day],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let span = first.map_or(day, |f| (now - f).clamp(60_000, day));
        Ok(Growth {
            used_bytes,
            attempts,
            last_day: recent * day / span,
        })
    }
}

pub struct Totals {
    pub renewals_ok: i64,
    pub renewals_failed: i64,
    pub windows_pending: i64,
    pub windows_billed: i64,
    pub windows_clipped: i64,
    pub windows_expired: i64,
    pub billing_failures: i64,
}

impl Store {
    pub fn totals(&self) -> Result<Totals> {
        let (renewals_ok, renewals_failed) = self.conn.query_row(
            "SELECT COALESCE(SUM(success_count), 0), COALESCE(SUM(failure_count), 0) FROM agents",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (windows_billed, windows_clipped, windows_expired) = self.conn.query_row(
            "SELECT COALESCE(SUM(CASE WHEN billed = 1 THEN COALESCE(billed_windows, windows) END), 0),
                    COALESCE(SUM(clipped_windows), 0),
                    COALESCE(SUM(CASE WHEN kind = 'expired' THEN windows END), 0)
             FROM usage_windows",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(Totals {
            renewals_ok,
            renewals_failed,
            windows_pending: usage::unbilled_windows(&self.conn, None)?,
            windows_billed,
            windows_clipped,
            windows_expired,
            billing_failures: self
                .count("SELECT COUNT(*) FROM billing_attempts WHERE status = 'failed'")?,
        })
    }
}

/// One billed epoch's charge and what became of it.
#[derive(Debug)]
pub struct Charge {
    pub agent_id: i64,
    pub address: String,
    pub epoch: i64,
    pub windows: i64,
    pub charged_atto: u128,
    /// `None`: not read from the chain yet (counts as open).
    pub settlement: Option<EpochState>,
    /// What is still due, as `getEpochDebt` last said (`None`: not read yet).
    pub due_atto: Option<u128>,
    /// Paid from the bond when the agent cancelled (its state stays Billed).
    pub paid_at_cancel: bool,
    pub billed_ms: Option<i64>,
    /// The `enforceEpoch` sent for it, if any: its status and outcome.
    pub enforcement: Option<String>,
    /// Windows counted into the epoch after its bill: kept alive, never billed.
    pub late_windows: i64,
}

impl Charge {
    /// Still to be paid: not settled, slashed or paid from the bond.
    pub fn is_open(&self) -> bool {
        crate::chain::ledger::bill_is_open(self.settlement, self.paid_at_cancel)
    }

    /// What is still due (the whole charge until the chain said otherwise).
    pub fn remaining_atto(&self) -> u128 {
        if !self.is_open() {
            return 0;
        }
        self.due_atto
            .unwrap_or(self.charged_atto)
            .min(self.charged_atto)
    }

    /// The state shown: the contract's, "paid at cancel", or "unknown" until read.
    pub fn state_name(&self) -> &'static str {
        match self.settlement {
            _ if self.paid_at_cancel => "PaidAtCancel",
            Some(s) => s.as_str(),
            None => "unknown",
        }
    }
}

impl Store {
    /// Every billed epoch with a recorded charge (ours; not the MVP's, whose charges are
    /// unknown), oldest first; only those still open with `open`; only one agent's with
    /// `agent`.
    pub fn charges(&self, open: bool, agent: Option<i64>) -> Result<Vec<Charge>> {
        self.charges_of(open, agent, None)
    }

    /// The charges of one agent, of one epoch, or all (`None`).
    pub fn charges_of(
        &self,
        open: bool,
        agent: Option<i64>,
        epoch: Option<i64>,
    ) -> Result<Vec<Charge>> {
        // Each case by its index: the agent's rows (primary key), an epoch's (`epoch + 0`,
        // sql/0010), or all.
        let filter = match (agent, epoch) {
            (Some(_), _) => "u.agent_id = ?1 AND (?2 IS NULL OR u.epoch = ?2)",
            (None, Some(_)) => "?1 IS NULL AND u.epoch + 0 = ?2",
            (None, None) => "?1 IS NULL AND ?2 IS NULL",
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT u.agent_id, a.address, u.epoch, COALESCE(u.billed_windows, u.windows), u.charged_atto,
                    u.settlement, u.due_atto, u.paid_at_cancel, u.billed_ms,
                    (SELECT e.status || COALESCE(': ' || e.outcome, '') FROM enforcements e
                      WHERE e.agent_id = u.agent_id AND e.epoch = u.epoch),
                    u.late_windows
             FROM usage_windows u JOIN agents a ON a.id = u.agent_id
             WHERE u.kind IN ('billed', 'billed-found-on-chain') AND u.charged_atto IS NOT NULL
               AND {filter}
             ORDER BY u.epoch, a.address"
        ))?;
        let rows = stmt.query_map([agent, epoch], |r| {
            let atto: String = r.get(4)?;
            let state: Option<String> = r.get(5)?;
            let due: Option<String> = r.get(6)?;
            Ok(Charge {
                agent_id: r.get(0)?,
                address: r.get(1)?,
                epoch: r.get(2)?,
                windows: r.get(3)?,
                charged_atto: atto.parse().unwrap_or(0),
                settlement: state.as_deref().and_then(EpochState::parse),
                due_atto: due.and_then(|d| d.parse().ok()),
                paid_at_cancel: r.get(7)?,
                billed_ms: r.get(8)?,
                enforcement: r.get(9)?,
                late_windows: r.get(10)?,
            })
        })?;
        let all: Vec<Charge> = rows.collect::<Result<_, _>>()?;
        Ok(all.into_iter().filter(|c| !open || c.is_open()).collect())
    }
}

/// What billed epochs charged and what became of it, in atto-CLAW.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Money {
    pub billed: u128,
    /// Paid: on time or late, in part, or from the bond at cancellation.
    pub settled: u128,
    /// Not paid yet: what is still due on open bills.
    pub outstanding: u128,
    /// Taken from the agent's bond by `enforceEpoch` (Slashed, and Delinquent in part).
    pub slashed: u128,
}

impl Money {
    pub fn of<'a>(charges: impl Iterator<Item = &'a Charge>) -> Money {
        let mut m = Money::default();
        for c in charges {
            m.billed += c.charged_atto;
            let remaining = c.remaining_atto();
            match c.settlement {
                _ if c.paid_at_cancel => m.settled += c.charged_atto,
                Some(EpochState::SettledOnTime | EpochState::SettledLate) => {
                    m.settled += c.charged_atto
                }
                Some(EpochState::Slashed) => m.slashed += c.charged_atto,
                // Delinquent: the bond gave what it had; the rest is due.
                Some(EpochState::Delinquent) => m.slashed += c.charged_atto - remaining,
                // Billed: paid in part (settleEpoch) or not at all.
                Some(EpochState::Billed) | None => m.settled += c.charged_atto - remaining,
            }
            m.outstanding += remaining;
        }
        m
    }
}
