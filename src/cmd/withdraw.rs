//! `withdraw`: the escrow owner's cash-out from `claimableOwner` (`billing::withdraw`).

use std::path::PathBuf;

use super::{Ctx, Run};
use crate::billing::withdraw::Amount;
use crate::billing::Biller;
use crate::chain::fees::{claw, parse_claw};
use crate::crypto::keys::Address;
use crate::error::{Error, Result};

crate::view_command! {
    /// The escrow owner withdraws from its claimable (getClaimableOwner): checked against
    /// the escrow's owner, simulated, its fee shown, written ahead and sent once, then
    /// confirmed by the contract's view. A withdrawal left unresolved by an earlier run is
    /// resolved first.
    #[argh(subcommand, name = "withdraw")]
    Withdraw {
        /// the escrow owner's wallet (PEM, readable by its owner only)
        #[argh(option)]
        pub owner_pem: PathBuf,
        /// withdraw everything claimable
        #[argh(switch)]
        pub all: bool,
        /// withdraw this many CLAW (e.g. 12.5)
        #[argh(option)]
        pub amount: Option<String>,
        /// pay to this address instead of the owner's (claw1...)
        #[argh(option)]
        pub to: Option<String>,
    }
}

impl Run for Withdraw {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let amount = match (self.all, self.amount.as_deref()) {
            (true, None) => Amount::All,
            (false, Some(text)) => {
                Amount::Atto(parse_claw(text).map_err(|e| Error::usage(format!("--amount: {e}")))?)
            }
            _ => return Err(Error::usage("give --all or --amount CLAW (one of them)")),
        };
        let to = match &self.to {
            Some(text) => {
                Some(Address::parse(text).map_err(|e| Error::usage(format!("--to {text}: {e}")))?)
            }
            None => None,
        };
        let view = self.view_config()?;
        let timeout = view.timeout;
        let cfg = crate::config::owner_config(view, &self.owner_pem)?;
        let store = ctx.open()?;
        let agent = crate::net::http::agent(timeout, &cfg.proxy);
        let mut biller = Biller::new(cfg, agent);
        let done = biller.withdraw_owner(&store, amount, to, &mut |line| println!("{line}"))?;
        let fee = done.fee.map_or("unknown".into(), claw);
        let earlier = if done.earlier {
            " (sent by an earlier run)"
        } else {
            ""
        };
        println!(
            "withdrew {} CLAW{earlier}: transaction {}, fee {fee} CLAW; the owner's claimable is now {} CLAW{}",
            claw(done.amount),
            done.hash,
            claw(done.after),
            done.before.map_or(String::new(), |b| format!(" (was {})", claw(b)))
        );
        Ok(())
    }
}
