//! The intake's limits per client: a token bucket per IP on every route (`--rate`,
//! `--burst`), and which address a request comes from (`X-Forwarded-For` only from a
//! trusted proxy on loopback).

use std::collections::HashMap;
use std::net::IpAddr;

/// Buckets kept at most; beyond, the full ones (idle clients) are forgotten.
const MAX_BUCKETS: usize = 10_000;

/// Requests per second and burst, per client address; rate 0: no limit.
pub struct RateLimiter {
    rate: u32,
    burst: u32,
    /// Tokens left and when they were counted (ms).
    buckets: HashMap<IpAddr, (f64, i64)>,
}

impl RateLimiter {
    pub fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            rate,
            burst: burst.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `ip`. `Err(seconds)`: refused, retry after that many seconds.
    pub fn take(&mut self, ip: IpAddr, now: i64) -> Result<(), u64> {
        if self.rate == 0 {
            return Ok(());
        }
        if self.buckets.len() >= MAX_BUCKETS {
            self.forget_full(now);
        }
        let (rate, burst) = (f64::from(self.rate), f64::from(self.burst));
        let (tokens, at) = self.buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + (now - *at).max(0) as f64 * rate / 1000.0).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
    }

    /// Drops the buckets that have refilled (their clients are back to a full burst).
    fn forget_full(&mut self, now: i64) {
        let (rate, burst) = (f64::from(self.rate), f64::from(self.burst));
        self.buckets
            .retain(|_, (tokens, at)| *tokens + (now - *at) as f64 * rate / 1000.0 < burst);
    }
}

/// The key one client is limited by: an IPv4 address, or an IPv6 address's /64 (one host
/// often holds a whole /64).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(bits))
            }
        },
    }
}

/// The client's address: the peer's, or with `trust_proxy` and a loopback peer, the last
/// address of `X-Forwarded-For` (the one our proxy added).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trust_proxy: bool) -> IpAddr {
    if !trust_proxy || !peer.is_loopback() {
        return peer;
    }
    forwarded_for
        .and_then(|v| v.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut limits = RateLimiter::new(10, 20);
        for _ in 0..20 {
            assert!(limits.take(ip, 1_000).is_ok());
        }
        assert_eq!(limits.take(ip, 1_000), Err(1));
        assert!(limits.take(ip, 1_100).is_ok(), "one token per 100 ms");
        assert!(limits.take(ip, 1_100).is_err());
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(limits.take(other, 1_100).is_ok(), "per address");
        let mut off = RateLimiter::new(0, 0);
        assert!((0..1000).all(|_| off.take(ip, 0).is_ok()));
    }

    #[test]
    fn forwarded_for_is_trusted_only_from_loopback_and_when_asked() {
        let proxy: IpAddr = "127.0.0.1".parse().unwrap();
        let far: IpAddr = "198.51.100.7".parse().unwrap();
        let xff = Some("203.0.113.9, 198.51.100.1");
        assert_eq!(client_ip(proxy, xff, false), proxy);
        assert_eq!(client_ip(far, xff, true), far);
        assert_eq!(
            client_ip(proxy, xff, true),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, Some("junk"), true), proxy);
    }
}
