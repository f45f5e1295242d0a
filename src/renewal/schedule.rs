//! When to call `/stream` next: the renewal policy, pure and unit-tested.
//!
//! Continuity comes first: a renewal is planned `lead` before the window ends; refusals and
//! faults back off (30 s, 60 s, 120 s, then 180 s) but never wait past the known window end.

use crate::renewal::stream::Answer;

/// Retry interval for the agent's own problems (bad signature, not registered).
pub const AGENT_PROBLEM_RETRY_MS: i64 = 15 * 60 * 1000;
/// No attempt is planned sooner than this after the last one, whatever the answers say.
pub const MIN_RETRY_MS: i64 = 500;
const BACKOFF_S: [i64; 4] = [30, 60, 120, 180];
/// While an agent's service accepts renewals only after the end, one window in this many
/// is still renewed ahead (a probe), to notice when early renewals are accepted again.
pub const PROBE_EVERY: u32 = 8;

/// The backoff of the `step`-th attempt in a row without a new window (1-based).
pub fn backoff_ms(step: u32) -> i64 {
    let i = (step.max(1) as usize - 1).min(BACKOFF_S.len() - 1);
    BACKOFF_S[i] * 1000
}

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    pub lead_ms: i64,
    pub jitter_ms: i64,
}

/// What is known of an agent before its answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Known {
    /// End of the current window.
    pub end_ms: Option<i64>,
    /// Length of its last window (end minus the time it opened).
    pub window_ms: Option<i64>,
    /// Attempts in a row without a new window.
    pub step: u32,
    /// The service accepts this agent's renewals only once the window ended.
    pub after_end: bool,
    /// Windows renewed at their end since the last probe ahead of it.
    pub since_probe: u32,
    /// When this attempt was made.
    pub attempted_ms: i64,
    /// The last answer said "again at" a moment already past.
    pub stale: bool,
}

/// The next attempt and the agent's new backoff step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub next_attempt_ms: i64,
    pub backoff_step: u32,
    /// What is learned of the service's renewal policy for this agent.
    pub after_end: bool,
    pub since_probe: u32,
    /// This answer said "again at" a moment already past.
    pub stale: bool,
}

impl Policy {
    fn jitter(&self) -> i64 {
        fastrand::i64(0..=self.jitter_ms)
    }

    /// Plans after an answer at `now`, from what was known of the agent before it.
    pub fn plan(&self, answer: &Answer, now: i64, known: Known) -> Plan {
        let step_up = known.step.saturating_add(1);
        let known_end = known.end_ms;
        // Backoff plus jitter, but never past a window end still ahead of us.
        let backoff_capped = |end: Option<i64>| {
            let next = now + backoff_ms(step_up) + self.jitter();
            match end {
                Some(end) if end > now => next.min(end),
                _ => next,
            }
        };
        let (after_end, since_probe) = learn(answer, known);
        let stale =
            matches!(*answer, Answer::AlreadyStreaming { again_at_ms: Some(at), .. } if at <= now);
        let (next, backoff_step) = match *answer {
            // "Again at" a moment already past (a clock off, a confused service): never a
            // hot loop. The first time the backoff; twice in a row, the window's end.
            Answer::AlreadyStreaming {
                end_ms,
                again_at_ms: Some(_),
            } if stale => match end_ms.max(known_end) {
                Some(end) if known.stale && end > now => (end + self.jitter(), step_up),
                end => (backoff_capped(end), step_up),
            },
            // Renewed ahead of the end, unless the service only accepts it after the end:
            // then at the end (a probe ahead every PROBE_EVERY windows).
            Answer::Opened { end_ms } if after_end && since_probe > 0 => {
                (end_ms + self.jitter(), 0)
            }
            Answer::Opened { end_ms } => (end_ms - self.lead_ms + self.jitter(), 0),
            Answer::AlreadyStreaming {
                again_at_ms: Some(at),
                ..
            } => (at.max(now) + self.jitter(), step_up),
            Answer::AlreadyStreaming {
                end_ms,
                again_at_ms: None,
            } => (backoff_capped(end_ms.or(known_end)), step_up),
            Answer::RateLimited {
                retry_after_ms: Some(wait),
            } => (now + wait + self.jitter(), step_up),
            Answer::Rejected => (now + AGENT_PROBLEM_RETRY_MS + self.jitter(), step_up),
            // A window opened but its end is unreadable: assume it lasts as long as the last
            // one and renew as usual (never later than the backoff); the next answer tells.
            Answer::OpenedWithoutEnd => {
                let wait = match known.window_ms {
                    Some(len) => (len - self.lead_ms).clamp(0, backoff_ms(step_up)),
                    None => backoff_ms(step_up),
                };
                (now + wait + self.jitter(), step_up)
            }
            Answer::RateLimited {
                retry_after_ms: None,
            }
            | Answer::Transient => (backoff_capped(known_end), step_up),
        };
        Plan {
            next_attempt_ms: next.max(now + MIN_RETRY_MS),
            backoff_step,
            after_end,
            since_probe,
            stale,
        }
    }
}

/// What an answer teaches about when the service accepts this agent's renewals: "again at"
/// the window's own end means only after the end; a window opened by an attempt made
/// before the previous one ended means ahead of it again.
fn learn(answer: &Answer, known: Known) -> (bool, u32) {
    match *answer {
        Answer::AlreadyStreaming {
            end_ms: Some(end),
            again_at_ms: Some(at),
        } if (at - end).abs() <= 1_000 => (true, 1),
        Answer::Opened { .. } if known.end_ms.is_some_and(|end| known.attempted_ms < end) => {
            (false, 0)
        }
        Answer::Opened { .. } if known.after_end => (true, (known.since_probe + 1) % PROBE_EVERY),
        _ => (known.after_end, known.since_probe),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;
    const NO_JITTER: Policy = Policy {
        lead_ms: 360_000,
        jitter_ms: 0,
    };

    fn known(end_ms: Option<i64>, step: u32) -> Known {
        Known {
            end_ms,
            step,
            ..Known::default()
        }
    }

    #[test]
    fn after_end_renewals_are_learned_and_probed_now_and_then() {
        let end = NOW + 8_000;
        let told = Answer::AlreadyStreaming {
            end_ms: Some(end),
            again_at_ms: Some(end),
        };
        let p = NO_JITTER.plan(&told, NOW, known(Some(end), 0));
        assert_eq!(
            (p.after_end, p.since_probe, p.next_attempt_ms),
            (true, 1, end)
        );
        // The next window is renewed at its end, not ahead of it...
        let mut k = Known {
            end_ms: Some(end),
            after_end: true,
            since_probe: 1,
            attempted_ms: end,
            ..Known::default()
        };
        let mut probes = 0;
        for i in 0..16 {
            let next_end = end + (i + 1) * 8_000;
            let p = NO_JITTER.plan(&Answer::Opened { end_ms: next_end }, k.attempted_ms, k);
            if p.next_attempt_ms < next_end {
                probes += 1;
            } else {
                assert_eq!(p.next_attempt_ms, next_end);
            }
            k = Known {
                end_ms: Some(next_end),
                after_end: p.after_end,
                since_probe: p.since_probe,
                attempted_ms: next_end,
                ..k
            };
        }
        // ... but one window in PROBE_EVERY is renewed ahead, to notice a change.
        assert_eq!(probes, 2);
        // An early renewal accepted again: back to renewing ahead.
        let early = Known {
            attempted_ms: end - 5_000,
            ..k
        };
        let p = NO_JITTER.plan(
            &Answer::Opened {
                end_ms: end + 8_000,
            },
            end - 5_000,
            early,
        );
        assert!(!p.after_end);
        assert!(p.next_attempt_ms < end + 8_000, "ahead of the end again");
    }

    fn next(answer: Answer, known_end: Option<i64>, step: u32) -> i64 {
        NO_JITTER
            .plan(&answer, NOW, known(known_end, step))
            .next_attempt_ms
    }

    #[test]
    fn renewal_is_planned_lead_before_the_end_plus_jitter() {
        let end = NOW + 1_800_000;
        assert_eq!(next(Answer::Opened { end_ms: end }, None, 3), end - 360_000);
        assert_eq!(
            NO_JITTER
                .plan(&Answer::Opened { end_ms: end }, NOW, known(None, 3))
                .backoff_step,
            0
        );
        let jittered = Policy {
            lead_ms: 360_000,
            jitter_ms: 20_000,
        };
        for _ in 0..200 {
            let n = jittered
                .plan(&Answer::Opened { end_ms: end }, NOW, known(None, 0))
                .next_attempt_ms;
            assert!((end - 360_000..=end - 340_000).contains(&n), "{n}");
        }
    }

    #[test]
    fn already_streaming_waits_for_can_stream_again_at_never_before() {
        let at = NOW + 42_000;
        let a = Answer::AlreadyStreaming {
            end_ms: None,
            again_at_ms: Some(at),
        };
        assert_eq!(next(a, None, 0), at);
        let p = Policy {
            lead_ms: 10_000,
            jitter_ms: 1_000,
        };
        for _ in 0..100 {
            let n = p.plan(&a, NOW, known(None, 0)).next_attempt_ms;
            assert!((at..=at + 1_000).contains(&n));
        }
    }

    #[test]
    fn backoff_ladder_is_capped_at_the_known_end() {
        let far = Answer::AlreadyStreaming {
            end_ms: None,
            again_at_ms: None,
        };
        assert_eq!(next(far, None, 0), NOW + 30_000);
        assert_eq!(next(far, None, 1), NOW + 60_000);
        assert_eq!(next(far, None, 2), NOW + 120_000);
        assert_eq!(next(far, None, 9), NOW + 180_000);
        let end = NOW + 45_000;
        assert_eq!(next(far, Some(end), 1), end);
        let with_end = Answer::AlreadyStreaming {
            end_ms: Some(NOW + 5_000),
            again_at_ms: None,
        };
        assert_eq!(next(with_end, Some(NOW + 99_000), 0), NOW + 5_000);
        assert_eq!(next(Answer::Transient, Some(NOW + 10_000), 0), NOW + 10_000);
        // An end already behind us does not cap anything.
        assert_eq!(next(Answer::Transient, Some(NOW - 1), 0), NOW + 30_000);
    }

    #[test]
    fn faults_and_agent_problems() {
        assert_eq!(
            next(
                Answer::RateLimited {
                    retry_after_ms: Some(7_000)
                },
                Some(NOW + 1),
                0
            ),
            NOW + 7_000
        );
        assert_eq!(
            next(Answer::Rejected, Some(NOW + 1_000), 0),
            NOW + 15 * 60_000
        );
        assert_eq!(next(Answer::OpenedWithoutEnd, None, 0), NOW + 30_000);
        // With a known window length, renewal is planned as if the window had its usual end.
        let usual = Known {
            window_ms: Some(1_800_000),
            ..Known::default()
        };
        let plan = NO_JITTER.plan(&Answer::OpenedWithoutEnd, NOW, usual);
        assert_eq!(plan.next_attempt_ms, NOW + 30_000, "capped by the backoff");
        let short = Known {
            window_ms: Some(380_000),
            ..Known::default()
        };
        let plan = NO_JITTER.plan(&Answer::OpenedWithoutEnd, NOW, short);
        assert_eq!(plan.next_attempt_ms, NOW + 20_000);
        // Never a hot loop, whatever the service says: "again at" a past moment backs off,
        // and a second time waits for the window's end.
        let stale = Answer::AlreadyStreaming {
            end_ms: Some(NOW + 200_000),
            again_at_ms: Some(NOW - 10),
        };
        assert_eq!(next(stale, None, 0), NOW + 30_000);
        let twice = Known {
            stale: true,
            ..known(None, 1)
        };
        let p = NO_JITTER.plan(&stale, NOW, twice);
        assert_eq!((p.next_attempt_ms, p.stale), (NOW + 200_000, true));
        // A replayed old answer (its end long past) is capped by the end known since.
        let replayed = Answer::AlreadyStreaming {
            end_ms: Some(NOW - 50_000),
            again_at_ms: Some(NOW - 60_000),
        };
        assert_eq!(next(replayed, Some(NOW + 3_000), 0), NOW + 3_000);
        assert_eq!(
            next(Answer::Opened { end_ms: NOW }, None, 0),
            NOW + MIN_RETRY_MS
        );
    }
}
