//! `init-db`: create or migrate the database.

use argh::FromArgs;

use super::{Ctx, Run};
use crate::error::Result;
use crate::store::Store;

/// Create or migrate the database (idempotent).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "init-db")]
pub struct InitDb {}

impl Run for InitDb {
    fn run(self, ctx: &Ctx) -> Result<()> {
        ctx.open()?;
        println!(
            "database {} ready (schema version {})",
            ctx.db.display(),
            Store::schema_version()
        );
        Ok(())
    }
}
