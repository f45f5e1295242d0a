//! `reconcile`: the local ledger against the chain (`billing::reconcile` does the walk);
//! prints each difference and exits 4 while any needs a human.

use super::{Ctx, Run};
use crate::billing::reconcile::{reconcile, Difference, Reconciled};
use crate::error::{Error, Result};
use crate::ops::output::{Cell, Format, Rows};

crate::view_command! {
    /// Compare the local billing ledger with the escrow contract's getEpochState (and the
    /// escrow's fee with ours); exit 4 on any difference. --apply makes the local ledger
    /// follow the chain in one transaction. Resumes where a bounded run stopped.
    #[argh(subcommand, name = "reconcile")]
    Reconcile {
        /// only epochs from this one on
        #[argh(option, default = "0")]
        pub since_epoch: u64,
        /// make the local ledger follow the chain (mark billed what the chain has, re-open
        /// what it lacks and can still take, record the rest as lost)
        #[argh(switch)]
        pub apply: bool,
        /// at most this many (agent, epoch) pairs per run; the next run continues (default: 100000)
        #[argh(option, default = "100_000")]
        pub max_pairs: usize,
        /// table, json or tsv (default: table)
        #[argh(option, default = "Format::Table")]
        pub format: Format,
    }
}

impl Run for Reconcile {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let cfg = self.view_config()?;
        if self.max_pairs == 0 {
            return Err(Error::usage("--max-pairs must be at least 1"));
        }
        let since = i64::try_from(self.since_epoch)
            .map_err(|_| Error::usage("--since-epoch is out of range"))?;
        let mut store = ctx.open()?;
        let Reconciled {
            found,
            lost,
            fees,
            done,
        } = reconcile(&mut store, &cfg, since, self.max_pairs, self.apply)?;
        print_differences(&found, self.format);
        if done {
            eprintln!(
                "reconcile: {} differences; the whole ledger was checked",
                found.len()
            );
        } else {
            eprintln!(
                "reconcile: {} differences so far; --max-pairs reached, run again to continue",
                found.len()
            );
        }
        let attention = if self.apply { lost + fees } else { found.len() };
        if attention > 0 {
            return Err(Error::NeedsHuman(format!(
                "reconcile: {attention} differences need a human (see above)"
            )));
        }
        Ok(())
    }
}

fn print_differences(found: &[Difference], format: Format) {
    let mut rows = Rows::new(vec!["agent", "epoch", "local", "chain", "action"]);
    for d in found {
        rows.rows.push(vec![
            Cell::Text(d.address.clone()),
            Cell::OptInt(d.epoch),
            Cell::Text(d.local.clone()),
            Cell::Text(d.chain.clone()),
            Cell::Text(d.action.clone()),
        ]);
    }
    rows.emit(format, &[]);
}
