//! The Python MVP's database (`stream_agency.py`): reading it (read-only, columns found by
//! name, unknown ones ignored) and bringing it into ours in one transaction.

use std::collections::HashMap;

use rusqlite::{params, Connection};

use super::Store;
use crate::chain::ledger::Kind;
use crate::crypto::keys::Address;
use crate::error::{Error, Result};

/// An agent as the MVP stored it.
#[derive(Debug, Clone)]
pub struct MvpAgent {
    pub id: i64,
    pub address: String,
    pub signature: String,
    pub fee_bps: Option<i64>,
    pub status: Option<String>,
    pub expected_end_ms: Option<i64>,
    pub next_attempt_ms: Option<i64>,
    pub retry_step: Option<i64>,
    pub success_count: Option<i64>,
    pub failure_count: Option<i64>,
    pub last_success_ms: Option<i64>,
    pub last_error: Option<String>,
    pub created_ms: Option<i64>,
}

/// An MVP agent checked and ready to import.
#[derive(Debug)]
pub struct Checked {
    pub mvp: MvpAgent,
    pub address: Address,
    /// The signature as our `enroll` stores it (lowercase hex, no 0x).
    pub signature: crate::crypto::keys::Secret,
    pub fee_bps: i64,
    pub active: bool,
    /// What changed on the way in (e.g. suspended became paused).
    pub note: Option<String>,
}

/// What one agent's import brought over.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub windows: i64,
    pub billed_epochs: i64,
    pub open_epochs: i64,
    pub attempts: i64,
    pub billing_attempts: i64,
}

/// The columns of an MVP table, to select those that exist (later MVP versions add some).
fn columns(conn: &Connection, table: &str) -> Result<Vec<String>> {
    Ok(conn
        .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?)
}

/// `name` when the table has that column, else NULL: one select for every MVP version.
fn pick(cols: &[String], name: &str) -> String {
    if cols.iter().any(|c| c == name) {
        format!("\"{name}\"")
    } else {
        "NULL".into()
    }
}

/// Every row of an MVP table in one pass (its rowid order): the named columns, NULL
/// where the table lacks one, handed with the row's `agent_id` to `each`. One pass, not
/// one query per agent: the MVP's tables have no index on `agent_id`.
fn each_row(
    source: &Connection,
    table: &str,
    cols: &[String],
    wanted: &[&str],
    mut each: impl FnMut(i64, &rusqlite::Row) -> Result<()>,
) -> Result<()> {
    if cols.is_empty() {
        return Ok(());
    }
    let picked: Vec<String> = wanted.iter().map(|w| pick(cols, w)).collect();
    let sql = format!("SELECT agent_id, {} FROM {table}", picked.join(", "));
    let mut read = source.prepare(&sql)?;
    let mut rows = read.query([])?;
    while let Some(r) = rows.next()? {
        if let Some(agent_id) = r.get::<_, Option<i64>>(0)? {
            each(agent_id, r)?;
        }
    }
    Ok(())
}

/// Refuses an MVP database that lacks a column the import needs.
fn require(conn: &Connection, table: &str, needed: &[&str]) -> Result<Vec<String>> {
    let cols = columns(conn, table)?;
    for n in needed {
        if !cols.iter().any(|c| c == n) {
            return Err(Error::usage(format!(
                "the MVP database's {table} table has no {n} column: it is not a database import-mvp can read"
            )));
        }
    }
    Ok(cols)
}

pub fn read_agents(conn: &Connection) -> Result<Vec<MvpAgent>> {
    let c = require(conn, "agents", &["id", "address", "stream_signature"])?;
    require(conn, "usage_windows", &["agent_id", "epoch", "windows"])?;
    let p = |n: &str| pick(&c, n);
    let sql = format!(
        "SELECT id, address, stream_signature, {}, {}, {}, {}, {}, {}, {}, {}, {}, {} FROM agents ORDER BY id",
        p("fee_bps"),
        p("status"),
        p("expected_end_ms"),
        p("next_attempt_ms"),
        p("retry_step"),
        p("success_count"),
        p("failure_count"),
        p("last_success_ms"),
        p("last_error"),
        p("created_ms")
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], |r| {
        Ok(MvpAgent {
            id: r.get(0)?,
            address: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            signature: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
            fee_bps: r.get(3)?,
            status: r.get(4)?,
            expected_end_ms: r.get(5)?,
            next_attempt_ms: r.get(6)?,
            retry_step: r.get(7)?,
            success_count: r.get(8)?,
            failure_count: r.get(9)?,
            last_success_ms: r.get(10)?,
            last_error: r.get(11)?,
            created_ms: r.get(12)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Text safe to keep: the agent's signature redacted, control characters removed, bounded.
pub type Redact<'a> = &'a dyn Fn(&str, &str) -> String;

impl Store {
    /// Whether the database holds no agent yet (an import goes into a new database).
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self
            .conn
            .query_row("SELECT NOT EXISTS (SELECT 1 FROM agents)", [], |r| r.get(0))?)
    }

    /// Brings the checked agents and their usage, attempts and billing attempts over from
    /// `source`, in one transaction. Returns the counts per agent, in `agents`' order.
    pub fn import_mvp(
        &mut self,
        source: &Connection,
        agents: &[Checked],
        redact: Redact,
        now: i64,
    ) -> Result<Vec<Counts>> {
        let sealed: Vec<zeroize::Zeroizing<String>> = agents
            .iter()
            .map(|a| self.sealed(&a.address, a.signature.expose()))
            .collect();
        let attempt_cols = columns(source, "attempts")?;
        let billing_cols = columns(source, "billing_attempts")?;
        let usage_cols = columns(source, "usage_windows")?;
        let tx = self.conn.transaction()?;
        // MVP agent id -> (our id, position in `agents`).
        let mut targets: HashMap<i64, (i64, usize)> = HashMap::with_capacity(agents.len());
        for (i, (a, stored)) in agents.iter().zip(&sealed).enumerate() {
            let m = &a.mvp;
            let last_error = m.last_error.as_deref().map(|e| redact(e, &m.signature));
            tx.prepare_cached(
                "INSERT INTO agents (address, stream_signature, fee_bps, status, expected_end_ms, next_attempt_ms,
                                     success_count, failure_count, backoff_step, last_success_ms, last_error,
                                     enrolled_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                a.address.to_bech32(),
                stored.as_str(),
                a.fee_bps,
                if a.active { "active" } else { "paused" },
                m.expected_end_ms,
                m.next_attempt_ms.unwrap_or(0),
                m.success_count.unwrap_or(0),
                m.failure_count.unwrap_or(0),
                m.retry_step.unwrap_or(0).clamp(0, 1000),
                m.last_success_ms,
                last_error,
                m.created_ms.unwrap_or(now),
                now,
            ])?;
            targets.insert(m.id, (tx.last_insert_rowid(), i));
        }
        let mut all = vec![Counts::default(); agents.len()];
        let to = Targets {
            ids: &targets,
            agents,
            redact,
        };
        copy_usage(&tx, source, &usage_cols, &to, &mut all)?;
        copy_attempts(&tx, source, &attempt_cols, &to, &mut all)?;
        copy_billing(&tx, source, &billing_cols, &to, &mut all)?;
        tx.commit()?;
        Ok(all)
    }
}

/// Where an MVP agent's rows go.
struct Targets<'a> {
    /// MVP agent id -> (our id, position in `agents`); rows of other agents are skipped.
    ids: &'a HashMap<i64, (i64, usize)>,
    agents: &'a [Checked],
    redact: Redact<'a>,
}

impl Targets<'_> {
    /// Our id, the MVP's signature (to redact it), and the agent's position.
    fn of(&self, mvp_id: i64) -> Option<(i64, &str, usize)> {
        let &(id, i) = self.ids.get(&mvp_id)?;
        Some((id, self.agents[i].mvp.signature.as_str(), i))
    }
}

/// Every usage row with windows, billed flag kept: an epoch the MVP marked billed is
/// `billed-by-mvp` (its exit code, not the chain, said so: `reconcile` checks it).
fn copy_usage(
    tx: &Connection,
    source: &Connection,
    cols: &[String],
    to: &Targets,
    counts: &mut [Counts],
) -> Result<()> {
    let mut write = tx.prepare_cached(
        "INSERT INTO usage_windows (agent_id, epoch, windows, billed, billed_ms, kind, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let wanted = ["epoch", "windows", "billed", "billed_at_ms"];
    each_row(source, "usage_windows", cols, &wanted, |mvp_id, r| {
        let Some((id, _, i)) = to.of(mvp_id) else {
            return Ok(());
        };
        let windows: i64 = r.get::<_, Option<i64>>(2)?.unwrap_or(0);
        if windows <= 0 {
            return Ok(());
        }
        let billed = r.get::<_, Option<i64>>(3)?.unwrap_or(0) != 0;
        let (kind, outcome) = if billed {
            (
                Some(Kind::BilledByMvp.as_str()),
                Some("billed by the MVP (clawpy exit code), not confirmed"),
            )
        } else {
            (None, None)
        };
        write.execute(params![
            id,
            r.get::<_, i64>(1)?,
            windows,
            billed,
            r.get::<_, Option<i64>>(4)?,
            kind,
            outcome
        ])?;
        counts[i].windows += windows;
        if billed {
            counts[i].billed_epochs += 1;
        } else {
            counts[i].open_epochs += 1;
        }
        Ok(())
    })
}

/// The MVP's `/stream` calls; its raw bodies are cut to a redacted excerpt.
fn copy_attempts(
    tx: &Connection,
    source: &Connection,
    cols: &[String],
    to: &Targets,
    counts: &mut [Counts],
) -> Result<()> {
    let mut write = tx.prepare_cached(
        "INSERT INTO attempts (agent_id, attempted_ms, duration_ms, ok, status_code, reason, end_stream_ms, counted, body_excerpt)
         VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, 0, ?7)",
    )?;
    let wanted = [
        "attempted_ms",
        "ok",
        "status_code",
        "reason",
        "end_stream_ms",
        "response_body",
    ];
    each_row(source, "attempts", cols, &wanted, |mvp_id, r| {
        let Some((id, signature, i)) = to.of(mvp_id) else {
            return Ok(());
        };
        let status: Option<i64> = r.get::<_, Option<i64>>(3)?.filter(|&s| s != 0);
        let reason: Option<String> = r.get(4)?;
        let body: Option<String> = r.get(6)?;
        write.execute(params![
            id,
            r.get::<_, Option<i64>>(1)?.unwrap_or(0),
            r.get::<_, Option<i64>>(2)?.unwrap_or(0) != 0,
            status,
            format!(
                "MVP: {}",
                reason
                    .as_deref()
                    .map(|t| (to.redact)(t, signature))
                    .unwrap_or_else(|| "-".into())
            ),
            r.get::<_, Option<i64>>(5)?,
            body.map(|b| (to.redact)(&b, signature)),
        ])?;
        counts[i].attempts += 1;
        Ok(())
    })
}

/// The MVP's `clawpy` billing calls: outcome by exit code only, hash when its output has one.
fn copy_billing(
    tx: &Connection,
    source: &Connection,
    cols: &[String],
    to: &Targets,
    counts: &mut [Counts],
) -> Result<()> {
    let mut write = tx.prepare_cached(
        "INSERT INTO billing_attempts (agent_id, epoch, windows, created_ms, updated_ms, tx_hash, status, kind, reason)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, 'mvp', ?7)",
    )?;
    let wanted = [
        "epoch",
        "windows",
        "attempted_ms",
        "ok",
        "return_code",
        "stdout",
        "stderr",
    ];
    each_row(source, "billing_attempts", cols, &wanted, |mvp_id, r| {
        let Some((id, signature, i)) = to.of(mvp_id) else {
            return Ok(());
        };
        let ok = r.get::<_, Option<i64>>(4)?.unwrap_or(0) != 0;
        let stdout: String = r.get::<_, Option<String>>(6)?.unwrap_or_default();
        let stderr: String = r.get::<_, Option<String>>(7)?.unwrap_or_default();
        let hash = stdout
            .split(|c: char| !c.is_ascii_hexdigit())
            .find(|w| w.len() == 64)
            .map(str::to_ascii_lowercase);
        let said = if stderr.trim().is_empty() {
            stdout.trim()
        } else {
            stderr.trim()
        };
        let reason = format!(
            "MVP: clawpy exited {}{}",
            r.get::<_, Option<i64>>(5)?
                .map_or("?".into(), |c| c.to_string()),
            if said.is_empty() {
                String::new()
            } else {
                format!(": {}", (to.redact)(said, signature))
            }
        );
        write.execute(params![
            id,
            r.get::<_, Option<i64>>(1)?.unwrap_or(0),
            r.get::<_, Option<i64>>(2)?.unwrap_or(0),
            r.get::<_, Option<i64>>(3)?.unwrap_or(0),
            hash,
            if ok { "success" } else { "failed" },
            reason,
        ])?;
        counts[i].billing_attempts += 1;
        Ok(())
    })
}
