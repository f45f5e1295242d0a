//! `import-mvp`: adopt a running installation of the Python MVP (`stream_agency.py`).
//! The old file is only read; everything goes into a new database in one transaction.

use std::path::PathBuf;

use argh::FromArgs;

use super::{Ctx, Run};
use crate::crypto::keys::{self, Address, STREAM_MESSAGE};
use crate::error::{Error, Result};
use crate::net::clock::now_ms;
use crate::ops::output::{Cell, Format, Rows};
use crate::renewal::stream;
use crate::store::mvp::{self, Checked, Counts, MvpAgent};
use crate::store::recognize::{self, Found};

/// Bring the database of the Python stream_agency.py over into a new database (--db):
/// agents (signatures verified offline), usage, attempts and billing history, all or
/// nothing. The old file is only read. Epochs the MVP marked billed are kept as
/// "billed-by-mvp" until `reconcile` checks them against the chain.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "import-mvp")]
pub struct ImportMvp {
    /// the MVP's database file (e.g. stream-agency/agency.db)
    #[argh(positional)]
    pub old: PathBuf,
    /// table, json or tsv (default: table)
    #[argh(option, default = "Format::Table")]
    pub format: Format,
}

/// An MVP agent, imported or not, and why.
struct Line {
    address: String,
    imported: bool,
    status: String,
    fee_bps: Option<i64>,
    counts: Counts,
    note: Option<String>,
}

impl Run for ImportMvp {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let shown = self.old.display();
        let same = match (
            std::fs::canonicalize(&self.old),
            std::fs::canonicalize(&ctx.db),
        ) {
            (Ok(old), Ok(db)) => old == db,
            _ => false,
        };
        if same {
            return Err(Error::usage(format!(
                "--db must name a new database, not {shown} itself: e.g. stream-agency --db stream-agency.db import-mvp {shown}"
            )));
        }
        match recognize::recognize(&self.old)? {
            Found::Mvp => {}
            Found::New => {
                return Err(Error::usage(format!(
                    "{shown} does not exist or is empty: give the MVP's database file"
                )))
            }
            Found::Ours(_) => {
                return Err(Error::usage(format!(
                    "{shown} is already a stream-agency database: nothing to import"
                )))
            }
            other => {
                let e = recognize::refusal(&self.old, &other, 0).expect("not ours");
                return Err(Error::usage(format!(
                    "{e}; import-mvp reads only databases of the Python stream_agency.py"
                )));
            }
        }
        if ctx.db.exists() && !ctx.open()?.is_empty()? {
            return Err(Error::usage(format!(
                "{} already holds agents: import into a new database (--db NEW.db)",
                ctx.db.display()
            )));
        }
        let source = recognize::open_read_only(&self.old)?;
        let (checked, rejected) = check_all(mvp::read_agents(&source)?);
        let mut store = ctx.open_with_secrets()?;
        let redact = |text: &str, secret: &str| stream::excerpt(text.as_bytes(), secret);
        let counts = store.import_mvp(&source, &checked, &redact, now_ms())?;
        let mut lines: Vec<Line> = checked
            .iter()
            .zip(counts)
            .map(|(c, counts)| Line {
                address: c.address.to_bech32(),
                imported: true,
                status: if c.active { "active" } else { "paused" }.into(),
                fee_bps: Some(c.fee_bps),
                counts,
                note: c.note.clone(),
            })
            .collect();
        let not_imported = rejected.len();
        lines.extend(rejected);
        print_lines(&lines, self.format);
        let imported = lines.len() - not_imported;
        eprintln!(
            "imported {imported} agents from {shown} into {}; the old file was only read. Next: `reconcile` checks the epochs the MVP marked billed",
            ctx.db.display()
        );
        if not_imported > 0 {
            return Err(Error::NeedsHuman(format!(
                "{not_imported} agents were not imported (see the table): enroll them again with a valid signature and fee"
            )));
        }
        Ok(())
    }
}

/// Each MVP agent checked like `enroll` would: address, signature (offline), fee, status.
fn check_all(agents: Vec<MvpAgent>) -> (Vec<Checked>, Vec<Line>) {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for m in agents {
        match check(&m) {
            Ok(c) => good.push(c),
            Err(why) => bad.push(Line {
                address: m
                    .address
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(100)
                    .collect(),
                imported: false,
                status: m.status.clone().unwrap_or_default(),
                fee_bps: m.fee_bps,
                counts: Counts::default(),
                note: Some(why),
            }),
        }
    }
    (good, bad)
}

fn check(m: &MvpAgent) -> std::result::Result<Checked, String> {
    let address = Address::parse(m.address.trim()).map_err(|e| format!("address: {e}"))?;
    let sig = keys::stream_signature(&address, m.signature.trim()).map_err(|e| match e {
        keys::NotEnrollable::Malformed(e) => format!("signature: {e}"),
        keys::NotEnrollable::NotTheirs => {
            format!("the signature is not this address's signature of \"{STREAM_MESSAGE}\"")
        }
    })?;
    let fee_bps = m
        .fee_bps
        .unwrap_or(i64::from(crate::chain::escrow::DEFAULT_FEE_BPS));
    let in_range =
        u32::try_from(fee_bps).is_ok_and(|f| crate::chain::escrow::FEE_BPS_RANGE.contains(&f));
    if !in_range {
        return Err(format!(
            "fee_bps {fee_bps} is outside 1..=10000, which the escrow accepts"
        ));
    }
    let (active, note) = match m.status.as_deref().unwrap_or("active") {
        "active" => (true, None),
        "paused" => (false, None),
        "suspended" => (
            false,
            Some("suspended in the MVP: imported as paused; `resume` when ready".to_string()),
        ),
        other => (
            false,
            Some(format!(
                "unknown MVP status '{}': imported as paused",
                other.chars().take(20).collect::<String>()
            )),
        ),
    };
    Ok(Checked {
        mvp: m.clone(),
        address,
        signature: crate::crypto::keys::Secret::new(hex::encode(sig)),
        fee_bps,
        active,
        note,
    })
}

fn print_lines(lines: &[Line], format: Format) {
    let mut rows = Rows::new(vec![
        "address",
        "imported",
        "status",
        "fee_bps",
        "windows",
        "billed_epochs",
        "open_epochs",
        "attempts",
        "billing_attempts",
        "note",
    ]);
    for l in lines {
        rows.rows.push(vec![
            Cell::Text(l.address.clone()),
            Cell::Bool(l.imported),
            Cell::Text(l.status.clone()),
            Cell::OptInt(l.fee_bps),
            Cell::Int(l.counts.windows),
            Cell::Int(l.counts.billed_epochs),
            Cell::Int(l.counts.open_epochs),
            Cell::Int(l.counts.attempts),
            Cell::Int(l.counts.billing_attempts),
            Cell::OptText(l.note.clone()),
        ]);
    }
    rows.emit(format, &[]);
}
