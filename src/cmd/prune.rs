//! `prune`: delete old records nothing depends on any more.

use argh::FromArgs;

use super::{Ctx, Run};
use crate::error::{Error, Result};
use crate::net::clock::now_ms;

/// Delete attempts and settled billing records older than N days (never unbilled usage).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "prune")]
pub struct Prune {
    /// age in days of the records to delete
    #[argh(option)]
    pub older_than: u32,
}

impl Run for Prune {
    fn run(self, ctx: &Ctx) -> Result<()> {
        if self.older_than == 0 {
            return Err(Error::usage("--older-than must be at least 1 day"));
        }
        let cutoff = now_ms() - i64::from(self.older_than) * 86_400_000;
        println!("{}", ctx.open()?.prune(cutoff)?);
        Ok(())
    }
}
