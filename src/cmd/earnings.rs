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
}

impl Line {
    fn add_charge(&mut self, c: &Charge) {
        self.bills += 1;
        self.windows += c.windows;
        let m = Money::of(std::iter::once(c));
        self.money.billed += m.billed;
        self.money.settled += m.settled;
        self.money.slashed += m.slashed;
        self.money.outstanding += m.outstanding;
    }

    fn add(&mut self, other: &Line) {
        self.bills += other.bills;
        self.windows += other.windows;
        self.money.billed += other.money.billed;
        self.money.settled += other.money.settled;
        self.money.slashed += other.money.slashed;
        self.money.outstanding += other.money.outstanding;
        self.fees += other.fees;
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
        ]
    }
}

const COLUMNS: [&str; 8] = [
    "address",
    "bills",
    "windows",
    "charged_atto",
    "collected_atto",
    "outstanding_atto",
    "fees_atto",
    "net_atto",
];

impl Run for Earnings {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let store = ctx.open()?;
        let since = i64::try_from(self.since_epoch)
            .map_err(|_| Error::usage("--since-epoch is out of range"))?;
        if crate::config::string_opt(self.escrow_contract.clone(), "escrow-contract").is_some() {
            let view = (self.escrow_contract.clone(), self.billing_proxy.clone());
            super::report::refresh_open_bills(
                &store,
                view,
                self.timeout_seconds,
                self.allow_insecure_http,
            )?;
        }
        let mut lines: BTreeMap<String, Line> = BTreeMap::new();
        for c in store
            .charges(false, None)?
            .iter()
            .filter(|c| c.epoch >= since)
        {
            lines.entry(c.address.clone()).or_default().add_charge(c);
        }
        for (_, address, fee) in store.fees_by_agent(since)? {
            lines.entry(address).or_default().fees += fee;
        }
        let mut total = Line::default();
        lines.values().for_each(|l| total.add(l));
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
