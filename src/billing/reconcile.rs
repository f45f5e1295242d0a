//! Reconciliation: the contract's `getEpochState` is the ledger, ours a cache of it. Every
//! locally known (agent, epoch) is compared with the chain, the bills the chain has beyond
//! the local ledger are found (a restored backup, a copy behind its primary), and what each
//! of them was made of is learned; `apply` makes the local ledger follow, in one
//! transaction. Bounded per run and resumable (`reconcile` runs it from cron).

use std::collections::HashMap;

use crate::chain::escrow::client::Escrow;
use crate::chain::escrow::{self, AgentInfo, Decision, EscrowConfig, Views};
use crate::chain::gateway::{Gateway, GatewayError};
use crate::chain::ledger::EpochState;
use crate::config::ViewConfig;
use crate::crypto::keys::Address;
use crate::error::{Error, Result};
use crate::net::clock::now_ms;
use crate::store::billing::{Correction, LedgerRow};
use crate::store::Store;

const CURSOR: &str = "reconcile_cursor";

/// One difference between the local ledger and the chain.
pub struct Difference {
    pub address: String,
    pub epoch: Option<i64>,
    pub local: String,
    pub chain: String,
    pub action: String,
}

/// What one reconciliation found and did.
pub struct Reconciled {
    pub found: Vec<Difference>,
    /// Bills the chain lacks and can no longer take.
    pub lost: usize,
    /// Fee differences (the escrow charges its own fee).
    pub fees: usize,
    /// The walk reached the end of the ledger (else `max_pairs` stopped it; run again).
    pub done: bool,
}

/// Compares the ledger with the chain from `since` on, at most `max_pairs` (agent, epoch)
/// pairs this run; with `apply`, the local ledger follows the chain.
pub fn reconcile(
    store: &mut Store,
    cfg: &ViewConfig,
    since: i64,
    max_pairs: usize,
    apply: bool,
) -> Result<Reconciled> {
    let gateway = Gateway::connect(&cfg.proxy, cfg.timeout);
    let escrow = Escrow::new(&gateway, &cfg.escrow);
    let unreachable = |e: GatewayError| {
        Error::runtime(format!(
            "reconcile needs the gateway ({e}): check --billing-proxy; nothing was changed"
        ))
    };
    let config = escrow.config().map_err(unreachable)?;
    let current = gateway.network_status().map_err(unreachable)?.epoch;
    let walk = Walk {
        escrow: &escrow,
        config: &config,
        current,
        apply,
    };
    let Walked {
        mut found,
        mut corrections,
        done,
        mut infos,
    } = walk.run(store, since, max_pairs)?;
    if done {
        let seen: Vec<(i64, i64)> = corrections.iter().map(|c| (c.0, c.1)).collect();
        let (more, fixes) = walk.missing(store, &mut infos, &seen, (since, max_pairs))?;
        found.extend(more);
        corrections.extend(fixes);
    }
    let learned = walk.learn_bills(store, &corrections, &mut infos)?;
    corrections.extend(learned);
    if apply && !corrections.is_empty() {
        store.apply_corrections(&corrections, now_ms())?;
    }
    let lost = corrections
        .iter()
        .filter(|c| matches!(c.2, Correction::Lost(_)))
        .count();
    let fees = found.iter().filter(|d| d.epoch.is_none()).count();
    Ok(Reconciled {
        found,
        lost,
        fees,
        done,
    })
}

/// Differences and the corrections (agent id, epoch, what) that `--apply` makes.
type Found = (Vec<Difference>, Vec<(i64, i64, Correction)>);

/// What one walk found, and whether it reached the end of the ledger.
struct Walked {
    found: Vec<Difference>,
    corrections: Vec<(i64, i64, Correction)>,
    done: bool,
    /// `getAgentInfo` of the agents the walk met, by agent id (asked once per run).
    infos: HashMap<i64, Option<AgentInfo>>,
}

/// One bounded walk over the ledger.
struct Walk<'a> {
    escrow: &'a Escrow<'a>,
    config: &'a EscrowConfig,
    current: i64,
    apply: bool,
}

impl Walk<'_> {
    /// Returns the differences, the corrections (agent id, epoch, what), and whether the
    /// walk reached the end.
    fn run(&self, store: &Store, since: i64, max_pairs: usize) -> Result<Walked> {
        let after = store
            .meta_get(CURSOR)?
            .and_then(|c| {
                let (a, e) = c.split_once(':')?;
                Some((a.parse().ok()?, e.parse().ok()?))
            })
            .unwrap_or((0, i64::MIN));
        let rows = store.ledger_rows(since, after, max_pairs)?;
        let mut infos: HashMap<i64, Option<AgentInfo>> = HashMap::new();
        let (mut found, mut corrections) = (Vec::new(), Vec::new());
        for row in &rows {
            let agent = Address::parse(&row.address).map_err(|e| {
                Error::runtime(format!("agent {} in the database: {e}", row.address))
            })?;
            if let std::collections::hash_map::Entry::Vacant(slot) = infos.entry(row.agent_id) {
                let info = self.escrow.agent_info(&agent).map_err(gateway_error)?;
                if let Some(d) = info.as_ref().and_then(|i| fee_difference(row, i)) {
                    found.push(d);
                }
                slot.insert(info);
            }
            let state = self
                .escrow
                .epoch_state(&agent, row.epoch as u64)
                .map_err(gateway_error)?;
            if let Some((difference, correction)) = self.compare(row, state, &infos[&row.agent_id])
            {
                found.push(difference);
                corrections.push((row.agent_id, row.epoch, correction));
            } else if let (Some(settlement), true) = (state, row.unread) {
                // Billed here and on chain, what is due never read (a backup taken before
                // the tick read it): not a difference, but the ledger learns it.
                let due_atto = self
                    .escrow
                    .epoch_debt(&agent, row.epoch as u64)
                    .map_err(gateway_error)?;
                let known = Correction::Known {
                    windows: None,
                    charged_atto: None,
                    due_atto,
                    settlement,
                };
                corrections.push((row.agent_id, row.epoch, known));
            }
        }
        let done = rows.len() < max_pairs;
        match rows.last() {
            Some(last) if !done => {
                store.meta_set(CURSOR, &format!("{}:{}", last.agent_id, last.epoch))?
            }
            _ => store.meta_delete(CURSOR)?,
        }
        Ok(Walked {
            found,
            corrections,
            done,
            infos,
        })
    }

    /// Bills the chain has beyond the local ledger: each agent's `last_billed_epoch`
    /// (`getAgentInfo`) past its latest local epoch marks epochs to ask `getEpochState`
    /// and `getEpochDebt` about (a restored backup, a copy behind its primary). At most
    /// `budget` epochs asked.
    fn missing(
        &self,
        store: &Store,
        infos: &mut HashMap<i64, Option<AgentInfo>>,
        seen: &[(i64, i64)],
        (since, budget): (i64, usize),
    ) -> Result<Found> {
        let (mut found, mut fixes, mut asked) = (Vec::new(), Vec::new(), 0);
        for (agent_id, address) in store.agent_list()? {
            let agent = Address::parse(&address)
                .map_err(|e| Error::runtime(format!("agent {address} in the database: {e}")))?;
            let Some(info) = self.info_of(infos, agent_id, &agent)? else {
                continue;
            };
            // After the last settled epoch: a restored ledger may have open rows (or none)
            // of epochs the chain billed since, and rows of later epochs than those.
            let from = match store.latest_settled_epoch(agent_id)? {
                Some(latest) => (latest + 1).max(info.joined_epoch as i64),
                None => info.joined_epoch as i64,
            };
            for epoch in from.max(since)..=info.last_billed_epoch as i64 {
                if seen.contains(&(agent_id, epoch)) || store.has_usage_row(agent_id, epoch)? {
                    continue;
                }
                if asked >= budget {
                    return Ok((found, fixes));
                }
                asked += 1;
                let state = self
                    .escrow
                    .epoch_state(&agent, epoch as u64)
                    .map_err(gateway_error)?;
                let Some(state) = state else { continue };
                let due = self
                    .escrow
                    .epoch_debt(&agent, epoch as u64)
                    .map_err(gateway_error)?;
                found.push(Difference {
                    address: address.clone(),
                    epoch: Some(epoch),
                    local: "no record".into(),
                    chain: state.to_string(),
                    action: action_of(&Correction::Missing(state, due), self.apply),
                });
                fixes.push((agent_id, epoch, Correction::Missing(state, due)));
            }
        }
        Ok((found, fixes))
    }

    /// What each bill the chain has and the ledger is learning (found on chain, missing)
    /// was made of: its due (`getEpochDebt`), and its windows where they can be told: from a
    /// bill still wholly due (its charge gives them back at the agent's fee), else, for the
    /// one bill left, the escrow's total windows billed (`getAgentServiceStats`) less those
    /// the ledger knows. Windows that cannot be told stay unknown.
    fn learn_bills(
        &self,
        store: &Store,
        corrections: &[(i64, i64, Correction)],
        infos: &mut HashMap<i64, Option<AgentInfo>>,
    ) -> Result<Vec<(i64, i64, Correction)>> {
        let mut by_agent: std::collections::BTreeMap<i64, Vec<(i64, EpochState, Option<u128>)>> =
            Default::default();
        for (agent_id, epoch, c) in corrections {
            match c {
                Correction::FoundOnChain(state) => by_agent
                    .entry(*agent_id)
                    .or_default()
                    .push((*epoch, *state, None)),
                Correction::Missing(state, due) => {
                    by_agent
                        .entry(*agent_id)
                        .or_default()
                        .push((*epoch, *state, Some(*due)))
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        for (agent_id, bills) in by_agent {
            let address = store.agent_address(agent_id)?;
            let agent = Address::parse(&address)
                .map_err(|e| Error::runtime(format!("agent {address} in the database: {e}")))?;
            let fee = match self.info_of(infos, agent_id, &agent)? {
                Some(info) => info.fee_bps,
                None => continue,
            };
            let reward = self.config.window_reward;
            let epochs: Vec<i64> = bills.iter().map(|b| b.0).collect();
            let total = self.escrow.billed_windows(&agent).map_err(gateway_error)? as i64;
            let mut left = total - store.billed_windows_known(agent_id, &epochs)?;
            let mut learned: Vec<(i64, Option<i64>, u128, EpochState)> = Vec::new();
            for (epoch, state, due) in bills {
                let due = match due {
                    Some(d) => d,
                    None => self
                        .escrow
                        .epoch_debt(&agent, epoch as u64)
                        .map_err(gateway_error)?,
                };
                let whole = (state == EpochState::Billed)
                    .then(|| windows_of_charge(due, reward, fee))
                    .flatten();
                if let Some(w) = whole {
                    left -= w;
                }
                learned.push((epoch, whole, due, state));
            }
            let unknown: Vec<usize> = (0..learned.len())
                .filter(|&i| learned[i].1.is_none())
                .collect();
            if let ([i], true) = (unknown.as_slice(), left > 0) {
                learned[*i].1 = Some(left);
            }
            for (epoch, windows, due, state) in learned {
                let charged_atto = windows.map(|w| escrow::due_atto(reward, w as u64, fee));
                let known = Correction::Known {
                    windows,
                    charged_atto,
                    due_atto: due,
                    settlement: state,
                };
                out.push((agent_id, epoch, known));
            }
        }
        Ok(out)
    }

    /// `getAgentInfo` of an agent, asked once per run.
    fn info_of(
        &self,
        infos: &mut HashMap<i64, Option<AgentInfo>>,
        agent_id: i64,
        agent: &Address,
    ) -> Result<Option<AgentInfo>> {
        if let Some(known) = infos.get(&agent_id) {
            return Ok(known.clone());
        }
        let info = self.escrow.agent_info(agent).map_err(gateway_error)?;
        infos.insert(agent_id, info.clone());
        Ok(info)
    }

    fn compare(
        &self,
        row: &LedgerRow,
        state: Option<EpochState>,
        info: &Option<AgentInfo>,
    ) -> Option<(Difference, Correction)> {
        if row.in_flight {
            // Not a difference: the tick that sent it confirms it (and --apply must not
            // race that tick).
            eprintln!(
                "reconcile: {} epoch {}: a bill in flight (chain: {}), confirmed by the next tick; not a difference",
                row.address,
                row.epoch,
                state.map_or("not billed yet".to_string(), |s| s.to_string())
            );
            return None;
        }
        let local_billed = row.kind.is_some_and(|k| k.is_billed());
        let local = row.kind.map_or("open".to_string(), |k| k.to_string());
        let (chain, correction) = match (state, local_billed) {
            (Some(state), false) => (state.to_string(), Correction::FoundOnChain(state)),
            (None, true) => {
                let views = Views {
                    state: None,
                    info: info.clone(),
                };
                let correction = match escrow::judge(
                    row.epoch,
                    row.windows,
                    self.current,
                    &views,
                    self.config,
                ) {
                    Decision::Send { .. } => Correction::Reopen,
                    Decision::Unbillable { reason, .. } => {
                        Correction::Lost(format!("billed locally, not on chain; {reason}"))
                    }
                    Decision::AlreadyBilled { state } => Correction::FoundOnChain(state),
                };
                ("not billed".to_string(), correction)
            }
            _ => return None,
        };
        let action = action_of(&correction, self.apply);
        Some((
            Difference {
                address: row.address.clone(),
                epoch: Some(row.epoch),
                local,
                chain,
                action,
            },
            correction,
        ))
    }
}

/// The windows a whole charge stands for at `fee_bps` (`None` when no whole number of
/// windows charges exactly that).
fn windows_of_charge(charge: u128, reward: u128, fee_bps: u64) -> Option<i64> {
    let per = reward.checked_mul(u128::from(fee_bps))?;
    if per == 0 || charge == 0 {
        return None;
    }
    let w = (charge.checked_mul(10_000)?).div_ceil(per);
    (escrow::due_atto(reward, w as u64, fee_bps) == charge).then_some(w as i64)
}

/// What `--apply` does (or did) about a difference.
fn action_of(correction: &Correction, apply: bool) -> String {
    let said = match (correction, apply) {
        (Correction::FoundOnChain(_), applied) => {
            if applied {
                "marked billed"
            } else {
                "--apply marks it billed"
            }
        }
        (Correction::Reopen, applied) => {
            if applied {
                "re-opened for billing"
            } else {
                "--apply re-opens it for billing"
            }
        }
        (Correction::Lost(_), applied) => {
            if applied {
                "recorded as lost"
            } else {
                "--apply records it as lost (the contract can no longer take it)"
            }
        }
        (Correction::Known { .. }, _) => "its windows, charge and due recorded",
        (Correction::Missing(..), applied) => {
            if applied {
                "recorded as billed"
            } else {
                "--apply records it as billed"
            }
        }
    };
    said.into()
}

/// The escrow charges its own fee for the agent: a different local fee misleads reports.
fn fee_difference(row: &LedgerRow, info: &AgentInfo) -> Option<Difference> {
    (info.fee_bps != row.fee_bps as u64).then(|| Difference {
        address: row.address.clone(),
        epoch: None,
        local: format!("fee {} bps", row.fee_bps),
        chain: format!("fee {} bps", info.fee_bps),
        action: "the escrow's fee is what is charged: re-enroll with --fee-bps to match".into(),
    })
}

fn gateway_error(e: GatewayError) -> Error {
    Error::runtime(format!("reconcile stopped, nothing was changed: {e}"))
}
