//! The chain's clock, pure: where an epoch starts (exactly, from genesis and round numbers,
//! or estimated to half a round), whether an epoch reading can be trusted, and which epoch
//! a moment belongs to.
//!
//! Rounds are numbered from genesis and all last the round duration, so round `r` starts at
//! `genesis_ms + r * round_ms`, and the current epoch started at its first round,
//! `erd_round_at_epoch_start`. That holds while the round duration never changed: checked
//! against `erd_current_round` at every reading.

/// Genesis and round duration, from `/network/config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub genesis_ms: i64,
    pub round_ms: i64,
}

/// One `/network/status` answer and when it was asked (`before`) and answered (`after`).
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    pub epoch: i64,
    pub before_ms: i64,
    pub after_ms: i64,
    pub rounds_passed: i64,
    pub current_round: Option<i64>,
    pub round_at_epoch_start: Option<i64>,
}

/// Where the current epoch started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From genesis and the epoch's first round, confirmed by the current round.
    Exact(i64),
    /// From rounds passed, in the middle of the round it can be in (the formula did not
    /// hold, or the gateway omits its fields).
    Estimated(i64),
}

impl Start {
    pub fn ms(self) -> i64 {
        match self {
            Start::Exact(ms) | Start::Estimated(ms) => ms,
        }
    }
}

/// The current epoch's start, in host time, from a reading; `offset_ms` is the network's
/// clock minus the host's (0 when in sync). `None` without any round duration (the windows
/// then wait for a reading that places it).
pub fn epoch_start(
    r: &Reading,
    clock: Option<Clock>,
    round_ms: Option<i64>,
    offset_ms: i64,
) -> Option<Start> {
    if let (Some(c), Some(current), Some(first)) = (clock, r.current_round, r.round_at_epoch_start)
    {
        if c.round_ms > 0 {
            // The round "now" (on the network's clock) must be the gateway's current round,
            // within one round.
            let earliest = (r.before_ms + offset_ms - c.genesis_ms).div_euclid(c.round_ms);
            let latest = (r.after_ms + offset_ms - c.genesis_ms).div_euclid(c.round_ms);
            let start = c.genesis_ms + first * c.round_ms - offset_ms;
            if (earliest - 1..=latest + 1).contains(&current)
                && first <= current
                && start <= r.after_ms
            {
                return Some(Start::Exact(start));
            }
        }
    }
    // The current round began between `before - (passed + 1) rounds` and `after - passed
    // rounds`: the middle of that.
    let round = round_ms.or(clock.map(|c| c.round_ms)).filter(|&r| r > 0)?;
    let earliest = r.before_ms - (r.rounds_passed + 1) * round;
    let latest = r.after_ms - r.rounds_passed * round;
    Some(Start::Estimated(earliest + (latest - earliest) / 2))
}

/// The last trusted reading: its epoch and when it was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub epoch: i64,
    pub at_ms: i64,
}

/// Why a reading cannot be trusted (`None`: it can). Epochs only go forward, and no faster
/// than time allows: another network, a stale cache or a misconfigured URL must not move
/// the epoch that counting and billing use.
pub fn distrust(r: &Reading, last: Option<Seen>, epoch_len_ms: Option<i64>) -> Option<String> {
    let last = last?;
    if r.epoch < last.epoch {
        return Some(format!(
            "the gateway says epoch {} but epoch {} was already seen: it is behind or of another network",
            r.epoch, last.epoch
        ));
    }
    let len = epoch_len_ms.filter(|&l| l > 0)?;
    let elapsed = (r.after_ms - last.at_ms).max(0);
    let allowed = last.epoch + elapsed / len + 2;
    if r.epoch > allowed {
        return Some(format!(
            "the gateway says epoch {} but {} s after epoch {} at most epoch {allowed} is possible: it is of another network",
            r.epoch,
            elapsed / 1000,
            last.epoch
        ));
    }
    None
}

/// The epoch a moment `t` belongs to, from the epoch starts known (ascending by epoch,
/// the current one last), and the usual epoch length for gaps between them.
pub fn epoch_at(t: i64, starts: &[(i64, i64)], epoch_len_ms: i64) -> Option<i64> {
    let len = epoch_len_ms.max(1);
    let after = starts.iter().position(|&(_, s)| s > t);
    let (epoch, start) = match after {
        Some(0) => {
            // Before every known start: count whole epochs back from the first.
            let (e, s) = starts[0];
            return Some(e - (s - t + len - 1) / len);
        }
        Some(i) => starts[i - 1],
        None => *starts.last()?,
    };
    let estimate = epoch + (t - start) / len;
    // Never at or past the next known epoch.
    Some(match after {
        Some(i) => estimate.min(starts[i].0 - 1),
        None => estimate,
    })
}

/// The timeline is trusted for this long after its last observation (then the tick asks,
/// even if idle): a gateway that changed its mind is caught within the hour.
pub const TIMELINE_TRUST_MS: i64 = 3_600_000;
/// `meta` key of the timeline.
pub const TIMELINE_KEY: &str = "epoch_timeline";

/// The last trusted observation: epoch `epoch` started at `start_ms` (host time, exact)
/// and lasts `len_ms`, in rounds of `round_ms`; observed at `observed_ms` through the
/// gateway whose URL hashes to `gateway` (another gateway's timeline is not trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    pub gateway: u64,
    pub epoch: i64,
    pub start_ms: i64,
    pub len_ms: i64,
    pub round_ms: i64,
    pub observed_ms: i64,
}

impl Timeline {
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {} {} {:016x}",
            self.epoch, self.start_ms, self.len_ms, self.round_ms, self.observed_ms, self.gateway
        )
    }

    pub fn decode(text: &str) -> Option<Timeline> {
        let (numbers, gateway) = text.rsplit_once(' ')?;
        let gateway = u64::from_str_radix(gateway, 16).ok()?;
        let n: Vec<i64> = numbers
            .split_whitespace()
            .map(str::parse)
            .collect::<std::result::Result<_, _>>()
            .ok()?;
        let [epoch, start_ms, len_ms, round_ms, observed_ms] = n.as_slice().try_into().ok()?;
        (len_ms > 0 && round_ms > 0).then_some(Timeline {
            gateway,
            epoch,
            start_ms,
            len_ms,
            round_ms,
            observed_ms,
        })
    }

    /// `(epoch, rounds passed)` at `now`, while it is still the observed epoch and the
    /// observation is fresh; `None` when the tick must ask.
    pub fn at(&self, now: i64) -> Option<(i64, i64)> {
        let fresh = (0..=TIMELINE_TRUST_MS).contains(&(now - self.observed_ms));
        // No margin before the boundary is needed: an idle tick counts and bills nothing,
        // so a host clock a little late only moves the next observation by as much.
        let inside = now >= self.start_ms && now < self.start_ms + self.len_ms;
        (fresh && inside).then(|| (self.epoch, (now - self.start_ms) / self.round_ms))
    }
}

/// A gateway URL's short fingerprint (FNV-1a), kept with the timeline.
pub fn gateway_id(url: &str) -> u64 {
    url.trim_end_matches('/')
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOCK: Clock = Clock {
        genesis_ms: 1_000_000,
        round_ms: 6_000,
    };

    fn reading(epoch: i64, at: i64, current: i64, first: i64) -> Reading {
        Reading {
            epoch,
            before_ms: at,
            after_ms: at + 20,
            rounds_passed: current - first,
            current_round: Some(current),
            round_at_epoch_start: Some(first),
        }
    }

    #[test]
    fn the_epoch_start_is_exact_from_genesis_else_the_middle_of_its_round() {
        // Round 100 runs from 1_600_000 to 1_606_000; the epoch began at round 90.
        let r = reading(7, 1_603_000, 100, 90);
        assert_eq!(
            epoch_start(&r, Some(CLOCK), None, 0),
            Some(Start::Exact(1_540_000))
        );
        // Without genesis: 10 rounds passed, the current round began in
        // (1_603_000 - 66_000, 1_603_020 - 60_000]: the middle is 1_540_010.
        assert_eq!(
            epoch_start(&r, None, Some(6_000), 0),
            Some(Start::Estimated(1_540_010))
        );
        assert_eq!(
            epoch_start(&r, None, None, 0),
            None,
            "nothing to place it with"
        );
        // A chain whose round duration changed: the formula predicts round 100, the gateway
        // says 140.
        let changed = reading(7, 1_603_000, 140, 130);
        assert!(matches!(
            epoch_start(&changed, Some(CLOCK), None, 0),
            Some(Start::Estimated(_))
        ));
    }

    #[test]
    fn epochs_go_forward_no_faster_than_time_allows() {
        let last = Some(Seen {
            epoch: 1_000,
            at_ms: 0,
        });
        let at = |epoch: i64, ms: i64| Reading {
            epoch,
            before_ms: ms,
            after_ms: ms,
            rounds_passed: 0,
            current_round: None,
            round_at_epoch_start: None,
        };
        assert!(distrust(&at(1_000, 10), last, Some(1_000)).is_none());
        assert!(distrust(&at(1_001, 10), last, Some(1_000)).is_none());
        assert!(distrust(&at(1_010, 9_000), last, Some(1_000)).is_none());
        assert!(distrust(&at(5, 10), last, Some(1_000))
            .unwrap()
            .contains("epoch 5"));
        assert!(distrust(&at(50_000, 10), last, Some(1_000)).is_some());
        assert!(
            distrust(&at(5, 10), None, Some(1_000)).is_none(),
            "nothing to compare with"
        );
    }

    #[test]
    fn a_moment_belongs_to_the_epoch_whose_start_precedes_it() {
        let starts = [(10, 1_000), (11, 2_000), (14, 5_000)];
        assert_eq!(epoch_at(1_000, &starts, 1_000), Some(10));
        assert_eq!(epoch_at(1_999, &starts, 1_000), Some(10));
        assert_eq!(epoch_at(2_000, &starts, 1_000), Some(11));
        // A gap (epochs 12, 13 never seen): filled with the usual length, below 14.
        assert_eq!(epoch_at(3_100, &starts, 1_000), Some(12));
        assert_eq!(epoch_at(4_999, &starts, 1_000), Some(13));
        assert_eq!(epoch_at(4_999, &starts, 10), Some(13));
        assert_eq!(epoch_at(7_000, &starts, 1_000), Some(16));
        // Before all: counted back from the first start.
        assert_eq!(epoch_at(999, &starts, 1_000), Some(9));
        assert_eq!(epoch_at(0, &starts, 1_000), Some(9));
        assert_eq!(epoch_at(-1, &starts, 1_000), Some(8));
        assert_eq!(epoch_at(5, &[], 1_000), None);
    }

    #[test]
    fn the_timeline_answers_only_inside_a_fresh_epoch() {
        let t = Timeline {
            gateway: gateway_id("https://api.claws.network"),
            epoch: 7,
            start_ms: 100_000,
            len_ms: 60_000,
            round_ms: 6_000,
            observed_ms: 101_000,
        };
        assert_eq!(Timeline::decode(&t.encode()), Some(t));
        assert_eq!(Timeline::decode("1 2 0 4 5 00"), None);
        assert_eq!(Timeline::decode("1 2 3 0a"), None);
        assert_ne!(gateway_id("http://127.0.0.1:9"), t.gateway);
        assert_eq!(t.at(130_000), Some((7, 5)));
        assert_eq!(t.at(99_999), None, "before the epoch");
        assert_eq!(t.at(159_999), Some((7, 9)));
        assert_eq!(t.at(160_000), None, "the next epoch: observe");
        let long = Timeline {
            len_ms: 10 * TIMELINE_TRUST_MS,
            ..t
        };
        assert!(long.at(101_000 + TIMELINE_TRUST_MS).is_some());
        assert_eq!(long.at(101_001 + TIMELINE_TRUST_MS), None, "stale");
    }
}
