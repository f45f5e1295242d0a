//! `remove`: stop serving an agent.

use argh::FromArgs;

use super::{parse_address, Ctx, Run};
use crate::error::Result;

/// Stop serving an agent: never renewed or billed again, its signature wiped, its history
/// kept; refused while windows wait for billing.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "remove")]
pub struct Remove {
    /// the agent's claw1... address
    #[argh(option)]
    pub address: String,
    /// remove even if counted windows are not billed yet (they are settled unbilled)
    #[argh(switch)]
    pub force: bool,
}

impl Run for Remove {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let address = parse_address(&self.address)?;
        let dropped = ctx
            .open()?
            .remove(&address, self.force, crate::net::clock::now_ms())?;
        if dropped > 0 {
            println!("removed {address}; {dropped} unbilled windows will not be billed (--force); its history stays");
        } else {
            println!("removed {address}; its history stays (report --all, billing-attempts)");
        }
        Ok(())
    }
}
