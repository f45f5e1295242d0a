//! Read-only views for people and scripts: `report`, `attempts`, `billing-attempts`.
//! No query here ever selects `stream_signature`.

use rusqlite::params;

use crate::error::{Error, Result};
use crate::keys::Address;
use crate::output::{rfc3339, Cell, Format, Rows};
use crate::store::{usage, Store};

/// A Unix-ms time as UTC (RFC 3339, seconds), or "-".
pub fn utc(ms: Option<i64>) -> String {
    ms.map_or("-".into(), rfc3339)
}

/// Atto-CLAW (10^-18) as CLAW with four decimals.
pub fn claw(atto: u128) -> String {
    let unit = 1_000_000_000_000_000_000u128;
    format!("{}.{:04}", atto / unit, (atto % unit) / 100_000_000_000_000)
}

/// Prints rows; warnings go after a table, or to stderr so JSON and TSV stay parseable.
fn emit(rows: &Rows, format: Format, warnings: &[String]) {
    print!("{}", rows.render(format));
    for w in warnings {
        if format == Format::Table {
            println!("warning: {w}");
        } else {
            eprintln!("warning: {w}");
        }
    }
}

/// Field names of `report --format json|tsv` (stable; documented in the README).
pub const REPORT_FIELDS: [&str; 13] = [
    "address",
    "status",
    "fee_bps",
    "renewed",
    "failed",
    "pending",
    "billed",
    "clipped",
    "expired",
    "due_claw",
    "next_attempt",
    "window_end",
    "last_error",
];

pub fn report(store: &Store, format: Format) -> Result<()> {
    let window_reward = store.meta_window_reward()?;
    let mut stmt = store.conn.prepare(
        "SELECT a.id, a.address, a.status, a.fee_bps, a.success_count, a.failure_count,
                (SELECT COALESCE(SUM(COALESCE(u.billed_windows, u.windows)), 0)
                   FROM usage_windows u WHERE u.agent_id = a.id AND u.billed = 1),
                (SELECT COALESCE(SUM(u.clipped_windows), 0) FROM usage_windows u WHERE u.agent_id = a.id),
                (SELECT COALESCE(SUM(u.windows), 0) FROM usage_windows u
                   WHERE u.agent_id = a.id AND u.outcome LIKE 'expired%'),
                a.next_attempt_ms, a.expected_end_ms, a.last_error
         FROM agents a ORDER BY a.address",
    )?;
    let mut rows = Rows::new(REPORT_FIELDS.to_vec());
    let mut query = stmt.query([])?;
    while let Some(r) = query.next()? {
        let id: i64 = r.get(0)?;
        let status: String = r.get(2)?;
        let fee_bps: i64 = r.get(3)?;
        let pending = usage::unbilled_windows(&store.conn, Some(id))?;
        let due = window_reward.map(|reward| {
            claw(crate::escrow::due_atto(
                reward,
                pending as u64,
                fee_bps as u64,
            ))
        });
        let next = if status == "active" { r.get(9)? } else { None };
        rows.rows.push(vec![
            Cell::Text(r.get(1)?),
            Cell::Text(status),
            Cell::Int(fee_bps),
            Cell::Int(r.get(4)?),
            Cell::Int(r.get(5)?),
            Cell::Int(pending),
            Cell::Int(r.get(6)?),
            Cell::Int(r.get(7)?),
            Cell::Int(r.get(8)?),
            Cell::OptText(due),
            Cell::Time(next),
            Cell::Time(r.get(10)?),
            Cell::OptText(r.get(11)?),
        ]);
    }
    emit(&rows, format, &expiry_warnings(store)?);
    Ok(())
}

/// Unbilled epochs that pass the contract's backbill limit when the next epoch begins.
pub fn expiry_warnings(store: &Store) -> Result<Vec<String>> {
    let (Some(current), Some(limit)) = (
        store.max_epoch_seen()?,
        store.meta_get_i64("escrow_max_backbill_epochs")?,
    ) else {
        return Ok(Vec::new());
    };
    let mut stmt = store.conn.prepare(
        "SELECT a.address, u.epoch, u.windows FROM usage_windows u JOIN agents a ON a.id = u.agent_id
         WHERE u.billed = 0 AND u.outcome IS NULL AND ?1 - u.epoch >= ?2 ORDER BY u.epoch, a.address",
    )?;
    let rows = stmt
        .query_map(params![current, limit], |r| {
            let (address, epoch, windows): (String, i64, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
            Ok(format!(
                "{address} epoch {epoch} ({windows} windows) can no longer be billed once epoch {} begins",
                epoch + limit + 1
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

pub fn attempts(store: &Store, address: &Address, limit: u32, format: Format) -> Result<()> {
    let id = store.agent_id(address)?.ok_or_else(|| {
        Error::usage(format!(
            "unknown agent {address}: see `report` for enrolled agents"
        ))
    })?;
    let mut stmt = store.conn.prepare(
        "SELECT attempted_ms, ok, status_code, duration_ms, counted, end_stream_ms, reason, body_excerpt
         FROM attempts WHERE agent_id = ?1 ORDER BY attempted_ms DESC, id DESC LIMIT ?2",
    )?;
    let mut rows = Rows::new(vec![
        "attempted",
        "ok",
        "status_code",
        "duration_ms",
        "counted",
        "end_stream",
        "reason",
        "body_excerpt",
    ]);
    rows.rows = stmt
        .query_map(params![id, limit], |r| {
            Ok(vec![
                Cell::Time(r.get(0)?),
                Cell::Bool(r.get(1)?),
                Cell::OptInt(r.get(2)?),
                Cell::Int(r.get(3)?),
                Cell::Bool(r.get(4)?),
                Cell::Time(r.get(5)?),
                Cell::Text(r.get(6)?),
                Cell::OptText(
                    r.get::<_, Option<String>>(7)?
                        .map(|e| e.chars().take(80).collect()),
                ),
            ])
        })?
        .collect::<Result<Vec<_>, _>>()?;
    emit(&rows, format, &[]);
    Ok(())
}

pub fn billing_attempts(store: &Store, limit: u32, format: Format) -> Result<()> {
    let mut stmt = store.conn.prepare(
        "SELECT b.created_ms, a.address, b.epoch, b.windows, b.nonce, b.tx_hash, b.status, b.reason
         FROM billing_attempts b JOIN agents a ON a.id = b.agent_id
         ORDER BY b.created_ms DESC, b.id DESC LIMIT ?1",
    )?;
    let mut rows = Rows::new(vec![
        "created", "agent", "epoch", "windows", "nonce", "tx_hash", "status", "reason",
    ]);
    rows.rows = stmt
        .query_map([limit], |r| {
            Ok(vec![
                Cell::Time(r.get(0)?),
                Cell::Text(r.get(1)?),
                Cell::Int(r.get(2)?),
                Cell::Int(r.get(3)?),
                Cell::OptInt(r.get(4)?),
                Cell::OptText(r.get(5)?),
                Cell::Text(r.get(6)?),
                Cell::OptText(r.get(7)?),
            ])
        })?
        .collect::<Result<Vec<_>, _>>()?;
    emit(&rows, format, &[]);
    Ok(())
}
