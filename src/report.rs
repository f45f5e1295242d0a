//! Read-only views for people and scripts: `report`, `attempts`, `billing-attempts`.
//! No query here ever selects `stream_signature`.

use std::time::{Duration, UNIX_EPOCH};

use rusqlite::params;

use crate::error::{Error, Result};
use crate::keys::Address;
use crate::store::{usage, Store};

/// A Unix-ms time as UTC (RFC 3339, seconds), or "-".
pub fn utc(ms: Option<i64>) -> String {
    match ms {
        Some(ms) if ms >= 0 => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms as u64))
                .to_string()
        }
        _ => "-".into(),
    }
}

/// Prints rows as aligned columns; the last column is left unpadded.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        let text: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        println!("{}", text.join("  ").trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn or_dash(v: Option<String>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or_else(|| "-".into())
}

/// Atto-CLAW (10^-18) as CLAW with four decimals.
pub fn claw(atto: u128) -> String {
    let unit = 1_000_000_000_000_000_000u128;
    format!("{}.{:04}", atto / unit, (atto % unit) / 100_000_000_000_000)
}

pub fn report(store: &Store) -> Result<()> {
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
    let mut rows = Vec::new();
    let mut query = stmt.query([])?;
    while let Some(r) = query.next()? {
        let id: i64 = r.get(0)?;
        let active = r.get::<_, String>(2)? == "active";
        let fee_bps: i64 = r.get(3)?;
        let pending = usage::unbilled_windows(&store.conn, id)?;
        let due = window_reward.map_or("-".into(), |reward| {
            claw(crate::escrow::due_atto(
                reward,
                pending as u64,
                fee_bps as u64,
            ))
        });
        rows.push(vec![
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            fee_bps.to_string(),
            r.get::<_, i64>(4)?.to_string(),
            r.get::<_, i64>(5)?.to_string(),
            pending.to_string(),
            r.get::<_, i64>(6)?.to_string(),
            r.get::<_, i64>(7)?.to_string(),
            r.get::<_, i64>(8)?.to_string(),
            due,
            if active { utc(r.get(9)?) } else { "-".into() },
            utc(r.get(10)?),
            or_dash(r.get(11)?),
        ]);
    }
    print_table(
        &[
            "ADDRESS",
            "STATUS",
            "FEE_BPS",
            "RENEWED",
            "FAILED",
            "PENDING",
            "BILLED",
            "CLIPPED",
            "EXPIRED",
            "DUE_CLAW",
            "NEXT_ATTEMPT",
            "WINDOW_END",
            "LAST_ERROR",
        ],
        &rows,
    );
    for warning in expiry_warnings(store)? {
        println!("warning: {warning}");
    }
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

pub fn attempts(store: &Store, address: &Address, limit: u32) -> Result<()> {
    let id = store.agent_id(address)?.ok_or_else(|| {
        Error::usage(format!(
            "unknown agent {address}: see `report` for enrolled agents"
        ))
    })?;
    let mut stmt = store.conn.prepare(
        "SELECT attempted_ms, ok, status_code, duration_ms, counted, end_stream_ms, reason, body_excerpt
         FROM attempts WHERE agent_id = ?1 ORDER BY attempted_ms DESC, id DESC LIMIT ?2",
    )?;
    let rows = stmt
        .query_map(params![id, limit], |r| {
            Ok(vec![
                utc(r.get(0)?),
                if r.get::<_, bool>(1)? {
                    "yes".into()
                } else {
                    "no".into()
                },
                r.get::<_, Option<u16>>(2)?
                    .map_or("-".into(), |s| s.to_string()),
                r.get::<_, i64>(3)?.to_string(),
                if r.get::<_, bool>(4)? {
                    "yes".into()
                } else {
                    "no".into()
                },
                utc(r.get(5)?),
                r.get::<_, String>(6)?,
                or_dash(
                    r.get::<_, Option<String>>(7)?
                        .map(|e| e.chars().take(80).collect()),
                ),
            ])
        })?
        .collect::<Result<Vec<_>, _>>()?;
    print_table(
        &[
            "TIME",
            "OK",
            "HTTP",
            "MS",
            "COUNTED",
            "END_STREAM",
            "REASON",
            "BODY",
        ],
        &rows,
    );
    Ok(())
}

pub fn billing_attempts(store: &Store, limit: u32) -> Result<()> {
    let mut stmt = store.conn.prepare(
        "SELECT b.created_ms, a.address, b.epoch, b.windows, b.nonce, b.tx_hash, b.status, b.reason
         FROM billing_attempts b JOIN agents a ON a.id = b.agent_id
         ORDER BY b.created_ms DESC, b.id DESC LIMIT ?1",
    )?;
    let rows = stmt
        .query_map([limit], |r| {
            Ok(vec![
                utc(r.get(0)?),
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?.to_string(),
                r.get::<_, i64>(3)?.to_string(),
                r.get::<_, Option<i64>>(4)?
                    .map_or("-".into(), |n| n.to_string()),
                or_dash(r.get(5)?),
                r.get::<_, String>(6)?,
                or_dash(r.get(7)?),
            ])
        })?
        .collect::<Result<Vec<_>, _>>()?;
    print_table(
        &[
            "TIME", "AGENT", "EPOCH", "WINDOWS", "NONCE", "TX_HASH", "STATUS", "REASON",
        ],
        &rows,
    );
    Ok(())
}
