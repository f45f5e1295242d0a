//! One file per command (or close family of commands), each implementing [`Run`].
//!
//! To add a command: create its file here with an argh struct and `impl Run`, then add
//! one line to the `commands!` list in `cli.rs`. Argument checks live with the command;
//! what commands share (opening the database, "needs a human") lives here.

pub(crate) mod absorb;
pub(crate) mod backup;
pub(crate) mod billing;
pub(crate) mod check;
pub(crate) mod earnings;
pub mod enroll;
pub(crate) mod import_mvp;
pub(crate) mod init_db;
pub(crate) mod prune;
pub(crate) mod reconcile;
pub(crate) mod remove;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod secrets;
pub(crate) mod serve;
pub(crate) mod standby;
pub(crate) mod status;
pub(crate) mod tick;
pub(crate) mod token;
pub(crate) mod withdraw;

use std::path::PathBuf;

use crate::crypto::keys::Address;
use crate::crypto::secrets::SecretKey;
use crate::error::{Error, Result};
use crate::store::Store;

/// What every command gets: where the database is and how to open it.
pub struct Ctx {
    pub db: PathBuf,
    pub key_file: Option<PathBuf>,
}

/// A command: parsed arguments that know how to run themselves.
pub trait Run {
    fn run(self, ctx: &Ctx) -> Result<()>;
}

impl Ctx {
    /// The database of `--db`, else `STREAM_AGENCY_DB`, else `stream-agency.db`.
    pub fn new(db: Option<PathBuf>, key_file: Option<PathBuf>) -> Ctx {
        Ctx {
            db: crate::config::db_path(db),
            key_file: crate::config::secret_key_file(key_file),
        }
    }

    pub fn open(&self) -> Result<Store> {
        Store::open(&self.db)
    }

    /// Opens with the secret key, for commands that read or write stream signatures.
    /// Refused, before anything is written, when the stored signatures are sealed and no
    /// key is given (new ones would go in plain text beside them) or the key given does not
    /// open them (new ones would be sealed with a key `tick` cannot use).
    pub fn open_with_secrets(&self) -> Result<Store> {
        let key = self.key_file.as_deref().map(SecretKey::load).transpose()?;
        let mut store = self.open()?;
        store.secret_key = key;
        store.check_secret_key()?;
        Ok(store)
    }

    /// The database opened to write, or, on a read-only file system, read-only: `tick`
    /// and `run` renew on (their records wait; see `crate::ops::disk`), `check` says so.
    pub fn open_even_read_only(&self) -> Result<Store> {
        let opened = self.open();
        let read_only = crate::ops::disk::space(&self.db).is_some_and(|s| s.read_only);
        match opened {
            Err(e) if read_only => {
                let store = Store::open_read_only(&self.db)?.ok_or(e)?;
                log::error!(
                    "{} is on a read-only file system: nothing can be recorded until it is writable",
                    self.db.display()
                );
                Ok(store)
            }
            other => other,
        }
    }

    /// For `tick` and `run`: [`Ctx::open_even_read_only`], with the secret key.
    pub fn open_for_renewals(&self) -> Result<Store> {
        let key = self.key_file.as_deref().map(SecretKey::load).transpose()?;
        let mut store = self.open_even_read_only()?;
        store.secret_key = key;
        Ok(store)
    }

    /// For commands that must not create a database (a dry run).
    pub fn open_existing(&self) -> Result<Store> {
        if !self.db.exists() {
            return Err(Error::usage(format!(
                "no database at {}: run init-db or enroll first",
                self.db.display()
            )));
        }
        self.open_with_secrets()
    }
}

/// A `--shard K/N` argument, checked before the database is opened.
pub fn shard_arg(text: Option<&str>) -> Result<Option<crate::store::Shard>> {
    text.map(crate::store::Shard::parse)
        .transpose()
        .map_err(crate::error::Error::usage)
}

/// An `--address` argument, checked before the database is opened.
pub fn parse_address(text: &str) -> Result<Address> {
    Address::parse(text).map_err(|e| Error::usage(format!("--address: {e}")))
}

/// What needs a human ends `tick` and `check` with exit status 4 (after the work is done).
pub fn needs_human(items: &[String]) -> Result<()> {
    let Some(first) = items.first() else {
        return Ok(());
    };
    for item in items {
        log::error!("needs a human: {item}");
    }
    let more = match items.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    Err(Error::NeedsHuman(format!("needs a human: {first}{more}")))
}
