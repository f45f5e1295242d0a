//! The SQLite database: opening, schema migrations and small key/value facts.
//!
//! SQL only: this layer knows no network, no chain client and no billing pass. Queries
//! live next to their concern:
//! - `agents`: enrollment, the due list, renewal outcomes;
//! - `usage`: windows, their epochs and the epoch timeline;
//! - `billing`: billEpoch bookkeeping (write-ahead transactions, attempts, holds);
//! - `escrow`: the escrow's statuses, settlements, enforcements;
//! - `fees`: what transactions cost, bills held as unprofitable;
//! - `standby`: the primary's copy read, mirrored into a standby's database, absorbed;
//! - `history`: the pages' history, a row per epoch (recorded at its close, its bills kept true);
//! - `withdrawals`: the owner's withdrawals from the escrow, written ahead like bills;
//! - `views`: read-only queries of the reports and checks;
//! - `intake`: the HTTP intake's tokens and used action messages;
//! - `alerts`: problems told, the notification outbox;
//! - `mvp`: the Python MVP's database brought over (`import-mvp`);
//! - `recognize`: what a file is (ours, the MVP's, another application's) before opening.
//!
//! No other module touches `conn`, but `ops::backup`, which copies the file.

pub(crate) mod agents;
pub(crate) mod alerts;
pub(crate) mod billing;
pub(crate) mod escrow;
pub(crate) mod fees;
pub(crate) mod history;
pub(crate) mod intake;
pub(crate) mod mvp;
pub(crate) mod recognize;
pub(crate) mod standby;
pub(crate) mod usage;
pub(crate) mod views;
pub(crate) mod withdrawals;

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension};
use rusqlite_migration::{Migrations, M};

use crate::error::{Error, Result};

/// The SQL condition on `agents` of an agent we renew: active, not cancelled on the
/// escrow unless the operator said so (`resume --even-if-cancelled`), not held for its
/// unpaid, enforced epochs, and not waiting for the escrow's confirmation of an intake
/// enrollment. A literal, for `concat!` into the queries that need it.
macro_rules! served {
    () => {
        "status = 'active' AND (escrow_status IS NOT 'cancelled' OR serve_cancelled = 1) AND debt_hold_ms IS NULL AND intake_confirm_ms IS NULL"
    };
}
pub(crate) use served;

/// Numbered plain-SQL migrations from `sql/`, applied in order and recorded in
/// `PRAGMA user_version`.
fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("../../sql/0001_initial.sql")),
        M::up(include_str!("../../sql/0002_ledger.sql")),
        M::up(include_str!("../../sql/0003_epochs.sql")),
        M::up(include_str!("../../sql/0004_escrow.sql")),
        M::up(include_str!("../../sql/0005_intake.sql")),
        M::up(include_str!("../../sql/0006_alerts.sql")),
        M::up(include_str!("../../sql/0007_typed_outcomes.sql")),
        M::up(include_str!("../../sql/0008_fees.sql")),
        M::up(include_str!("../../sql/0009_unusual_days.sql")),
        M::up(include_str!("../../sql/0010_pages.sql")),
    ])
}

/// The schema version this binary writes.
const SCHEMA_VERSION: usize = 10;

pub struct Store {
    conn: Connection,
    /// Encrypts stream signatures at rest when configured.
    pub secret_key: Option<crate::crypto::secrets::SecretKey>,
    /// This process's part of the agents to renew (`--shard K/N`); all of them when `None`.
    pub shard: Option<Shard>,
}

/// A part of the agents, for one of N renewer processes: those whose id is `index` modulo
/// `count`. The parts of one N are disjoint and together every agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// `K/N` (or `K-N`, as a systemd instance name), 0 <= K < N <= 64.
    pub fn parse(text: &str) -> std::result::Result<Shard, String> {
        let (k, n) = text
            .split_once(['/', '-'])
            .ok_or_else(|| format!("--shard {text}: give K/N, e.g. 0/4"))?;
        let (Ok(index), Ok(count)) = (k.trim().parse::<u32>(), n.trim().parse::<u32>()) else {
            return Err(format!("--shard {text}: K and N must be numbers, e.g. 0/4"));
        };
        if count == 0 || count > 64 || index >= count {
            return Err(format!(
                "--shard {text}: N must be 1 to 64 and K below N (shards 0/N to {}/N)",
                count.max(1) - 1
            ));
        }
        Ok(Shard { index, count })
    }

    /// The SQL condition on `agents` of this shard (integers only), after an `AND`.
    fn condition(shard: Option<Shard>) -> String {
        match shard {
            Some(Shard { index, count }) if count > 1 => format!(" AND id % {count} = {index}"),
            _ => String::new(),
        }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Store {
    /// Opens (creating with mode 0600 if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<Store> {
        let shown = path.display();
        if path.is_dir() {
            return Err(Error::usage(format!(
                "database path {shown} is a directory: give a file path with --db"
            )));
        }
        // Never change a file that is not ours: recognised read-only, refused in one line.
        let found = recognize::recognize(path)?;
        if let Some(refusal) = recognize::refusal(path, &found, SCHEMA_VERSION) {
            return Err(refusal);
        }
        if path.exists() {
            crate::crypto::private::check_private_file(path, "database")?;
        } else {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| Error::runtime(format!("cannot create database {shown}: {e}")))?;
        }
        let mut conn = Connection::open(path)
            .map_err(|e| Error::runtime(format!("cannot open database {shown}: {e}")))?;
        let not_sqlite = |e: rusqlite::Error| {
            Error::runtime(format!(
                "{shown} is not a stream-agency database ({e}): check --db / STREAM_AGENCY_DB"
            ))
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(not_sqlite)?;
        // Every transaction takes the write lock when it begins (waiting up to the busy
        // timeout): a deferred one that reads, then writes, fails at once with
        // SQLITE_BUSY when another process (run, a tick, serve) wrote in between.
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        // 1 KiB pages: a renewal's commit rewrites about seven pages (agent, schedule index,
        // attempt, its index, window, ...), and their size is what the WAL writes and
        // checksums. Only takes effect on a new, empty database.
        conn.execute_batch("PRAGMA page_size = 1024;")
            .map_err(not_sqlite)?;
        // WAL: readers (report, sqlite3 scripts) never block the tick. NORMAL sync is
        // crash-safe for a killed process; only an OS crash can lose the last commits.
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(not_sqlite)?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(not_sqlite)?;
        migrations().to_latest(&mut conn).map_err(|e| match e {
            rusqlite_migration::Error::MigrationDefinition(
                rusqlite_migration::MigrationDefinitionError::DatabaseTooFarAhead,
            ) => Error::runtime(format!(
                "database {shown} has a newer schema than this binary knows ({} migrations): upgrade stream-agency",
                SCHEMA_VERSION
            )),
            rusqlite_migration::Error::RusqliteError { err, .. } => not_sqlite(err),
            other => Error::runtime(format!("cannot migrate database {shown}: {other}")),
        })?;
        Ok(Store {
            conn,
            secret_key: None,
            shard: None,
        })
    }

    /// Opens read-only, without migrating: for a tick that may have nothing to write.
    /// `None` when the file is missing or not at this binary's schema version (the full
    /// path then creates or migrates it); any error is the caller's to fall back from.
    pub fn open_read_only(path: &Path) -> Result<Option<Store>> {
        if !path.is_file() {
            return Ok(None);
        }
        // Creates nothing beside the file (no -wal or -shm where none exists): the tick
        // holds the lock, so no writer of ours can be running meanwhile.
        let conn = recognize::open_read_only(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version != SCHEMA_VERSION {
            return Ok(None);
        }
        Ok(Some(Store {
            conn,
            secret_key: None,
            shard: None,
        }))
    }

    /// The database file (none for an in-memory database).
    pub fn path(&self) -> Option<std::path::PathBuf> {
        self.conn
            .path()
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
    }

    /// Opened read-only (a read-only file system): every write fails.
    pub fn is_read_only(&self) -> bool {
        self.conn
            .is_readonly(rusqlite::DatabaseName::Main)
            .unwrap_or(false)
    }

    pub fn schema_version() -> usize {
        SCHEMA_VERSION
    }

    pub fn meta_get(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn meta_get_i64(&self, key: &str) -> Result<Option<i64>> {
        Ok(self.meta_get(key)?.and_then(|v| v.parse().ok()))
    }

    pub fn meta_delete(&self, key: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM meta WHERE key = ?1", [key])?;
        Ok(())
    }

    /// Sets `key`, writing only a change: callers may set what they learn on every tick
    /// and an idle tick still leaves the database file alone.
    pub fn meta_set(&self, key: &str, value: &str) -> Result<()> {
        if self.meta_get(key)?.as_deref() == Some(value) {
            return Ok(());
        }
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }
}

/// What `prune` removed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub attempts: usize,
    pub billing_attempts: usize,
    pub windows: usize,
    pub free_bytes: i64,
}

impl std::fmt::Display for Pruned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pruned {} attempts, {} settled billing records, {} billed window records; {:.1} MiB free for reuse in the database",
            self.attempts,
            self.billing_attempts,
            self.windows,
            self.free_bytes as f64 / 1_048_576.0
        )
    }
}

impl Store {
    /// Deletes records older than `cutoff_ms` that nothing depends on any more: attempts,
    /// billing records of settled epochs, and windows of settled epochs. Unbilled usage,
    /// and the billing records of open or held epochs, are kept; `prune` is the only way
    /// billing records are ever deleted.
    pub fn prune(&mut self, cutoff_ms: i64) -> Result<Pruned> {
        let tx = self.conn.transaction()?;
        let attempts = tx.execute("DELETE FROM attempts WHERE attempted_ms < ?1", [cutoff_ms])?;
        let billing_attempts = tx.execute(
            "DELETE FROM billing_attempts WHERE updated_ms < ?1 AND status <> 'pending'
             AND NOT EXISTS (SELECT 1 FROM usage_windows u WHERE u.agent_id = billing_attempts.agent_id
                             AND u.epoch = billing_attempts.epoch AND (u.kind IS NULL OR u.kind = 'held'))",
            [cutoff_ms],
        )?;
        let windows = tx.execute(
            "DELETE FROM stream_windows WHERE opened_ms < ?1 AND epoch IS NOT NULL
             AND EXISTS (SELECT 1 FROM usage_windows u WHERE u.agent_id = stream_windows.agent_id
                         AND u.epoch = stream_windows.epoch AND u.kind IS NOT NULL AND u.kind <> 'held')",
            [cutoff_ms],
        )?;
        tx.commit()?;
        let free_bytes = self.conn.query_row(
            "SELECT (SELECT freelist_count FROM pragma_freelist_count) * (SELECT page_size FROM pragma_page_size)",
            [],
            |r| r.get(0),
        )?;
        Ok(Pruned {
            attempts,
            billing_attempts,
            windows,
            free_bytes,
        })
    }
}

#[cfg(test)]
pub(crate) fn memory_store() -> Store {
    let mut conn = Connection::open_in_memory().unwrap();
    conn.execute_batch("PRAGMA foreign_keys = ON;").unwrap();
    migrations().to_latest(&mut conn).unwrap();
    Store {
        conn,
        secret_key: None,
        shard: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shards_of_one_count_are_disjoint_and_together_every_agent() {
        let mut s = memory_store();
        for i in 0..50u64 {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&i.to_be_bytes());
            let w = crate::crypto::keys::Wallet::from_seed(&seed);
            s.enroll(&w.address(), "aa", 500, 0).unwrap();
        }
        for count in [1, 2, 3, 4, 7, 16] {
            let mut seen = std::collections::HashSet::new();
            for index in 0..count {
                s.shard = Some(Shard { index, count });
                for a in s.due_agents(1).unwrap() {
                    assert!(seen.insert(a.id), "agent {} in two shards of {count}", a.id);
                }
            }
            assert_eq!(seen.len(), 50, "shards of {count}");
        }
        assert!(Shard::parse("4/4").is_err() && Shard::parse("x").is_err());
        assert_eq!(Shard::parse("1/4"), Ok(Shard { index: 1, count: 4 }));
        assert_eq!(Shard::parse("3-4"), Ok(Shard { index: 3, count: 4 }));
    }

    #[test]
    fn migrations_are_valid() {
        migrations().validate().unwrap();
        let v: usize = {
            let mut c = Connection::open_in_memory().unwrap();
            migrations().to_latest(&mut c).unwrap();
            c.pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap()
        };
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn newer_schema_is_refused_and_file_is_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        drop(Store::open(&path).unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Idempotent.
        drop(Store::open(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        let err = Store::open(&path).err().unwrap().to_string();
        assert!(err.contains("newer schema"), "{err}");
    }
}
