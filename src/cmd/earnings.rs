//! `earnings`: what billing brought in and what it cost, per agent and in total.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{Ctx, Run};
use crate::error::{Error, Result};
use crate::ops::output::{Cell, Format, Rows};
use crate::store::views::{Charge, Money};

crate::view_command! {
    /// What billing earns: per agent and in total, bills, windows billed, charged,
    /// collected (settled on time or late, slashed from the bond, paid from the bond at
    /// cancellation), still owed, fees paid (bills, enforcements and failed transactions
    /// alike) and net (charged - fees). With --escrow-contract (or
    /// STREAM_AGENCY_ESCROW_CONTRACT) the open bills are read from the chain first; without
    /// it, the ledger as kept.
    #[argh(subcommand, name = "earnings")]
    Earnings {
        /// only the epochs from this one on (default: all)
        #[argh(option, default = "0")]
        pub since_epoch: u64,
        /// table, json or tsv (default: table)
        #[argh(option, default = "Format::Table")]
        pub format: Format,
    }
}

/// One agent's (or the total's) figures, in atto-CLAW.
#[derive(Debug, Default)]
struct Line {
    bills: i64,
    windows: i64,
    money: Money,
    fees: u128,
    /// Windows kept alive that can no longer be billed (late, refused, lost).
    unbillable: i64,
}

impl Line {
    /// The figures of `charges` (one agent's, or all) and the fees paid for them.
    fn of(charges: &[&Charge], fees: u128) -> Line {
        Line {
            bills: charges.len() as i64,
            windows: charges.iter().map(|c| c.windows).sum(),
            money: Money::of(charges.iter().copied()),
            fees,
            unbillable: 0,
        }
    }

    /// Charged minus fees: negative when billing burned money.
    fn net(&self) -> String {
        let (charged, fees) = (self.money.billed, self.fees);
        if charged >= fees {
            (charged - fees).to_string()
        } else {
            format!("-{}", fees - charged)
        }
    }

    fn cells(&self, address: &str) -> Vec<Cell> {
        let text = |n: u128| Cell::Text(n.to_string());
        vec![
            Cell::Text(address.to_string()),
            Cell::Int(self.bills),
            Cell::Int(self.windows),
            text(self.money.billed),
            text(self.money.settled + self.money.slashed),
            text(self.money.outstanding),
            text(self.fees),
            Cell::Text(self.net()),
            Cell::Int(self.unbillable),
        ]
    }
}

const COLUMNS: [&str; 9] = [
    "address",
    "bills",
    "windows",
    "charged_atto",
    "collected_atto",
    "outstanding_atto",
    "fees_atto",
    "net_atto",
    "unbillable_windows",
];

impl Run for Earnings {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let store = ctx.open()?;
        let since = i64::try_from(self.since_epoch)
            .map_err(|_| Error::usage("--since-epoch is out of range"))?;
        if self.has_contract() {
            crate::billing::receivables::refresh_all(&store, &self.view_config()?)?;
        }
        let charges = store.charges(false, None)?;
        let charges: Vec<&Charge> = charges.iter().filter(|c| c.epoch >= since).collect();
        let mut by_agent: BTreeMap<String, (Vec<&Charge>, u128)> = BTreeMap::new();
        for c in &charges {
            by_agent.entry(c.address.clone()).or_default().0.push(c);
        }
        for (_, address, fee) in store.fees_by_agent(since)? {
            by_agent.entry(address).or_default().1 += fee;
        }
        let total_fees = by_agent.values().map(|(_, fee)| fee).sum();
        let mut total = Line::of(&charges, total_fees);
        let mut lines: BTreeMap<String, Line> = by_agent
            .into_iter()
            .map(|(address, (charges, fee))| (address, Line::of(&charges, fee)))
            .collect();
        for (address, n) in store.unbillable_by_agent(since)? {
            lines.entry(address).or_default().unbillable = n;
            total.unbillable += n;
        }
        print!("{}", render(&lines, &total, self.format));
        Ok(())
    }
}

/// JSON: one object `{"total": {...}, "agents": [...]}`; a table or TSV: a row per agent
/// and a last row `total`.
fn render(lines: &BTreeMap<String, Line>, total: &Line, format: Format) -> String {
    let mut rows = Rows::new(COLUMNS.to_vec());
    for (address, line) in lines {
        rows.rows.push(line.cells(address));
    }
    if format != Format::Json {
        rows.rows.push(total.cells("total"));
        return rows.render(format);
    }
    let object = |cells: &[Cell]| -> Value {
        let fields = rows.fields(cells).into_iter().skip(1);
        Value::Object(fields.collect::<Map<_, _>>())
    };
    let agents: Vec<Value> = rows
        .rows
        .iter()
        .map(|cells| {
            let mut o = object(cells);
            o["address"] = Value::from(cells[0].shown());
            o
        })
        .collect();
    let out = json!({"total": object(&total.cells("total")), "agents": agents});
    format!("{}\n", serde_json::to_string_pretty(&out).expect("json"))
}
