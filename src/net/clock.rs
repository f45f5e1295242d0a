//! The network's clock, as seen from a host whose own clock may be wrong (boards without a
//! real-time clock, VMs after a suspend, hosts without NTP).
//!
//! Every HTTP answer's `Date` header is a sample of the network's time (one-second
//! resolution, taken at the middle of the request). The offset is the median of the last
//! samples (a proxy's cached `Date` is one outlier among them), with the uncertainty of a
//! sample. Schedules are computed in the network's time and converted back; database times
//! stay the host's Unix milliseconds.

use std::sync::{Arc, Mutex};

/// Wall-clock time in Unix milliseconds: the host's clock, as every schedule reads it.
pub fn now_ms() -> i64 {
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    wall + test_wall_shift_ms()
}

/// For tests only: `STREAM_AGENCY_TEST_WALL_SHIFT_MS` shifts this process's wall clock
/// (not its boot clock), as on a host whose clock stepped. Read once.
fn test_wall_shift_ms() -> i64 {
    static SHIFT: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *SHIFT.get_or_init(|| {
        crate::environment::env("STREAM_AGENCY_TEST_WALL_SHIFT_MS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// Where the samples are kept between runs (`meta`).
pub const STORE_KEY: &str = "clock_samples";

/// Samples kept: the median of these is the offset.
pub const KEPT: usize = 9;

/// One reading of the network's clock: `offset_ms` = network time - host time, within
/// `half_width_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub offset_ms: i64,
    pub half_width_ms: i64,
}

/// A `Date` header (whole seconds, so the network's time was in `[date, date + 1 s)`) of an
/// answer to a request sent at `sent_ms` and answered at `received_ms` (host times).
pub fn sample(date_ms: i64, sent_ms: i64, received_ms: i64) -> Sample {
    let mid = sent_ms + (received_ms - sent_ms) / 2;
    Sample {
        offset_ms: date_ms + 500 - mid,
        half_width_ms: 500 + (received_ms - sent_ms).max(0) / 2,
    }
}

/// The estimated offset of the network's clock from the host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offset {
    /// Network time - host time.
    pub ms: i64,
    pub uncertainty_ms: i64,
}

impl Offset {
    /// The correction to apply: none while the offset could be noise (within twice its
    /// uncertainty plus a second: `Date` has one-second resolution and a loaded host answers
    /// slowly), so a host in sync schedules exactly as if there were no estimate at all. A
    /// skew below that is harmless: renewals lead by minutes, and epoch starts are checked
    /// against the chain's own round numbers.
    pub fn correction_ms(&self) -> i64 {
        if self.ms.abs() > 2 * self.uncertainty_ms + 1_000 {
            self.ms
        } else {
            0
        }
    }

    /// The lead to add to renewals while correcting: the estimate's uncertainty.
    pub fn margin_ms(&self) -> i64 {
        if self.correction_ms() != 0 {
            self.uncertainty_ms
        } else {
            0
        }
    }
}

/// The median offset of the samples, with the median uncertainty.
pub fn estimate(samples: &[Sample]) -> Option<Offset> {
    if samples.is_empty() {
        return None;
    }
    let mut offsets: Vec<i64> = samples.iter().map(|s| s.offset_ms).collect();
    let mut widths: Vec<i64> = samples.iter().map(|s| s.half_width_ms).collect();
    offsets.sort_unstable();
    widths.sort_unstable();
    Some(Offset {
        ms: offsets[offsets.len() / 2],
        uncertainty_ms: widths[widths.len() / 2],
    })
}

/// "7 min 12 s behind" / "3 s ahead of": how the host's clock stands.
pub fn describe(offset_ms: i64) -> String {
    let secs = (offset_ms.unsigned_abs() + 500) / 1000;
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let amount = match (d, h, m) {
        (0, 0, 0) => format!("{s} s"),
        (0, 0, _) => format!("{m} min {s} s"),
        (0, _, _) => format!("{h} h {m} min"),
        _ => format!("{d} days {h} h"),
    };
    // Positive offset: the network is ahead, so the host is behind.
    let side = if offset_ms > 0 { "behind" } else { "ahead of" };
    format!("{amount} {side}")
}

/// Samples text as kept in the database: `offset:half_width` pairs.
pub fn encode(samples: &[Sample]) -> String {
    samples
        .iter()
        .map(|s| format!("{}:{}", s.offset_ms, s.half_width_ms))
        .collect::<Vec<_>>()
        .join(",")
}

pub fn decode(text: &str) -> Vec<Sample> {
    text.split(',')
        .filter_map(|pair| {
            let (o, h) = pair.split_once(':')?;
            Some(Sample {
                offset_ms: o.trim().parse().ok()?,
                half_width_ms: h.trim().parse().ok()?,
            })
        })
        .collect()
}

/// Where the HTTP agent drops the samples of its answers.
pub type Sink = Arc<Mutex<Vec<Sample>>>;

/// A ureq middleware that samples the `Date` header of every answer.
pub struct DateSampler(pub Sink);

impl ureq::Middleware for DateSampler {
    fn handle(
        &self,
        request: ureq::Request,
        next: ureq::MiddlewareNext,
    ) -> Result<ureq::Response, ureq::Error> {
        let sent = now_ms();
        let result = next.handle(request);
        let received = now_ms();
        let response = match &result {
            Ok(r) => Some(r),
            Err(ureq::Error::Status(_, r)) => Some(r),
            Err(_) => None,
        };
        let date = response
            .and_then(|r| r.header("Date"))
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64);
        if let Some(date) = date {
            if let Ok(mut samples) = self.0.lock() {
                samples.push(sample(date, sent, received));
            }
        }
        result
    }
}

/// The samples of this process and those kept from earlier runs, and the estimate.
#[derive(Debug, Default)]
pub struct Keeper {
    sink: Sink,
    kept: Vec<Sample>,
    /// The estimate as stored in the database (to write only what is new).
    stored: Option<Offset>,
    pub offset: Offset,
    /// A sample came that disagrees with the stored estimate: worth keeping.
    news: bool,
}

impl Keeper {
    /// The host clock stepped by `delta_ms`: every sample's offset moves the other way
    /// (the network did not move), and the estimate is kept anew.
    pub fn shift(&mut self, delta_ms: i64) {
        for s in &mut self.kept {
            s.offset_ms -= delta_ms;
        }
        if let Some(o) = estimate(&self.kept) {
            self.offset = o;
        }
        self.news = true;
    }

    /// The sink its HTTP agent samples into.
    pub fn sink(&self) -> Sink {
        self.sink.clone()
    }

    /// Starts from the samples kept in the database.
    pub fn load(&mut self, text: Option<&str>) {
        self.kept = text.map(decode).unwrap_or_default();
        self.kept.truncate(KEPT);
        self.stored = estimate(&self.kept);
        self.offset = self.stored.unwrap_or_default();
    }

    /// Takes the new samples in and returns the estimate.
    pub fn update(&mut self) -> Offset {
        let fresh: Vec<Sample> = match self.sink.lock() {
            Ok(mut s) => std::mem::take(&mut *s),
            Err(_) => Vec::new(),
        };
        for s in fresh {
            let known = self.stored.unwrap_or_default();
            if self.stored.is_none() || (s.offset_ms - known.ms).abs() > 1_000 {
                self.news = true;
            }
            self.kept.push(s);
        }
        if self.kept.len() > KEPT {
            self.kept.drain(..self.kept.len() - KEPT);
        }
        if let Some(o) = estimate(&self.kept) {
            self.offset = o;
        }
        self.offset
    }

    /// The samples to keep in the database, when they tell something new (a host in sync
    /// writes nothing, tick after tick).
    pub fn take_news(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.news) {
            return None;
        }
        self.stored = Some(self.offset);
        Some(encode(&self.kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_header_is_a_sample_and_the_median_ignores_an_outlier() {
        // Sent at 10_000, answered at 10_040; the Date says 15 s.
        let s = sample(15_000, 10_000, 10_040);
        assert_eq!(
            s,
            Sample {
                offset_ms: 5_480,
                half_width_ms: 520
            }
        );
        let mut samples = vec![s; 4];
        // A proxy's cached Date, an hour old.
        samples.push(sample(15_000 - 3_600_000, 10_000, 10_040));
        let o = estimate(&samples).unwrap();
        assert_eq!((o.ms, o.uncertainty_ms), (5_480, 520));
        assert_eq!(o.correction_ms(), 5_480);
        let in_sync = Offset {
            ms: 1_900,
            uncertainty_ms: 520,
        };
        assert_eq!((in_sync.correction_ms(), in_sync.margin_ms()), (0, 0));
        assert_eq!(decode(&encode(&samples)), samples);
        assert!(decode("garbage,1:x").is_empty());
    }

    #[test]
    fn skews_read_as_a_person_would_say_them() {
        assert_eq!(describe(432_000), "7 min 12 s behind");
        assert_eq!(describe(-5_000), "5 s ahead of");
        assert_eq!(describe(366 * 86_400_000), "366 days 0 h behind");
    }
}
