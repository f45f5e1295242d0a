//! `remove`: stop serving an agent.

use argh::FromArgs;

use super::{parse_address, Ctx, Run};
use crate::error::Result;

/// Delete an agent and its records; refused while windows wait for billing.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "remove")]
pub struct Remove {
    /// the agent's claw1... address
    #[argh(option)]
    pub address: String,
    /// delete even if counted windows are not billed yet (they are lost)
    #[argh(switch)]
    pub force: bool,
}

impl Run for Remove {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let address = parse_address(&self.address)?;
        let dropped = ctx.open()?.remove(&address, self.force)?;
        if dropped > 0 {
            println!("removed {address}; {dropped} unbilled windows were dropped (--force)");
        } else {
            println!("removed {address}");
        }
        Ok(())
    }
}
