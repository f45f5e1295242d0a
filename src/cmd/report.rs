//! Read-only views for people and scripts: `report`, `attempts`, `billing-attempts`.

use argh::FromArgs;

use super::{parse_address, Ctx, Run};
use crate::error::Result;
use crate::ops::output::{claw, Cell, Format, Rows};
use crate::ops::report::{report_rows, REPORT_FIELDS};

/// One row per agent: renewals, windows, schedule, billed/settled/outstanding CLAW, last error.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "report")]
pub struct Report {
    /// also removed agents (their history stays)
    #[argh(switch)]
    pub all: bool,
    /// table, json or tsv (default: table)
    #[argh(option, default = "Format::Table")]
    pub format: Format,
    /// the table with every column (json and tsv always have every field)
    #[argh(switch)]
    pub wide: bool,
}

/// The default table's width: what an operator scans, in a terminal of this many columns.
const NARROW_WIDTH: usize = 100;

/// The latest /stream attempts of an agent.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "attempts")]
pub struct Attempts {
    /// the agent's claw1... address
    #[argh(option)]
    pub address: String,
    /// how many rows, newest first (default: 20)
    #[argh(option, default = "20")]
    pub limit: u32,
    /// table, json or tsv (default: table)
    #[argh(option, default = "Format::Table")]
    pub format: Format,
}

/// The latest billing transactions and decisions.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "billing-attempts")]
pub struct BillingAttempts {
    /// how many rows, newest first (default: 20)
    #[argh(option, default = "20")]
    pub limit: u32,
    /// table, json or tsv (default: table)
    #[argh(option, default = "Format::Table")]
    pub format: Format,
}

impl Run for Report {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let store = ctx.open()?;
        let rows = report_rows(&store, self.all)?;
        let warnings = store.expiry_warnings()?;
        if self.format == Format::Table && !self.wide {
            print!("{}", narrow(&rows, crate::net::clock::now_ms()));
            for w in &warnings {
                println!("warning: {w}");
            }
            return Ok(());
        }
        rows.emit(self.format, &warnings);
        Ok(())
    }
}

/// The default table: address (shortened), status, next renewal and window end (relative),
/// pending and billed windows, outstanding CLAW, last error; each line cut at
/// [`NARROW_WIDTH`] (only the last error is ever cut).
fn narrow(rows: &Rows, now: i64) -> String {
    let pick = |name: &str| REPORT_FIELDS.iter().position(|f| *f == name).unwrap();
    let mut out = Rows::new(vec![
        "address",
        "status",
        "next",
        "ends",
        "pending",
        "billed",
        "owed_claw",
        "last_error",
    ]);
    for r in &rows.rows {
        let text = |name: &str| r[pick(name)].shown();
        let time = |name: &str| match &r[pick(name)] {
            Cell::Time(t) => crate::ops::output::relative(*t, now),
            other => other.shown(),
        };
        out.rows.push(vec![
            Cell::Text(crate::ops::output::short_address(&text("address"))),
            Cell::Text(text("status")),
            Cell::Text(time("next_attempt")),
            Cell::Text(time("window_end")),
            Cell::Text(text("pending")),
            Cell::Text(text("billed")),
            Cell::Text(text("outstanding_claw")),
            Cell::Text(text("last_error")),
        ]);
    }
    out.render(Format::Table)
        .lines()
        .map(|l| match l.char_indices().nth(NARROW_WIDTH - 1) {
            Some((cut, _)) => format!("{}…\n", &l[..cut]),
            None => format!("{l}\n"),
        })
        .collect()
}

impl Run for Attempts {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let address = parse_address(&self.address)?;
        let store = ctx.open()?;
        let id = store.require_agent(&address)?;
        let mut rows = Rows::new(vec![
            "attempted",
            "ok",
            "status_code",
            "duration_ms",
            "counted",
            "end_stream",
            "reason",
            "body_excerpt",
        ]);
        for a in store.attempt_rows(id, self.limit)? {
            rows.rows.push(vec![
                Cell::Time(Some(a.attempted_ms)),
                Cell::Bool(a.ok),
                Cell::OptInt(a.status_code),
                Cell::Int(a.duration_ms),
                Cell::Bool(a.counted),
                Cell::Time(a.end_stream_ms),
                Cell::Text(a.reason),
                Cell::OptText(a.body_excerpt.map(|e| e.chars().take(80).collect())),
            ]);
        }
        rows.emit(self.format, &[]);
        Ok(())
    }
}

impl Run for BillingAttempts {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let store = ctx.open()?;
        let mut rows = Rows::new(vec![
            "created",
            "agent",
            "epoch",
            "windows",
            "nonce",
            "tx_hash",
            "status",
            "reason",
            "kind",
            "gas_limit",
            "gas_used",
            "fee_atto",
        ]);
        for b in store.billing_rows(self.limit)? {
            rows.rows.push(vec![
                Cell::Time(Some(b.created_ms)),
                Cell::Text(b.address),
                Cell::Int(b.epoch),
                Cell::Int(b.windows),
                Cell::OptInt(b.nonce),
                Cell::OptText(b.tx_hash),
                Cell::Text(b.status),
                Cell::OptText(b.reason),
                Cell::OptText(b.kind),
                Cell::OptInt(b.gas_limit),
                Cell::OptInt(b.gas_used),
                Cell::OptText(b.fee_atto),
            ]);
        }
        rows.emit(self.format, &[]);
        Ok(())
    }
}

crate::view_command! {
    /// Open bills (Billed, Delinquent, not yet read), oldest first: what is still due, what
    /// was paid in part, the deadline and whether it can be enforced.
    #[argh(subcommand, name = "receivables")]
    Receivables {
        /// table, json or tsv (default: table)
        #[argh(option, default = "Format::Table")]
        pub format: Format,
        /// re-read every open bill from the chain now (needs --escrow-contract)
        #[argh(switch)]
        pub refresh: bool,
    }
}

impl Receivables {
    /// `--refresh`: every open bill read now, through the contract's views.
    fn refresh(&self, store: &crate::store::Store) -> Result<()> {
        crate::billing::receivables::refresh_all(store, &self.view_config()?)
    }
}

impl Run for Receivables {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let store = ctx.open()?;
        if self.refresh {
            self.refresh(&store)?;
        }
        let current = store.max_epoch_seen()?;
        let grace = store.meta_grace_epochs()?;
        let mut rows = Rows::new(vec![
            "agent",
            "epoch",
            "windows",
            "charged_claw",
            "due_claw",
            "paid_claw",
            "state",
            "billed",
            "deadline_epoch",
            "enforceable",
            "enforcement",
            "age_epochs",
            "late_windows",
        ]);
        for c in store.charges(true, None)? {
            let deadline = grace.map(|g| c.epoch + g);
            let remaining = c.remaining_atto();
            let enforceable = deadline.zip(current).map(|(d, now)| {
                now > d && c.settlement == Some(crate::chain::ledger::EpochState::Billed)
            });
            rows.rows.push(vec![
                Cell::Text(c.address.clone()),
                Cell::Int(c.epoch),
                Cell::Int(c.windows),
                Cell::Text(claw(c.charged_atto)),
                Cell::Text(claw(remaining)),
                Cell::Text(claw(c.charged_atto - remaining)),
                Cell::Text(c.state_name().to_string()),
                Cell::Time(c.billed_ms),
                Cell::OptInt(deadline),
                enforceable.map_or(Cell::OptText(None), Cell::Bool),
                Cell::OptText(c.enforcement.clone()),
                Cell::OptInt(current.map(|e| e - c.epoch)),
                Cell::Int(c.late_windows),
            ]);
        }
        rows.emit(self.format, &[]);
        Ok(())
    }
}
