//! `pause` and `resume`: stop and restart an agent's renewals.

use argh::FromArgs;

use super::{parse_address, Ctx, Run};
use crate::error::Result;
use crate::net::clock::now_ms;

/// Stop renewing an agent (its records stay).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pause")]
pub struct Pause {
    /// the agent's claw1... address
    #[argh(option)]
    pub address: String,
}

/// Renew a paused agent again.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "resume")]
pub struct Resume {
    /// the agent's claw1... address
    #[argh(option)]
    pub address: String,
    /// keep renewing it although it cancelled on the escrow (that work is never paid)
    #[argh(switch)]
    pub even_if_cancelled: bool,
}

impl Run for Pause {
    fn run(self, ctx: &Ctx) -> Result<()> {
        set_status(ctx, &self.address, false)
    }
}

impl Run for Resume {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let address = parse_address(&self.address)?;
        let store = ctx.open()?;
        let id = store.require_agent(&address)?;
        store.set_serve_cancelled(id, self.even_if_cancelled)?;
        if self.even_if_cancelled {
            println!("{address} is renewed even while cancelled on the escrow (its windows cannot be billed)");
        }
        drop(store);
        set_status(ctx, &self.address, true)
    }
}

/// The address is checked before the database is opened: bad input changes nothing.
fn set_status(ctx: &Ctx, address: &str, active: bool) -> Result<()> {
    let address = parse_address(address)?;
    let changed = ctx.open()?.set_status(&address, active, true, now_ms())?;
    let state = if active { "active" } else { "paused" };
    let was = if changed { "is now" } else { "was already" };
    println!("{address} {was} {state}");
    Ok(())
}
