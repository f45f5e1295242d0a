//! `serve`: the HTTP intake (see `crate::serve`).

use std::net::SocketAddr;

use super::{Ctx, Run};
use crate::chain::gateway::Gateway;
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
        /// this agency's name in signed action messages (default: the host name)
        #[argh(option)]
        pub intake_name: Option<String>,
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
        let cfg = self.runtime_args().resolve()?;
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
        let name = intake_name(self.intake_name)?;
        let escrow = cfg
            .billing
            .as_ref()
            .map(|b| (Gateway::connect(&b.proxy, cfg.timeout), b.escrow));
        let mut intake = Intake {
            store: ctx.open_with_secrets()?,
            db: ctx.db.clone(),
            name,
            fee_bps,
            escrow,
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
        let listener = serve::listener(listen)?;
        serve::serve(&mut intake, &listener, &limits, &stop)
    }
}

/// `--intake-name`, else the host name: no ':' (it separates the message's fields).
fn intake_name(flag: Option<String>) -> Result<String> {
    let name = match flag {
        Some(n) => n,
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "stream-agency".into()),
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
    Ok(name)
}
