//! `standby`: the loop on a standby host (see `crate::standby`).

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use super::{Ctx, Run};
use crate::error::{Error, Result};
use crate::ops::{lock, notify};
use crate::standby::Standby;
use crate::tick::Agency;
use crate::{config, now_ms};

crate::runtime_command! {
    /// On a standby host: renew an agent only when the primary is late (no window of it,
    /// in the primary's copy or our own records, reaches past now + --standby-lead-seconds);
    /// never bill. --copy is the read-only copy Litestream's follower keeps.
    #[argh(subcommand, name = "standby")]
    StandbyCmd {
        /// the primary's database as Litestream's follower restores it (read-only)
        #[argh(option)]
        pub copy: PathBuf,
        /// renew when no window reaches this far ahead; must be below --lead-seconds, the
        /// primary's (default: 120)
        #[argh(option)]
        pub standby_lead_seconds: Option<u64>,
        /// longest sleep between passes in seconds (default: 20)
        #[argh(option)]
        pub poll_seconds: Option<u64>,
    }
}

impl Run for StandbyCmd {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let args = self.runtime_args();
        let alerts = notify::AlertArgs::of(&args).resolve()?;
        let mut cfg = args.resolve()?;
        let lead = config::u64_opt(self.standby_lead_seconds, "standby-lead-seconds", 120)?;
        let primary_lead = cfg.policy.lead_ms / 1000;
        if lead == 0 || lead as i64 >= primary_lead {
            return Err(Error::usage(format!(
                "--standby-lead-seconds ({lead}) must be between 1 and below --lead-seconds ({primary_lead}), the primary's: the standby renews only once the primary is late"
            )));
        }
        if cfg.billing.take().is_some() {
            log::info!(
                "standby: the billing options are ignored: a standby never sends a transaction"
            );
        }
        // A standby brings no copy home: it is the copy's source (an env file shared by
        // both hosts may name one).
        cfg.standby_copy = None;
        cfg.policy.lead_ms = lead as i64 * 1000;
        cfg.policy.jitter_ms = cfg.policy.jitter_ms.min(cfg.policy.lead_ms / 2);
        let poll = config::poll_seconds(self.poll_seconds)?;
        let mut lock = lock::acquire(&ctx.db, "standby")?;
        let mut agency = Agency::new(ctx.open_for_renewals()?, cfg);
        let mut standby = Standby::new(self.copy, lead as i64 * 1000);
        crate::ops::signals::stop_on_signals(&agency.stop)?;
        log::info!(
            "standby: started, copy {}, renewing an agent when no window reaches {lead}s ahead",
            standby.copy.display()
        );
        while !agency.stop.load(Ordering::SeqCst) {
            let pass = standby.pass(&mut agency)?;
            lock.tick_completed(now_ms());
            notify::after(&mut agency.store, &alerts, &pass.problems, now_ms());
            if pass.tick.due > 0 {
                println!("standby {}", pass.tick);
            }
            let poll_ms = poll as i64 * 1000;
            let wake = pass
                .tick
                .next_due_ms
                .map_or(now_ms() + poll_ms, |n| n.min(now_ms() + poll_ms));
            crate::ops::signals::sleep_until(&agency.stop, wake);
        }
        log::info!("standby: stopped by signal");
        Ok(())
    }
}
