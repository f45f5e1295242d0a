//! `serve`: the HTTP intake (see `crate::serve`).

use std::net::SocketAddr;

use super::{Ctx, Run};
use crate::config;
use crate::error::{Error, Result};
use crate::serve::routes::Intake;
use crate::serve::{self, Limits};

crate::runtime_command! {
    /// The HTTP intake: agents enroll, pause, resume and remove themselves with their own
    /// signatures; the operator reads report and metrics with a token (see the README).
    #[argh(subcommand, name = "serve")]
    Serve {
        /// address and port to listen on (default: 127.0.0.1:8787); or a socket passed by
        /// systemd (LISTEN_FDS)
        #[argh(option, default = "String::from(\"127.0.0.1:8787\")")]
        pub listen: String,
        /// allow a --listen address other than loopback (plain HTTP: put TLS in front)
        #[argh(switch)]
        pub public: bool,
        /// connections open at most (default: 64)
        #[argh(option, default = "64")]
        pub max_connections: usize,
        /// requests per second per client address, 0 for no limit (default: 10)
        #[argh(option, default = "10")]
        pub rate: u32,
        /// burst of requests per client address (default: 20)
        #[argh(option, default = "20")]
        pub burst: u32,
        /// take the client address from X-Forwarded-For when the peer is loopback
        #[argh(switch)]
        pub trust_proxy: bool,
        /// this agency's name in signed action messages (default: the host name and 8
        /// random hex digits, made once and kept in the database)
        #[argh(option)]
        pub intake_name: Option<String>,
        /// this agency's address as clients reach it (e.g. https://agency.example), shown
        /// in the enrollment instructions of / (default: from the request's Host)
        #[argh(option)]
        pub public_url: Option<String>,
        /// the fee of intake enrollments without billing, in bps (default: 500)
        #[argh(option, default = "crate::chain::escrow::DEFAULT_FEE_BPS")]
        pub intake_fee_bps: u32,
        /// seconds since the last tick after which /healthz fails (default: 180)
        #[argh(option, default = "180")]
        pub max_tick_age_seconds: u64,
        /// fail /healthz for windows ending within this many seconds with no renewal
        /// planned, as `check --warn-seconds` (default: 600)
        #[argh(option, default = "crate::ops::health::Thresholds::DEFAULT_WARN_SECONDS")]
        pub warn_seconds: u32,
        /// fail /healthz for billing transactions pending longer than this, as `check
        /// --pending-limit-seconds` (default: 900)
        #[argh(option, default = "crate::ops::health::Thresholds::DEFAULT_PENDING_LIMIT_SECONDS")]
        pub pending_limit_seconds: u32,
    }
}

impl Run for Serve {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let (cfg, billing) = self.runtime_args().resolve_for_intake()?;
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            Error::usage(format!(
                "--listen {}: give ADDRESS:PORT, e.g. 127.0.0.1:8787",
                self.listen
            ))
        })?;
        if !listen.ip().is_loopback() && !self.public {
            return Err(Error::usage(format!(
                "--listen {listen} is not loopback: the intake speaks plain HTTP; put a TLS proxy in front and pass --public"
            )));
        }
        if !listen.ip().is_loopback() {
            log::warn!(
                "serve: listening on {listen} in plain HTTP: only behind a TLS reverse proxy"
            );
        }
        let fee_bps = super::enroll::check_fee(self.intake_fee_bps)?;
        let checked = intake_name(self.intake_name)?;
        let store = ctx.open_with_secrets()?;
        let name = match checked {
            Some(name) => name,
            None => unique_intake_name(&store)?,
        };
        log::info!(
            "serve: intake name '{name}' (signed actions must name it; --intake-name sets another)"
        );
        let public_url = public_url(self.public_url)?;
        let site = crate::web::Site {
            name: name.clone(),
            fee_bps,
            billing,
        };
        let mut intake = Intake {
            site,
            public_url,
            store,
            db: ctx.db.clone(),
            name,
            fee_bps,
            billing,
            max_tick_age_ms: self.max_tick_age_seconds.saturating_mul(1000) as i64,
            thresholds: crate::ops::health::Thresholds::of_seconds(
                self.warn_seconds,
                self.pending_limit_seconds,
                cfg.max_clock_skew_ms,
            ),
        };
        let limits = Limits {
            max_connections: self.max_connections.max(1),
            rate: self.rate,
            burst: self.burst,
            trust_proxy: config::switch(self.trust_proxy, "trust-proxy")?,
        };
        let stop = serve::stop_on_signals()?;
        let listener = serve::listener(listen, self.public)?;
        serve::serve(&mut intake, &listener, &limits, &stop)
    }
}

/// `--public-url` checked: http(s)://, no path, query or whitespace; without a trailing /.
fn public_url(flag: Option<String>) -> Result<Option<String>> {
    let Some(url) = flag else {
        return Ok(None);
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let ok = rest.is_some_and(|host| crate::net::url::is_host_port(host.trim_end_matches('/')));
    if !ok {
        return Err(Error::usage(format!(
            "--public-url {url}: give the agency's address as clients reach it, e.g. https://agency.example"
        )));
    }
    Ok(Some(url.trim_end_matches('/').to_string()))
}

/// `--intake-name` checked: no ':' (it separates the message's fields). `None`: not given.
fn intake_name(flag: Option<String>) -> Result<Option<String>> {
    let Some(name) = flag else {
        return Ok(None);
    };
    if name.is_empty()
        || name.len() > 64
        || name.contains(':')
        || name.chars().any(char::is_control)
    {
        return Err(Error::usage(
            "--intake-name must be 1 to 64 characters without ':'",
        ));
    }
    Ok(Some(name))
}

/// Without `--intake-name`: a name unique to this agency, made once and kept in its
/// database (the host name, as common as "ubuntu", plus 8 random hex digits), so a signed
/// action for another agency is never valid here.
fn unique_intake_name(store: &crate::store::Store) -> Result<String> {
    const KEY: &str = "intake_name";
    if let Some(name) = store.meta_get(KEY)? {
        return Ok(name);
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && h.len() <= 40 && !h.contains(':'))
        .unwrap_or_else(|| "stream-agency".into());
    let name = format!("{host}-{:08x}", fastrand::u32(..));
    store.meta_set(KEY, &name)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_url_is_a_bare_origin() {
        assert_eq!(
            public_url(Some("https://agency.example/".into())).unwrap(),
            Some("https://agency.example".into())
        );
        assert_eq!(
            public_url(Some("http://[::1]:8787".into())).unwrap(),
            Some("http://[::1]:8787".into())
        );
        for bad in [
            "agency.example",
            "ftp://agency.example",
            "https://",
            "https://agency.example/path",
            "https://a\"><script>",
            "https://agency.example?x=1",
        ] {
            assert!(public_url(Some(bad.into())).is_err(), "{bad}");
        }
    }
}
