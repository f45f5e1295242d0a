//! `backup` and `restore` (see `crate::ops::backup`).

use std::path::PathBuf;

use argh::FromArgs;

use super::{Ctx, Run};
use crate::error::{Error, Result};
use crate::net::clock::now_ms;
use crate::ops::{backup, lock};

/// Copy the database consistently while run, ticks and serve keep writing: checked, mode
/// 0600, into a file or as a dated file into a directory.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "backup")]
pub struct Backup {
    /// a file, or a directory for dated copies
    #[argh(option)]
    pub to: PathBuf,
    /// into a directory: keep the newest N dated copies
    #[argh(option)]
    pub keep: Option<usize>,
}

/// Replace the database with a backup (refused while a tick or run holds the lock); the
/// replaced file is kept beside it.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "restore")]
pub struct Restore {
    /// the backup file
    #[argh(positional)]
    pub from: PathBuf,
}

impl Run for Backup {
    fn run(self, ctx: &Ctx) -> Result<()> {
        if self.keep == Some(0) {
            return Err(Error::usage("--keep must be at least 1"));
        }
        if !ctx.db.is_file() {
            return Err(Error::usage(format!(
                "no database at {}: nothing to back up",
                ctx.db.display()
            )));
        }
        backup::check(&ctx.db)?;
        let target = backup::target(&ctx.db, &self.to, now_ms())?;
        let made = backup::backup(&ctx.db, &target, self.keep)?;
        println!(
            "backup {} written ({} bytes, integrity ok){}",
            made.path.display(),
            made.bytes,
            if made.pruned > 0 {
                format!("; {} older copies removed", made.pruned)
            } else {
                String::new()
            }
        );
        let encrypted = ctx.open()?.has_encrypted_signatures()?;
        if encrypted {
            println!("signatures in it stay encrypted: the copy is useless without the key file (back that up apart)");
        } else {
            println!(
                "signatures in it are plain text (no key configured): guard the copy like a key"
            );
        }
        Ok(())
    }
}

impl Run for Restore {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let _lock = lock::acquire(&ctx.db, "restore").map_err(|e| match e {
            Error::Locked(m) => Error::Locked(format!(
                "{m}; stop it first: systemctl stop stream-agency.timer stream-agency-run.service stream-agency-serve.socket stream-agency-serve.service"
            )),
            other => other,
        })?;
        let kept = backup::restore(&ctx.db, &self.from, now_ms())?;
        println!("{} restored from {}", ctx.db.display(), self.from.display());
        if let Some(kept) = kept {
            println!("the replaced database is kept as {}", kept.display());
        }
        println!("next: `stream-agency reconcile --apply` makes the ledger agree with the chain (see README, Disaster recovery)");
        Ok(())
    }
}
