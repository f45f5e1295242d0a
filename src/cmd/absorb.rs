//! `absorb`: on the primary, the windows a standby opened, into the ledger, each once.

use std::path::PathBuf;

use argh::FromArgs;

use super::{Ctx, Run};
use crate::error::{Error, Result};
use crate::store::Store;

/// On the primary: bring every window the standby opened (its database, read read-only)
/// into the ledger, each once (running it again adds nothing; a window known here by its
/// end is not counted twice). The next tick attributes them to their epochs and bills them
/// like any other.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "absorb")]
pub struct Absorb {
    /// the standby's database (its --db), copied here or read in place
    #[argh(positional)]
    pub standby: PathBuf,
}

impl Run for Absorb {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let shown = self.standby.display();
        if self.standby.canonicalize().ok() == ctx.db.canonicalize().ok() {
            return Err(Error::usage(format!(
                "{shown} is this database: give the standby's database"
            )));
        }
        let standby = Store::open_read_only(&self.standby)?.ok_or_else(|| {
            Error::usage(format!(
                "{shown} is not a stream-agency database of this version: give the standby's --db (copy it here first)"
            ))
        })?;
        let windows = standby.opened_windows()?;
        let mut store = ctx.open()?;
        let (added, known, strangers) = store.absorb(&windows)?;
        println!(
            "absorbed {added} windows the standby opened ({known} already known here{}); the next tick attributes and bills them",
            if strangers > 0 {
                format!(", {strangers} of agents not enrolled here skipped")
            } else {
                String::new()
            }
        );
        Ok(())
    }
}
