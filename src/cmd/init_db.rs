//! `init-db`: create or migrate the database.

use argh::FromArgs;

use super::{Ctx, Run};
use crate::error::Result;
use crate::ops::disk;
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
        // Given back the first time the disk is full, so that tick's records fit.
        match disk::make_reserve(&ctx.db) {
            Ok(true) => println!(
                "disk reserve {} made ({} MiB, released if the disk fills up)",
                disk::reserve_path(&ctx.db).display(),
                disk::RESERVE_BYTES >> 20
            ),
            Ok(false) => {}
            Err(e) => log::warn!(
                "cannot make the disk reserve {}: {e} (ticks make it once there is room)",
                disk::reserve_path(&ctx.db).display()
            ),
        }
        Ok(())
    }
}
