//! Databases as the Python MVP (`stream_agency.py`) leaves them, built from
//! `shared/spec/mvp-database.md`: its own schema, WAL mode, mode 0644, no user_version.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rusqlite::{params, Connection};

/// The MVP's schema, as its `CREATE TABLE IF NOT EXISTS` statements make it.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS agents (
    id INTEGER PRIMARY KEY AUTOINCREMENT, address TEXT UNIQUE NOT NULL,
    stream_signature TEXT NOT NULL, fee_bps INTEGER NOT NULL DEFAULT 500,
    status TEXT NOT NULL DEFAULT 'active', expected_end_ms INTEGER, next_attempt_ms INTEGER,
    retry_step INTEGER NOT NULL DEFAULT 0, success_count INTEGER NOT NULL DEFAULT 0,
    failure_count INTEGER NOT NULL DEFAULT 0, fee_due_claw REAL NOT NULL DEFAULT 0,
    last_success_ms INTEGER, last_error TEXT, created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, agent_id INTEGER NOT NULL, attempted_ms INTEGER NOT NULL,
    ok INTEGER NOT NULL, status_code INTEGER NOT NULL, reason TEXT, end_stream_ms INTEGER,
    response_body TEXT, FOREIGN KEY(agent_id) REFERENCES agents(id));
CREATE TABLE IF NOT EXISTS usage_windows (
    agent_id INTEGER NOT NULL, epoch INTEGER NOT NULL, windows INTEGER NOT NULL DEFAULT 0,
    billed INTEGER NOT NULL DEFAULT 0, billed_at_ms INTEGER, last_error TEXT,
    PRIMARY KEY(agent_id, epoch), FOREIGN KEY(agent_id) REFERENCES agents(id));
CREATE TABLE IF NOT EXISTS billing_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT, agent_id INTEGER NOT NULL, epoch INTEGER NOT NULL,
    windows INTEGER NOT NULL, attempted_ms INTEGER NOT NULL, ok INTEGER NOT NULL,
    return_code INTEGER NOT NULL, stdout TEXT, stderr TEXT, FOREIGN KEY(agent_id) REFERENCES agents(id));
";

/// An agent row of the MVP.
pub struct Agent<'a> {
    pub address: &'a str,
    pub signature: &'a str,
    pub fee_bps: i64,
    pub status: &'a str,
}

/// Creates an MVP database with these agents; returns the open connection (WAL mode).
pub fn create(path: &Path, agents: &[Agent]) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .unwrap();
    conn.execute_batch(SCHEMA).unwrap();
    for a in agents {
        conn.execute(
            "INSERT INTO agents (address, stream_signature, fee_bps, status, expected_end_ms, next_attempt_ms,
                                 retry_step, success_count, failure_count, fee_due_claw, last_success_ms,
                                 last_error, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, 1795008100000, 1795007740000, 1, 7, 2, 0.35, 1795006300000,
                     '403: already streaming', 1794000000000, 1795006300000)",
            params![a.address, a.signature, a.fee_bps, a.status],
        )
        .unwrap();
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    conn
}

pub fn usage(conn: &Connection, agent_id: i64, epoch: i64, windows: i64, billed: bool) {
    conn.execute(
        "INSERT INTO usage_windows (agent_id, epoch, windows, billed, billed_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![agent_id, epoch, windows, billed, billed.then_some(1795000040000i64)],
    )
    .unwrap();
}

/// An attempt whose raw body echoes `echo` (the MVP stored bodies as they came).
pub fn attempt(conn: &Connection, agent_id: i64, ok: bool, echo: &str) {
    let body = if ok {
        r#"{"status": "streaming", "end_stream": 1795001800000}"#.to_string()
    } else {
        format!(r#"{{"error": "Already streaming", "signature": "{echo}"}}"#)
    };
    conn.execute(
        "INSERT INTO attempts (agent_id, attempted_ms, ok, status_code, reason, end_stream_ms, response_body)
         VALUES (?1, 1795000000000, ?2, ?3, ?4, 1795001800000, ?5)",
        params![agent_id, ok, if ok { 200 } else { 403 }, if ok { "ok" } else { "already_streaming" }, body],
    )
    .unwrap();
}

pub fn billing_attempt(conn: &Connection, agent_id: i64, epoch: i64, windows: i64, ok: bool) {
    let (stdout, stderr) = if ok {
        (
            format!("Transaction hash: {}", "ab".repeat(32)),
            String::new(),
        )
    } else {
        (
            String::new(),
            "RuntimeError: clawpy contract call failed (1)".to_string(),
        )
    };
    conn.execute(
        "INSERT INTO billing_attempts (agent_id, epoch, windows, attempted_ms, ok, return_code, stdout, stderr)
         VALUES (?1, ?2, ?3, 1795000040000, ?4, ?5, ?6, ?7)",
        params![agent_id, epoch, windows, ok, if ok { 0 } else { 1 }, stdout, stderr],
    )
    .unwrap();
}
