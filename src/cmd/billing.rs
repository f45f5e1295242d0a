//! `billing retry` and `billing skip`: what a human does about held billing.

use argh::FromArgs;

use super::{parse_address, Ctx, Run};
use crate::billing::breaker;
use crate::error::{Error, Result};
use crate::net::clock::now_ms;

/// Act on billing that waits for a human: `retry` re-opens held epochs (and restarts a
/// stopped billing), `skip` settles an epoch unbilled for good.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "billing")]
pub struct Billing {
    #[argh(subcommand)]
    pub action: Action,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Action {
    Retry(Retry),
    Skip(Skip),
}

/// Re-open held epochs for billing (all, one agent's, or one epoch) and restart billing
/// stopped by the circuit breaker, from one transaction in flight.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "retry")]
pub struct Retry {
    /// only this agent's held epochs
    #[argh(option)]
    pub address: Option<String>,
    /// only this epoch (with --address)
    #[argh(option)]
    pub epoch: Option<u64>,
}

/// Settle one open or held epoch as never to be billed, with the reason (recorded and
/// shown by billing-attempts).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "skip")]
pub struct Skip {
    /// the agent's claw1... address
    #[argh(option)]
    pub address: String,
    /// the epoch
    #[argh(option)]
    pub epoch: u64,
    /// why, for the record (1 to 500 printable characters)
    #[argh(option)]
    pub reason: String,
}

impl Run for Billing {
    fn run(self, ctx: &Ctx) -> Result<()> {
        match self.action {
            Action::Retry(a) => a.run(ctx),
            Action::Skip(a) => a.run(ctx),
        }
    }
}

fn epoch_arg(epoch: u64) -> Result<i64> {
    i64::try_from(epoch).map_err(|_| Error::usage(format!("--epoch {epoch} is out of range")))
}

impl Run for Retry {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let address = self.address.as_deref().map(parse_address).transpose()?;
        if self.epoch.is_some() && address.is_none() {
            return Err(Error::usage("--epoch goes with --address"));
        }
        let epoch = self.epoch.map(epoch_arg).transpose()?;
        let mut store = ctx.open()?;
        let agent_id = address.map(|a| store.require_agent(&a)).transpose()?;
        let released = store.release_holds(agent_id, epoch, "billing retry", now_ms())?;
        let stopped = breaker::tripped(&store)?;
        breaker::reset(&store)?;
        println!("re-opened {released} held epochs for billing");
        if let Some(reason) = stopped {
            println!("billing restarted (it had stopped: {reason}); one transaction at a time until bills are confirmed");
        }
        Ok(())
    }
}

impl Run for Skip {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let address = parse_address(&self.address)?;
        let epoch = epoch_arg(self.epoch)?;
        let reason = self.reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control)
        {
            return Err(Error::usage(
                "--reason must be 1 to 500 printable characters: say why this epoch is not billed",
            ));
        }
        let mut store = ctx.open()?;
        let id = store.require_agent(&address)?;
        if !store.skip_epoch(
            id,
            epoch,
            &format!("skipped by a human: {reason}"),
            now_ms(),
        )? {
            return Err(Error::usage(format!(
                "{address} epoch {epoch} has nothing open or held to skip (see billing-attempts)"
            )));
        }
        println!("{address} epoch {epoch} will not be billed: {reason}");
        Ok(())
    }
}
