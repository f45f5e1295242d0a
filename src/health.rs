//! What needs a human, for `tick`'s exit status, `check` and the Prometheus metrics.

use std::io::Write;
use std::path::Path;

use rusqlite::params;

use crate::error::{Error, Result};
use crate::report::expiry_warnings;
use crate::store::Store;

/// A window counts as lapsed once it ended this long ago without a new one: a `tick` timer
/// every minute with renewals accepted only after the end leaves gaps below this.
pub const LAPSE_GRACE_MS: i64 = 120_000;
/// An agent failing this long needs a human.
pub const FAILING_FOR_MS: i64 = 3_600_000;

fn strings(store: &Store, sql: &str, p: impl rusqlite::Params) -> Result<Vec<String>> {
    let mut stmt = store.conn.prepare(sql)?;
    let rows = stmt.query_map(p, |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Active agents whose window ended more than the grace ago without a new one.
pub fn lapsed(store: &Store, now: i64) -> Result<Vec<String>> {
    strings(
        store,
        "SELECT address || ': window ended ' || ((?1 - expected_end_ms) / 1000) || ' s ago without renewal'
         FROM agents WHERE status = 'active' AND expected_end_ms < ?1 - ?2 ORDER BY address",
        params![now, LAPSE_GRACE_MS],
    )
}

/// Active agents whose window ends within `warn_ms` with no attempt planned before its end.
pub fn at_risk(store: &Store, now: i64, warn_ms: i64) -> Result<Vec<String>> {
    strings(
        store,
        "SELECT address || CASE WHEN expected_end_ms < ?1 THEN ': window lapsed ' || ((?1 - expected_end_ms) / 1000) || ' s ago'
                                ELSE ': window ends in ' || ((expected_end_ms - ?1) / 1000) || ' s with no renewal planned before' END
         FROM agents WHERE status = 'active' AND expected_end_ms < ?1 + ?2 AND next_attempt_ms > expected_end_ms
         ORDER BY address",
        params![now, warn_ms],
    )
}

/// Active agents failing for longer than [`FAILING_FOR_MS`].
pub fn failing(store: &Store, now: i64) -> Result<Vec<String>> {
    strings(
        store,
        "SELECT address || ': failing for ' || ((?1 - failing_since_ms) / 60000) || ' min: ' || COALESCE(last_error, '?')
         FROM agents WHERE status = 'active' AND failing_since_ms < ?1 - ?2 ORDER BY address",
        params![now, FAILING_FOR_MS],
    )
}

/// Billing transactions pending for longer than `limit_ms`.
pub fn stale_billing(store: &Store, now: i64, limit_ms: i64) -> Result<Vec<String>> {
    strings(
        store,
        "SELECT a.address || ' epoch ' || b.epoch || ': billing transaction pending for ' || ((?1 - b.created_ms) / 1000) || ' s'
         FROM billing_attempts b JOIN agents a ON a.id = b.agent_id
         WHERE b.status = 'pending' AND b.created_ms < ?1 - ?2 ORDER BY b.created_ms",
        params![now, limit_ms],
    )
}

/// What a tick leaves for a human: lapses and long failures.
pub fn tick_attention(store: &Store, now: i64) -> Result<Vec<String>> {
    let mut out = lapsed(store, now)?;
    out.extend(failing(store, now)?);
    Ok(out)
}

/// `check`: everything a monitor should page about.
pub fn check(store: &Store, now: i64, warn_ms: i64, pending_limit_ms: i64) -> Result<Vec<String>> {
    let mut out = at_risk(store, now, warn_ms)?;
    out.extend(failing(store, now)?);
    out.extend(stale_billing(store, now, pending_limit_ms)?);
    out.extend(expiry_warnings(store)?);
    Ok(out)
}

fn one(store: &Store, sql: &str) -> Result<i64> {
    Ok(store.conn.query_row(sql, [], |r| r.get(0))?)
}

/// node_exporter textfile metrics, written atomically (temp file + rename).
pub fn write_prometheus(store: &Store, db: &Path, path: &Path, now: i64) -> Result<()> {
    let mut text = String::new();
    let mut metric = |name: &str, help: &str, samples: Vec<(String, i64)>| {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        text.push_str(&format!(
            "# HELP stream_agency_{name} {help}\n# TYPE stream_agency_{name} {kind}\n"
        ));
        for (labels, value) in samples {
            text.push_str(&format!("stream_agency_{name}{labels} {value}\n"));
        }
    };
    let by_status = |status: &str| -> Result<(String, i64)> {
        let n = store.conn.query_row(
            "SELECT COUNT(*) FROM agents WHERE status = ?1",
            [status],
            |r| r.get(0),
        )?;
        Ok((format!("{{status=\"{status}\"}}"), n))
    };
    metric(
        "agents",
        "Enrolled agents by status.",
        vec![by_status("active")?, by_status("paused")?],
    );
    metric(
        "renewals_total",
        "Renewal attempts by result, over the agents' lifetime.",
        vec![
            (
                "{result=\"ok\"}".into(),
                one(store, "SELECT COALESCE(SUM(success_count), 0) FROM agents")?,
            ),
            (
                "{result=\"failed\"}".into(),
                one(store, "SELECT COALESCE(SUM(failure_count), 0) FROM agents")?,
            ),
        ],
    );
    let pending = crate::store::usage::unbilled_windows(&store.conn, None)?;
    metric(
        "windows",
        "Counted windows by billing state.",
        vec![
            ("{state=\"pending\"}".into(), pending),
            (
                "{state=\"billed\"}".into(),
                one(store, "SELECT COALESCE(SUM(COALESCE(billed_windows, windows)), 0) FROM usage_windows WHERE billed = 1")?,
            ),
            ("{state=\"clipped\"}".into(), one(store, "SELECT COALESCE(SUM(clipped_windows), 0) FROM usage_windows")?),
            (
                "{state=\"expired\"}".into(),
                one(store, "SELECT COALESCE(SUM(windows), 0) FROM usage_windows WHERE outcome LIKE 'expired%'")?,
            ),
        ],
    );
    metric(
        "lapsed_agents",
        "Active agents whose window lapsed.",
        vec![(String::new(), lapsed(store, now)?.len() as i64)],
    );
    metric(
        "billing_failures_total",
        "Billing transactions that failed.",
        vec![(
            String::new(),
            one(
                store,
                "SELECT COUNT(*) FROM billing_attempts WHERE status = 'failed'",
            )?,
        )],
    );
    let last_tick = crate::lock::last_tick_ms(db).unwrap_or(0);
    metric(
        "last_tick_timestamp_seconds",
        "Unix time of the last tick that completed.",
        vec![(String::new(), last_tick / 1000)],
    );
    let tmp = path.with_extension("prom.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write()
        .map_err(|e| Error::runtime(format!("cannot write metrics file {}: {e}", path.display())))
}
