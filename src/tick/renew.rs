//! Step 3 of a tick: one agent renewed, its next attempt planned, the outcome recorded (or
//! kept in memory while the disk refuses it).

use std::time::Instant;

use super::summary::TickSummary;
use super::Agency;
use crate::error::Result;

/// The longest pause a service's `Retry-After` imposes on every renewer (a longer one is
/// still honoured for the agent it answered).
const MAX_SERVICE_PAUSE_MS: i64 = 60_000;
use crate::net::clock::now_ms;
use crate::renewal::outcome::{DueAgent, Renewal, Verdict};
use crate::renewal::schedule::{Known, Plan, Policy};
use crate::renewal::stream::{Answer, Reply};

impl Agency {
    /// One `/stream` call for the agent; an unreadable stored signature fails that agent
    /// alone (retried like an agent problem, while the others renew).
    fn call_service(&self, agent: &DueAgent) -> Reply {
        match &agent.signature {
            Ok(signature) => self.stream.renew(&agent.address, signature),
            Err(e) => Reply {
                answer: Answer::Rejected,
                status: None,
                reason: format!("stored signature unreadable: {e}"),
                excerpt: String::new(),
                duration_ms: 0,
            },
        }
    }

    /// The next attempt after `answer`. The service's times are on the network's clock:
    /// planned on the host's, with the estimate's uncertainty added to the lead while a
    /// correction applies. Returns the answer on the host's clock too.
    fn plan(
        &mut self,
        agent: &DueAgent,
        answer: &Answer,
        attempted_ms: i64,
        now: i64,
    ) -> (Answer, Plan) {
        let known = Known {
            end_ms: agent.expected_end_ms,
            window_ms: agent.window_ms,
            step: agent.backoff_step,
            after_end: agent.after_end,
            since_probe: agent.since_probe,
            attempted_ms,
            stale: agent.stale,
        };
        let offset = self.network_clock.update();
        let on_host = answer.shifted(-offset.correction_ms());
        let policy = Policy {
            lead_ms: self.cfg.policy.lead_ms + offset.margin_ms(),
            ..self.cfg.policy
        };
        let plan = policy.plan(&on_host, now, known);
        (on_host, plan)
    }

    pub(super) fn renew(
        &mut self,
        agent: &DueAgent,
        min_epoch: Option<i64>,
        summary: &mut TickSummary,
    ) -> Result<()> {
        let attempted_ms = now_ms();
        let net_started = Instant::now();
        let reply = self.call_service(agent);
        summary.network_ms += net_started.elapsed().as_secs_f64() * 1000.0;
        let now = now_ms();
        // A busy service (429 with Retry-After) slows every renewer of the agency, not just
        // this one: they all read the pause from the database.
        if let Answer::RateLimited {
            retry_after_ms: Some(wait),
        } = reply.answer
        {
            let paused = self
                .store
                .pause_stream_until(now + wait.clamp(0, MAX_SERVICE_PAUSE_MS));
            if let Err(e) = paused {
                log::debug!("the service's pause is not shared: {e}");
            }
        }
        let (on_host, plan) = self.plan(agent, &reply.answer, attempted_ms, now);
        let opened_ms = opened_at(&on_host, agent, attempted_ms, now);
        let (verdict, window) = verdict_of(
            &reply.answer,
            &reply.reason,
            self.cfg.count_observed_windows,
        );
        match &verdict {
            Verdict::Renewed => summary.renewed += 1,
            Verdict::Neutral => summary.already_streaming += 1,
            Verdict::Failed(reason) => {
                summary.failed += 1;
                log::warn!("renewal of {} failed: {reason}", agent.address);
            }
        }
        let db_started = Instant::now();
        let renewal = Renewal {
            agent_id: agent.id,
            attempted_ms,
            opened_ms,
            // An end already past when answered teaches nothing about the length.
            window_bounds: match on_host {
                Answer::Opened { end_ms } if end_ms > now => {
                    Some((end_ms - now, end_ms - attempted_ms))
                }
                _ => None,
            },
            duration_ms: reply.duration_ms,
            status_code: reply.status,
            reason: reply.reason,
            end_stream_ms: reply.answer.end_ms(),
            can_stream_again_at_ms: reply.answer.again_at_ms(),
            body_excerpt: reply.excerpt,
            verdict,
            window,
            // The epoch seen before this attempt bounds a window it opened, not one found
            // already open (its answer was lost earlier, maybe in the epoch before).
            min_epoch: min_epoch.filter(|_| !window.is_some_and(|(_, observed)| observed)),
            expected_end_ms: on_host.end_ms(),
            next_attempt_ms: plan.next_attempt_ms,
            backoff_step: plan.backoff_step,
            after_end: plan.after_end,
            since_probe: plan.since_probe,
            stale: plan.stale,
        };
        log::debug!(
            "{}: {} in {} ms, next attempt at {}",
            agent.address,
            renewal.reason,
            renewal.duration_ms,
            plan.next_attempt_ms
        );
        let epoch = summary.epoch.or(min_epoch);
        let db = &self.db;
        summary.windows_recorded +=
            self.backlog
                .record(&mut self.store, db, renewal, &agent.address, epoch)?;
        summary.database_ms += db_started.elapsed().as_secs_f64() * 1000.0;
        Ok(())
    }
}

/// When a window opened, by the host's clock: the service granted it between the request
/// (`attempted_ms`) and its answer (`answered_ms`). With the agent's usual window length
/// known, `end - length` within those bounds (a slow answer must not move the window into
/// the next epoch); otherwise when the answer came. A service grants a window after it
/// read (and maybe queued) the request, just before it answers: the answer's time is
/// late by the answer's own travel only, the request's time early by everything else. A window found already open (its
/// answer was lost) opened `length` before its end too, and not after it was seen; it
/// was still open when the service read the request, at or after `attempted_ms`, so it
/// opened no earlier than `attempted_ms - length` (not `answered_ms - length`: the
/// answer's latency would move a window granted just before a boundary past it).
pub fn opened_at(answer: &Answer, agent: &DueAgent, attempted_ms: i64, answered_ms: i64) -> i64 {
    match (*answer, agent.window_ms) {
        (Answer::Opened { end_ms }, Some(len)) if len > 0 => {
            (end_ms - len).clamp(attempted_ms, answered_ms)
        }
        (
            Answer::AlreadyStreaming {
                end_ms: Some(end_ms),
                ..
            },
            Some(len),
        ) if len > 0 => (end_ms - len).clamp(attempted_ms - len, answered_ms),
        _ => answered_ms,
    }
}

/// What an answer means for the agent's counters, and the window it counts, if any:
/// `(end, observed)`, observed when found already open (counted only with
/// `--count-observed-windows`).
pub fn verdict_of(
    answer: &Answer,
    reason: &str,
    count_observed: bool,
) -> (Verdict, Option<(i64, bool)>) {
    match *answer {
        Answer::Opened { end_ms } => (Verdict::Renewed, Some((end_ms, false))),
        Answer::AlreadyStreaming { end_ms, .. } => (
            Verdict::Neutral,
            end_ms.filter(|_| count_observed).map(|e| (e, true)),
        ),
        _ => (Verdict::Failed(reason.to_string()), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_opened_when_its_end_says_within_the_request() {
        let agent = |window_ms| DueAgent {
            id: 1,
            address: String::new(),
            signature: Err(String::new()),
            expected_end_ms: None,
            window_ms,
            backoff_step: 0,
            after_end: false,
            since_probe: 0,
            stale: false,
        };
        let opened = Answer::Opened { end_ms: 14_000 };
        // Sent at 9_500, answered at 10_400: granted at 10_000 by its end and length.
        assert_eq!(
            opened_at(&opened, &agent(Some(4_000)), 9_500, 10_400),
            10_000
        );
        // Never outside the request's bounds, whatever the length says.
        assert_eq!(
            opened_at(&opened, &agent(Some(9_000)), 9_500, 10_400),
            9_500
        );
        assert_eq!(opened_at(&opened, &agent(Some(100)), 9_500, 10_400), 10_400);
        // The first window of an agent: when the answer came.
        assert_eq!(opened_at(&opened, &agent(None), 9_500, 10_400), 10_400);
        // Found already open, 1.9 s after it was granted (its answer was lost).
        let seen = Answer::AlreadyStreaming {
            end_ms: Some(14_000),
            again_at_ms: None,
        };
        assert_eq!(
            opened_at(&seen, &agent(Some(4_000)), 11_800, 11_900),
            10_000
        );
        // Seen in its last moments through a slow answer: still opened at its start.
        assert_eq!(
            opened_at(&seen, &agent(Some(4_000)), 13_900, 14_100),
            10_000
        );
    }

    #[test]
    fn answers_become_verdicts_and_windows() {
        let opened = Answer::Opened { end_ms: 9 };
        assert_eq!(
            verdict_of(&opened, "ok", false),
            (Verdict::Renewed, Some((9, false)))
        );
        let open = Answer::AlreadyStreaming {
            end_ms: Some(7),
            again_at_ms: None,
        };
        assert_eq!(verdict_of(&open, "x", false), (Verdict::Neutral, None));
        assert_eq!(
            verdict_of(&open, "x", true),
            (Verdict::Neutral, Some((7, true)))
        );
        assert_eq!(
            verdict_of(&Answer::Transient, "HTTP 502", true),
            (Verdict::Failed("HTTP 502".into()), None)
        );
    }
}
