//! What needs a human, for `tick`'s exit status, `check` and the Prometheus metrics.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};
use crate::store::Store;

/// A window counts as lapsed once it ended this long ago without a new one: a `tick` timer
/// every minute with renewals accepted only after the end leaves gaps below this.
pub const LAPSE_GRACE_MS: i64 = 120_000;
/// An agent failing this long needs a human.
pub const FAILING_FOR_MS: i64 = 3_600_000;

/// What a tick leaves for a human: lapses, long failures, held billing.
pub fn tick_attention(store: &Store, now: i64) -> Result<Vec<String>> {
    let mut out = store.lapsed(now, LAPSE_GRACE_MS)?;
    out.extend(store.failing(now, FAILING_FOR_MS)?);
    out.extend(held(store)?);
    out.extend(standby_clips(store)?);
    Ok(out)
}

/// A host clock further off the network's than `max_ms`, said as a person would.
pub fn clock_skew(offset: crate::net::clock::Offset, max_ms: i64) -> Option<String> {
    (offset.ms.abs() > max_ms).then(|| {
        format!(
            "the host clock is {} the stream service: enable NTP (timedatectl set-ntp true); renewals are scheduled on the service's clock meanwhile",
            crate::net::clock::describe(offset.ms)
        )
    })
}

/// The network clock's offset as the last run kept it, moved by any step of the host's
/// clock since (a host clock that stepped back 10 minutes is 10 minutes behind now, even
/// before the next tick asks anybody).
pub fn kept_offset(store: &Store) -> Result<Option<crate::net::clock::Offset>> {
    use crate::net::host_clock::{Anchor, Step, ANCHOR_KEY};
    let kept = store
        .meta_get(crate::net::clock::STORE_KEY)?
        .and_then(|t| crate::net::clock::estimate(&crate::net::clock::decode(&t)));
    let stepped = Anchor::step_since(store.meta_get(ANCHOR_KEY)?.as_deref());
    Ok(match (kept, stepped) {
        (Some(mut o), Some(Step::By(delta))) => {
            o.ms -= delta;
            Some(o)
        }
        (kept, _) => kept,
    })
}

/// Held epochs, each with what to do about it.
pub fn held(store: &Store) -> Result<Vec<String>> {
    Ok(store
        .held_epochs()?
        .into_iter()
        .map(|(address, epoch, reason)| {
            format!(
                "{address} epoch {epoch} billing held ({reason}): once understood, `billing retry --address {address}` or `billing skip --address {address} --epoch {epoch} --reason ...`"
            )
        })
        .collect())
}

/// Epochs billed without the standby's windows whose end its copy has not reached since.
pub fn standby_clips(store: &Store) -> Result<Vec<String>> {
    Ok(store
        .standby_clips_open()?
        .into_iter()
        .map(|(address, epoch, reason)| {
            format!(
                "{address} epoch {epoch} {reason}: is the standby's replication back to this host running? Windows it brings later are counted as late, never billed"
            )
        })
        .collect())
}

/// Agents whose bills are held because they would cost more than they bring in.
pub fn unprofitable(store: &Store) -> Result<Vec<String>> {
    let mut by_agent: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for u in store.unprofitable()? {
        by_agent.entry(u.address).or_default().push(format!(
            "epoch {} (fee {} CLAW > charge {} CLAW)",
            u.epoch,
            crate::chain::fees::claw(u.fee_atto),
            crate::chain::fees::claw(u.charge_atto)
        ));
    }
    Ok(by_agent
        .into_iter()
        .map(|(address, bills)| {
            format!(
                "{address}: bills held as unprofitable, {}: raise its fee on the escrow, or bill at a loss with --bill-at-a-loss",
                bills.join(", ")
            )
        })
        .collect())
}

/// `check --standby-copy` on a standby host: the primary's copy readable and fresh (a
/// standby behind a dead replication protects nobody enrolled since), and the clock.
pub fn standby(
    store: &Store,
    copy: &Path,
    now: i64,
    max_age_ms: i64,
    max_skew_ms: i64,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    match crate::store::standby::read_copy(copy) {
        Err(e) => out.push(format!("the primary's copy cannot be read: {e}")),
        Ok(view) => match view.written_ms {
            Some(at) if now - at <= max_age_ms => {}
            written => out.push(format!(
                "the primary's copy {} was last written {}: is the Litestream follower (and the primary's replication) running? A standby behind a dead replication protects nobody enrolled since",
                copy.display(),
                written.map_or("never".to_string(), |at| format!("{} s ago", (now - at) / 1000))
            )),
        },
    }
    if let Some(skew) = kept_offset(store)?.and_then(|o| clock_skew(o, max_skew_ms)) {
        out.push(skew);
    }
    Ok(out)
}

/// What `check` and `serve`'s `/healthz` page about, as each was started with (their
/// flags `--warn-seconds`, `--pending-limit-seconds`, `--max-clock-skew-seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Windows ending within this long with no renewal planned.
    pub warn_ms: i64,
    /// Billing transactions pending longer than this.
    pub pending_limit_ms: i64,
    /// A host clock further off the network's than this.
    pub max_skew_ms: i64,
}

impl Thresholds {
    /// The defaults of the flags (600, 900 and 60 seconds), written once here.
    pub const DEFAULT_WARN_SECONDS: u32 = 600;
    pub const DEFAULT_PENDING_LIMIT_SECONDS: u32 = 900;

    pub fn of_seconds(warn: u32, pending_limit: u32, max_skew_ms: i64) -> Thresholds {
        Thresholds {
            warn_ms: i64::from(warn) * 1000,
            pending_limit_ms: i64::from(pending_limit) * 1000,
            max_skew_ms,
        }
    }
}

/// `check` and `/healthz`: everything a monitor should page about.
pub fn check(store: &Store, now: i64, limits: Thresholds) -> Result<Vec<String>> {
    let Thresholds {
        warn_ms,
        pending_limit_ms,
        max_skew_ms,
    } = limits;
    let mut out = store.at_risk(now, warn_ms)?;
    out.extend(store.never_renewed(now, now - warn_ms)?);
    out.extend(store.failing(now, FAILING_FOR_MS)?);
    out.extend(store.stale_billing(now, pending_limit_ms)?);
    out.extend(held(store)?);
    out.extend(standby_clips(store)?);
    out.extend(unprofitable(store)?);
    if let Some(reason) = crate::billing::breaker::tripped(store)? {
        out.push(format!("billing stopped: {reason}"));
    }
    out.extend(store.expiry_warnings()?);
    if let Some(skew) = kept_offset(store)?.and_then(|o| clock_skew(o, max_skew_ms)) {
        out.push(skew);
    }
    Ok(out)
}

/// The operator's wallet as last read (once an epoch) and the epochs of bills it still
/// pays at the last epoch's fees.
#[derive(Debug, Clone, PartialEq)]
pub struct Runway {
    /// The epoch whose close read the balance.
    pub epoch: i64,
    pub balance: u128,
    /// The fees of the newest epoch that paid any; else a bill's expected fee for every
    /// agent served (`None`: nothing to weigh yet).
    pub fees_per_epoch: Option<u128>,
}

impl Runway {
    pub fn epochs(&self) -> Option<f64> {
        self.fees_per_epoch
            .filter(|&f| f > 0)
            .map(|f| self.balance as f64 / f as f64)
    }
}

/// `check --min-balance-epochs`'s default, and where the operator's page marks the
/// runway red.
pub const DEFAULT_MIN_BALANCE_EPOCHS: u32 = 3;

pub fn runway(store: &Store) -> Result<Option<Runway>> {
    runway_of(store, store.latest_books()?)
}

/// The runway of the chain's figures as `Store::latest_books` gave them (for a caller
/// that shows them too).
pub fn runway_of(
    store: &Store,
    (epoch, books): (Option<i64>, crate::chain::escrow::Books),
) -> Result<Option<Runway>> {
    let (Some(epoch), Some(balance)) = (epoch, books.operator_balance) else {
        return Ok(None);
    };
    let fees_per_epoch = match store.last_epoch_fees()? {
        Some(fees) => Some(fees),
        None => {
            let served = store.served_count()?.max(0) as u128;
            store.expected_bill_fee()?.map(|fee| fee * served)
        }
    };
    Ok(Some(Runway {
        epoch,
        balance,
        fees_per_epoch,
    }))
}

/// `check --min-balance-epochs N`: the problem (worded without the moving figures, so it
/// is told once) when the wallet pays fewer than N epochs of bills.
pub fn wallet(runway: Option<&Runway>, min_epochs: u32) -> Option<String> {
    let low = min_epochs > 0
        && runway
            .and_then(Runway::epochs)
            .is_some_and(|e| e < f64::from(min_epochs));
    low.then(|| format!("the operator's wallet pays fewer than {min_epochs} epochs of bills at the last epoch's fees: top it up before bills fail (its balance and runway: /operator, or the Prometheus textfile)"))
}

/// Free space that would not last this long at the measured growth needs a human.
pub const FREE_SPACE_DAYS: f64 = 7.0;

/// The database's disk: writable, and room for a week of renewals at the bytes per
/// renewal this database measures (its size over the attempts it holds).
pub fn disk(store: &Store, db: &Path, now: i64) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let Some(space) = crate::ops::disk::space(db) else {
        return Ok(out);
    };
    if space.read_only || store.is_read_only() {
        out.push(format!(
            "database {} cannot be written ({}): renewals go on but are not recorded and billing waits; make it writable",
            db.display(),
            crate::ops::disk::describe_space(db)
        ));
        return Ok(out);
    }
    let g = store.growth(now)?;
    // Too few renewals to measure by, or none in the last day: nothing to warn about.
    if g.attempts < 100 || g.last_day == 0 {
        return Ok(out);
    }
    let per_renewal = g.used_bytes as f64 / g.attempts as f64;
    let per_day = per_renewal * g.last_day as f64;
    let days = space.free as f64 / per_day;
    if days < FREE_SPACE_DAYS {
        out.push(format!(
            "{}: about {days:.1} days of growth at {:.0} bytes per renewal and {} renewals a day; free space, or `prune` old attempts",
            crate::ops::disk::describe_space(db),
            per_renewal,
            g.last_day
        ));
    }
    Ok(out)
}

/// The node_exporter textfile being written: one `# HELP`/`# TYPE` block per metric.
#[derive(Default)]
struct Metrics(String);

impl Metrics {
    fn add(&mut self, name: &str, help: &str, samples: &[(&str, i64)]) {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        self.0.push_str(&format!(
            "# HELP stream_agency_{name} {help}\n# TYPE stream_agency_{name} {kind}\n"
        ));
        for (labels, value) in samples {
            self.0
                .push_str(&format!("stream_agency_{name}{labels} {value}\n"));
        }
    }
}

/// The metrics in the node_exporter textfile format.
pub fn prometheus_text(store: &Store, db: &Path, now: i64) -> Result<String> {
    let mut m = Metrics::default();
    counts(&mut m, store, now)?;
    money(&mut m, store)?;
    m.add(
        "held_epochs",
        "Epochs whose billing waits for a human.",
        &[("", store.held_epochs()?.len() as i64)],
    );
    m.add(
        "clock_offset_milliseconds",
        "The stream service's clock minus the host's, as last estimated (positive: the host is behind).",
        &[("", kept_offset(store)?.map_or(0, |o| o.ms))],
    );
    m.add(
        "last_epoch_observation_timestamp_seconds",
        "Unix time the gateway was last asked for the epoch (idle ticks compute it from the timeline).",
        &[("", store.timeline()?.map_or(0, |t| t.observed_ms / 1000))],
    );
    let last_tick = crate::ops::lock::last_tick_ms(db).unwrap_or(0);
    m.add(
        "last_tick_timestamp_seconds",
        "Unix time of the last tick that completed.",
        &[("", last_tick / 1000)],
    );
    Ok(m.0)
}

/// Agents, renewals, windows, lapses, failed bills.
fn counts(m: &mut Metrics, store: &Store, now: i64) -> Result<()> {
    let t = store.totals()?;
    m.add(
        "agents",
        "Enrolled agents by status.",
        &[
            ("{status=\"active\"}", store.agents_with_status("active")?),
            ("{status=\"paused\"}", store.agents_with_status("paused")?),
        ],
    );
    m.add(
        "renewals_total",
        "Renewal attempts by result, over the agents' lifetime.",
        &[
            ("{result=\"ok\"}", t.renewals_ok),
            ("{result=\"failed\"}", t.renewals_failed),
        ],
    );
    m.add(
        "windows",
        "Counted windows by billing state.",
        &[
            ("{state=\"pending\"}", t.windows_pending),
            ("{state=\"billed\"}", t.windows_billed),
            ("{state=\"clipped\"}", t.windows_clipped),
            ("{state=\"expired\"}", t.windows_expired),
        ],
    );
    m.add(
        "lapsed_agents",
        "Active agents whose window lapsed.",
        &[("", store.lapsed(now, LAPSE_GRACE_MS)?.len() as i64)],
    );
    m.add(
        "billing_failures_total",
        "Billing transactions that failed.",
        &[("", t.billing_failures)],
    );
    Ok(())
}

/// The receivables, in milli-CLAW.
fn money(m: &mut Metrics, store: &Store) -> Result<()> {
    let money = crate::store::views::Money::of(store.charges(false, None)?.iter());
    let as_claw = |atto: u128| (atto / 1_000_000_000_000_000) as i64; // milli-CLAW
    m.add(
        "receivables_milliclaw",
        "Amounts billed on chain, in thousandths of a CLAW, by settlement state.",
        &[
            ("{state=\"billed\"}", as_claw(money.billed)),
            ("{state=\"settled\"}", as_claw(money.settled)),
            ("{state=\"outstanding\"}", as_claw(money.outstanding)),
            ("{state=\"slashed\"}", as_claw(money.slashed)),
        ],
    );
    if let Some(r) = runway(store)? {
        m.add(
            "operator_balance_milliclaw",
            "The operator's wallet as last read (once an epoch), in thousandths of a CLAW: it pays every bill's fee.",
            &[("", as_claw(r.balance))],
        );
        if let Some(epochs) = r.epochs() {
            m.add(
                "operator_runway_epochs",
                "Epochs of bills the operator's wallet still pays at the last epoch's fees.",
                &[("", epochs.floor().min(i64::MAX as f64) as i64)],
            );
        }
    }
    let fees: u128 = store.fees_by_agent(0)?.iter().map(|(_, _, f)| f).sum();
    m.add(
        "earnings_milliclaw",
        "What billing earned, in thousandths of a CLAW: charged, collected (settled or taken from the bond) and the fees paid for it.",
        &[
            ("{kind=\"charged\"}", as_claw(money.billed)),
            ("{kind=\"collected\"}", as_claw(money.settled + money.slashed)),
            ("{kind=\"fees\"}", as_claw(fees)),
        ],
    );
    Ok(())
}

/// node_exporter textfile metrics, written atomically (temp file + rename).
pub fn write_prometheus(store: &Store, db: &Path, path: &Path, now: i64) -> Result<()> {
    let text = prometheus_text(store, db, now)?;
    let tmp = path.with_extension("prom.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write()
        .map_err(|e| Error::runtime(format!("cannot write metrics file {}: {e}", path.display())))
}
