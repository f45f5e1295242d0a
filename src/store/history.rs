//! The history the pages chart, one row per epoch (`epoch_history`, see
//! `sql/0010_pages.sql`): what is recorded once when an epoch closes, and the epoch's own
//! bills, kept true from `usage_windows` as they settle.

use rusqlite::{params, OptionalExtension};

use super::views::{Charge, Money};
use super::{served, Store};
use crate::chain::escrow::Books;
use crate::chain::ledger::EpochState;
use crate::error::Result;

/// A window renewed no later than this after its end kept the stream alive (the same
/// tolerance as the standby's gap check: an answer at the window's end is in time).
pub const IN_TIME_MS: i64 = 2_000;

/// `history`'s limit for every row.
pub const ALL_EPOCHS: usize = i64::MAX as usize;

/// One epoch's row. Money in atto-CLAW.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochRow {
    pub epoch: i64,
    /// `None`: an epoch from before the history was kept (only its bills are known).
    pub recorded_ms: Option<i64>,
    pub active_agents: Option<i64>,
    pub windows_due: Option<i64>,
    pub windows_in_time: Option<i64>,
    pub counted_windows: i64,
    pub billed_windows: i64,
    pub paid_windows: i64,
    pub enforced_windows: i64,
    pub charged: u128,
    pub collected: u128,
    pub outstanding: u128,
    pub fees: u128,
    pub books: Books,
}

impl EpochRow {
    /// Windows due that were not renewed in time: streams that lapsed while we served them.
    pub fn lapses(&self) -> Option<i64> {
        Some(self.windows_due? - self.windows_in_time?)
    }

    /// Charged minus fees, as `earnings` (negative when billing burned money).
    pub fn net(&self) -> i128 {
        self.charged as i128 - self.fees as i128
    }
}

fn atto(text: Option<String>) -> Option<u128> {
    text.and_then(|t| t.parse().ok())
}

impl Store {
    /// Whether `epoch`'s row was recorded already.
    pub fn history_recorded(&self, epoch: i64) -> Result<bool> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM epoch_history WHERE epoch = ?1 AND recorded_ms IS NOT NULL",
                [epoch],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Records, once, what only the moment `epoch` (`[start_ms, end_ms)`) closed can tell:
    /// the agents served, the windows due in it and renewed in time, the chain's figures.
    pub fn record_epoch_close(
        &self,
        epoch: i64,
        (start_ms, end_ms): (i64, i64),
        books: &Books,
        now: i64,
    ) -> Result<()> {
        let active = self.served_count()?;
        // A window that ended in the epoch was due; in time when the next one opened no
        // later than IN_TIME_MS after. One with no successor counts only while its agent
        // is still served (a pause or a removal is not a lapse).
        let (due, in_time): (i64, i64) = self.conn.query_row(
            concat!(
                "WITH w AS (
                   SELECT agent_id, end_stream_ms AS ended,
                          LEAD(opened_ms) OVER (PARTITION BY agent_id ORDER BY end_stream_ms) AS next_opened
                   FROM stream_windows WHERE end_stream_ms >= ?1 - 86400000)
                 SELECT COUNT(*), COALESCE(SUM(w.next_opened <= w.ended + ?3), 0)
                 FROM w JOIN agents ON agents.id = w.agent_id
                 WHERE w.ended >= ?1 AND w.ended < ?2
                   AND (w.next_opened IS NOT NULL OR (removed_ms IS NULL AND ",
                served!(),
                "))"
            ),
            params![start_ms, end_ms, IN_TIME_MS],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let text = |v: Option<u128>| v.map(|v| v.to_string());
        self.conn.execute(
            "INSERT INTO epoch_history (epoch, recorded_ms, active_agents, windows_due, windows_in_time,
                 operator_balance_atto, claimable_owner_atto, protected_atto, promo_used)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (epoch) DO UPDATE SET recorded_ms = ?2, active_agents = ?3,
                 windows_due = ?4, windows_in_time = ?5, operator_balance_atto = ?6,
                 claimable_owner_atto = ?7, protected_atto = ?8, promo_used = ?9
             WHERE recorded_ms IS NULL",
            params![
                epoch,
                now,
                active,
                due,
                in_time,
                text(books.operator_balance),
                text(books.claimable_owner),
                text(books.protected),
                books.promo_used.map(|p| p as i64),
            ],
        )?;
        self.conn.execute(
            "INSERT OR IGNORE INTO epoch_history_stale (epoch) VALUES (?1)",
            [epoch],
        )?;
        Ok(())
    }

    /// Computes again, from `usage_windows`, the rows of up to `limit` closed epochs (below
    /// `current`) whose bills changed; returns how many. The open epoch changes with every
    /// renewal and has no bill: it waits until it has closed.
    pub fn refresh_history(&self, limit: usize, current: i64) -> Result<usize> {
        let stale: Vec<i64> = {
            let mut stmt = self.conn.prepare(
                "SELECT epoch FROM epoch_history_stale WHERE epoch < ?2 ORDER BY epoch LIMIT ?1",
            )?;
            let rows = stmt.query_map(params![limit as i64, current], |r| r.get(0))?;
            rows.collect::<std::result::Result<_, _>>()?
        };
        for &epoch in &stale {
            self.refresh_epoch(epoch)?;
        }
        Ok(stale.len())
    }

    fn refresh_epoch(&self, epoch: i64) -> Result<()> {
        let counted = self.windows_counted(None, Some(epoch))?;
        let charges = self.charges_of(false, None, Some(epoch))?;
        let money = Money::of(charges.iter());
        let windows = |pick: fn(&Charge) -> bool| -> i64 {
            charges.iter().filter(|c| pick(c)).map(|c| c.windows).sum()
        };
        let paid = windows(|c| {
            c.paid_at_cancel
                || matches!(
                    c.settlement,
                    Some(EpochState::SettledOnTime | EpochState::SettledLate)
                )
        });
        let enforced = windows(|c| {
            !c.paid_at_cancel
                && matches!(
                    c.settlement,
                    Some(EpochState::Slashed | EpochState::Delinquent)
                )
        });
        let fees = self.fees_of_epoch(epoch)?;
        // Fees only grow: the records they were read from may have been pruned since.
        let kept: Option<u128> = atto(
            self.conn
                .query_row(
                    "SELECT fees_atto FROM epoch_history WHERE epoch = ?1",
                    [epoch],
                    |r| r.get(0),
                )
                .optional()?,
        );
        let fees = fees.max(kept.unwrap_or(0));
        self.conn.execute(
            "INSERT INTO epoch_history (epoch, counted_windows, billed_windows, paid_windows, enforced_windows,
                 charged_atto, collected_atto, outstanding_atto, fees_atto)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (epoch) DO UPDATE SET counted_windows = ?2, billed_windows = ?3,
                 paid_windows = ?4, enforced_windows = ?5, charged_atto = ?6, collected_atto = ?7,
                 outstanding_atto = ?8, fees_atto = ?9",
            params![
                epoch,
                counted,
                windows(|_| true),
                paid,
                enforced,
                money.billed.to_string(),
                (money.settled + money.slashed).to_string(),
                money.outstanding.to_string(),
                fees.to_string(),
            ],
        )?;
        self.conn
            .execute("DELETE FROM epoch_history_stale WHERE epoch = ?1", [epoch])?;
        Ok(())
    }

    /// The fees paid for the bills and enforcements of one epoch.
    fn fees_of_epoch(&self, epoch: i64) -> Result<u128> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT fee_atto FROM billing_attempts WHERE fee_atto IS NOT NULL AND epoch + 0 = ?1
             UNION ALL
             SELECT fee_atto FROM enforcements WHERE fee_atto IS NOT NULL AND epoch = ?1",
        )?;
        let rows = stmt.query_map([epoch], |r| r.get::<_, String>(0))?;
        let mut sum = 0u128;
        for fee in rows {
            sum += fee?.parse::<u128>().unwrap_or(0);
        }
        Ok(sum)
    }

    /// The newest `limit` epochs' rows, oldest first.
    pub fn history(&self, limit: usize) -> Result<Vec<EpochRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT * FROM (SELECT epoch, recorded_ms, active_agents, windows_due, windows_in_time,
                    counted_windows, billed_windows, paid_windows, enforced_windows, charged_atto,
                    collected_atto, outstanding_atto, fees_atto, operator_balance_atto,
                    claimable_owner_atto, protected_atto, promo_used
             FROM epoch_history ORDER BY epoch DESC LIMIT ?1) ORDER BY epoch",
        )?;
        let rows = stmt.query_map([limit as i64], |r| {
            let money = |i: usize| -> rusqlite::Result<u128> { Ok(atto(r.get(i)?).unwrap_or(0)) };
            Ok(EpochRow {
                epoch: r.get(0)?,
                recorded_ms: r.get(1)?,
                active_agents: r.get(2)?,
                windows_due: r.get(3)?,
                windows_in_time: r.get(4)?,
                counted_windows: r.get(5)?,
                billed_windows: r.get(6)?,
                paid_windows: r.get(7)?,
                enforced_windows: r.get(8)?,
                charged: money(9)?,
                collected: money(10)?,
                outstanding: money(11)?,
                fees: money(12)?,
                books: Books {
                    operator_balance: atto(r.get(13)?),
                    claimable_owner: atto(r.get(14)?),
                    protected: atto(r.get(15)?),
                    promo_used: r.get::<_, Option<i64>>(16)?.map(|p| p as u64),
                },
            })
        })?;
        Ok(rows.collect::<std::result::Result<_, _>>()?)
    }

    /// The chain's figures as last recorded (each from the newest row that has it), and
    /// the epoch of the newest balance.
    pub fn latest_books(&self) -> Result<(Option<i64>, Books)> {
        let newest = |column: &str| {
            format!("(SELECT {column} FROM epoch_history WHERE {column} IS NOT NULL ORDER BY epoch DESC LIMIT 1)")
        };
        let sql = format!(
            "SELECT (SELECT epoch FROM epoch_history WHERE operator_balance_atto IS NOT NULL ORDER BY epoch DESC LIMIT 1), {}, {}, {}, {}",
            newest("operator_balance_atto"),
            newest("claimable_owner_atto"),
            newest("protected_atto"),
            newest("promo_used")
        );
        Ok(self.conn.query_row(&sql, [], |r| {
            Ok((
                r.get(0)?,
                Books {
                    operator_balance: atto(r.get(1)?),
                    claimable_owner: atto(r.get(2)?),
                    protected: atto(r.get(3)?),
                    promo_used: r.get::<_, Option<i64>>(4)?.map(|p| p as u64),
                },
            ))
        })?)
    }

    /// The fees of the newest epoch that paid any.
    pub fn last_epoch_fees(&self) -> Result<Option<u128>> {
        let fees: Option<String> = self
            .conn
            .query_row(
                "SELECT fees_atto FROM epoch_history WHERE fees_atto NOT IN ('0', '')
                 ORDER BY epoch DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(atto(fees))
    }

    /// Windows counted: one agent's (in one epoch, or in all), or one epoch's (every
    /// agent's). Each case by its index: the primary key, or `epoch + 0` (sql/0010).
    pub fn windows_counted(&self, agent: Option<i64>, epoch: Option<i64>) -> Result<i64> {
        let filter = match (agent, epoch) {
            (Some(_), Some(_)) => "agent_id = ?1 AND epoch = ?2",
            (Some(_), None) => "agent_id = ?1 AND ?2 IS NULL",
            (None, _) => "?1 IS NULL AND epoch + 0 = ?2",
        };
        let sql = format!("SELECT COALESCE(SUM(windows), 0) FROM usage_windows WHERE {filter}");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        Ok(stmt.query_row(params![agent, epoch], |r| r.get(0))?)
    }

    /// Agents renewed now (served and not removed): the scoreboard's "protected now".
    pub fn served_count(&self) -> Result<i64> {
        Ok(self.conn.query_row(
            concat!(
                // The partial index of sql/0010 holds exactly these: no agent row is read.
                "SELECT COUNT(*) FROM agents INDEXED BY agents_served WHERE removed_ms IS NULL AND ",
                served!()
            ),
            [],
            |r| r.get(0),
        )?)
    }
}
