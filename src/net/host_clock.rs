//! The host's own clock, between observations: a step (a VM resumed, a snapshot restored,
//! NTP stepping a clock that drifted, a reboot) is noticed without asking anybody, by the
//! wall clock against `CLOCK_BOOTTIME`, which never steps. Each observation records an
//! [`Anchor`]; a tick compares the clocks now with it.

/// A step smaller than this is drift or jitter, not a step.
pub const STEP_MS: i64 = 1_000;
/// `meta` key of the anchor.
pub const ANCHOR_KEY: &str = "clock_anchor";

/// The two clocks read together, and the boot they belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub wall_ms: i64,
    pub boot_ms: i64,
    pub boot_id: String,
}

/// This boot's id: it cannot change within a process, so it is read once.
fn boot_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    })
}

/// What the wall clock did since an anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Steady,
    /// It jumped by this much (negative: back).
    By(i64),
    /// The host rebooted: how its clock moved is unknown.
    Reboot,
}

impl Anchor {
    /// Both clocks now.
    pub fn now() -> Anchor {
        let boot = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        Anchor {
            wall_ms: crate::net::clock::now_ms(),
            boot_ms: boot.tv_sec * 1000 + boot.tv_nsec / 1_000_000,
            boot_id: boot_id().to_string(),
        }
    }

    /// How the wall clock moved since the anchor kept as `kept` (`None`: none kept yet).
    pub fn step_since(kept: Option<&str>) -> Option<Step> {
        kept.and_then(Anchor::decode)
            .map(|k| k.step_to(&Anchor::now()))
    }

    pub fn encode(&self) -> String {
        format!("{} {} {}", self.wall_ms, self.boot_ms, self.boot_id)
    }

    pub fn decode(text: &str) -> Option<Anchor> {
        let mut w = text.split_whitespace();
        Some(Anchor {
            wall_ms: w.next()?.parse().ok()?,
            boot_ms: w.next()?.parse().ok()?,
            boot_id: w.next().unwrap_or("").to_string(),
        })
    }

    /// How the wall clock moved between `self` (earlier) and `now`, against the boot
    /// clock.
    pub fn step_to(&self, now: &Anchor) -> Step {
        if self.boot_id != now.boot_id || now.boot_ms < self.boot_ms {
            return Step::Reboot;
        }
        let moved = (now.wall_ms - self.wall_ms) - (now.boot_ms - self.boot_ms);
        if moved.abs() >= STEP_MS {
            Step::By(moved)
        } else {
            Step::Steady
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_reboots_and_steady_clocks() {
        let a = Anchor {
            wall_ms: 1_000_000,
            boot_ms: 5_000,
            boot_id: "b1".into(),
        };
        let at = |wall_ms, boot_ms, id: &str| Anchor {
            wall_ms,
            boot_ms,
            boot_id: id.into(),
        };
        assert_eq!(a.step_to(&at(1_060_000, 65_000, "b1")), Step::Steady);
        assert_eq!(a.step_to(&at(1_060_400, 65_000, "b1")), Step::Steady);
        assert_eq!(a.step_to(&at(1_020_000, 65_000, "b1")), Step::By(-40_000));
        assert_eq!(a.step_to(&at(1_660_000, 65_000, "b1")), Step::By(600_000));
        assert_eq!(a.step_to(&at(1_060_000, 65_000, "b2")), Step::Reboot);
        assert_eq!(Anchor::decode(&a.encode()), Some(a.clone()));
        let now = Anchor::now();
        assert!(now.boot_ms > 0 && !now.boot_id.is_empty(), "{now:?}");
    }
}
