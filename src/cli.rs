//! Command-line definitions (argh): the global options and the list of commands. Each
//! command's own arguments live with it under `cmd/`; runtime defaults are resolved in
//! `config`, so every runtime option can also come from `STREAM_AGENCY_<OPTION>`.

use std::path::PathBuf;

use argh::FromArgs;

use crate::cmd::{self, Ctx, Run};
use crate::error::Result;

/// Keeps Claws Network agents' funding streams alive and bills the windows per epoch.
#[derive(FromArgs, Debug)]
#[argh(
    note = "Every runtime option of tick and run can also be set as STREAM_AGENCY_<OPTION> (e.g. STREAM_AGENCY_LEAD_SECONDS); flags win.",
    error_code(1, "runtime error (database unreadable, disk full, ...)"),
    error_code(2, "usage or configuration error: nothing was done"),
    error_code(3, "another tick or run holds the database's lock"),
    error_code(4, "ran, but something needs a human (lapsed window, agent failing over an hour, epoch lost or held for billing, billing stopped by its configuration)")
)]
pub struct Cli {
    /// SQLite database file (env STREAM_AGENCY_DB; default: stream-agency.db)
    #[argh(option)]
    pub db: Option<PathBuf>,

    /// key file that encrypts stream signatures at rest (env STREAM_AGENCY_SECRET_KEY_FILE;
    /// under systemd: $CREDENTIALS_DIRECTORY/stream-agency.key)
    #[argh(option)]
    pub secret_key_file: Option<PathBuf>,

    /// extra CA certificates (PEM) trusted besides the bundled roots, for TLS-inspecting
    /// networks (env STREAM_AGENCY_CA_FILE, else SSL_CERT_FILE)
    #[argh(option)]
    pub ca_file: Option<PathBuf>,

    #[argh(subcommand)]
    pub command: Command,
}

/// The command enum and its dispatch, from one list: a new command is one line here.
macro_rules! commands {
    ($($variant:ident($ty:ty),)*) => {
        #[derive(FromArgs, Debug)]
        #[argh(subcommand)]
        pub enum Command {
            $($variant($ty),)*
        }

        impl Run for Command {
            fn run(self, ctx: &Ctx) -> Result<()> {
                match self {
                    $(Command::$variant(c) => c.run(ctx),)*
                }
            }
        }
    };
}

commands! {
    InitDb(cmd::init_db::InitDb),
    ImportMvp(cmd::import_mvp::ImportMvp),
    Keygen(cmd::secrets::Keygen),
    EncryptSecrets(cmd::secrets::EncryptSecrets),
    Enroll(cmd::enroll::Enroll),
    EnrollFromPem(cmd::enroll::EnrollFromPem),
    Pause(cmd::status::Pause),
    Resume(cmd::status::Resume),
    Remove(cmd::remove::Remove),
    Tick(cmd::tick::Tick),
    Run(cmd::run::RunCmd),
    Serve(cmd::serve::Serve),
    Token(cmd::token::Token),
    Report(cmd::report::Report),
    Attempts(cmd::report::Attempts),
    BillingAttempts(cmd::report::BillingAttempts),
    Receivables(cmd::report::Receivables),
    Billing(cmd::billing::Billing),
    Reconcile(cmd::reconcile::Reconcile),
    Check(cmd::check::Check),
    Prune(cmd::prune::Prune),
    Backup(cmd::backup::Backup),
    Restore(cmd::backup::Restore),
}

impl Cli {
    pub fn run(self) -> Result<()> {
        let ca_file = self
            .ca_file
            .or_else(|| std::env::var_os("STREAM_AGENCY_CA_FILE").map(PathBuf::from));
        crate::net::http::trust_extra_roots(ca_file.as_deref())?;
        let ctx = Ctx::new(self.db, self.secret_key_file);
        self.command.run(&ctx)
    }
}

/// Declares a runtime command (tick, run) with the options both share, plus its own
/// fields passed through as raw tokens (argh must see the literal `Option<...>` type).
#[macro_export]
macro_rules! runtime_command {
    ($(#[$meta:meta])* $name:ident { $($extra:tt)* }) => {
        #[derive(argh::FromArgs, Debug)]
        $(#[$meta])*
        pub struct $name {
            /// renew this many seconds before a window ends (default: 360)
            #[argh(option)]
            pub lead_seconds: Option<u64>,
            /// add a random 0..=N seconds to every planned attempt (default: 20)
            #[argh(option)]
            pub jitter_seconds: Option<u64>,
            /// stream service endpoint (default: https://stream.claws.network/stream)
            #[argh(option)]
            pub stream_url: Option<String>,
            /// gateway that tells the current epoch (default: https://api.claws.network)
            #[argh(option)]
            pub epoch_api_url: Option<String>,
            /// also count windows found already open (403 "already streaming"), once each
            #[argh(switch)]
            pub count_observed_windows: bool,
            /// HTTP timeout per request in seconds (default: 10)
            #[argh(option)]
            pub timeout_seconds: Option<u64>,
            /// bill closed epochs on the escrow contract
            #[argh(switch)]
            pub billing_enabled: bool,
            /// address of the StreamAgencyEscrow contract (claw1...), required for billing
            #[argh(option)]
            pub escrow_contract: Option<String>,
            /// operator wallet PEM (mode 0600), required for billing
            #[argh(option)]
            pub operator_pem: Option<std::path::PathBuf>,
            /// gateway for billing transactions (default: https://api.claws.network)
            #[argh(option)]
            pub billing_proxy: Option<String>,
            /// chain id the transactions are signed for (default: C)
            #[argh(option)]
            pub billing_chain: Option<String>,
            /// gas limit of a billEpoch transaction (default: 25000000)
            #[argh(option)]
            pub billing_gas_limit: Option<u64>,
            /// gas price of a billEpoch transaction (default: 20000000000000)
            #[argh(option)]
            pub billing_gas_price: Option<u64>,
            /// collect bills still unpaid after their deadline (epoch + grace_epochs) from
            /// the agent's bond with enforceEpoch, once each
            #[argh(switch)]
            pub enforce_after_grace: bool,
            /// stop starting renewals and billing after this many seconds; the rest goes
            /// first next time (default: 50, so a one-minute timer never overlaps)
            #[argh(option)]
            pub max_tick_seconds: Option<u64>,
            /// allow http:// URLs to hosts other than loopback (TLS is otherwise required)
            #[argh(switch)]
            pub allow_insecure_http: bool,
            /// a host clock off the network's by more than this needs a human (default: 60)
            #[argh(option)]
            pub max_clock_skew_seconds: Option<u64>,
            /// webhook told when something newly needs a human and when it is resolved
            /// (repeatable; slack, mattermost, discord, ntfy or json)
            #[argh(option)]
            pub notify: Vec<String>,
            /// payload for --notify: slack, mattermost, discord, ntfy, json (default: by
            /// the URL's host, else json)
            #[argh(option)]
            pub notify_format: Option<String>,
            /// the same problem is told at most once per this many seconds (default: 3600)
            #[argh(option)]
            pub notify_cooldown_seconds: Option<u64>,
            /// dead man's switch (healthchecks.io style): URL/start, URL, URL/<exit status>
            #[argh(option)]
            pub ping_url: Option<String>,
            /// with run, ping at most once per this many seconds (default: 300)
            #[argh(option)]
            pub ping_every_seconds: Option<u64>,
            $($extra)*
        }

        impl $name {
            pub fn runtime_args(&self) -> $crate::config::RuntimeArgs {
                $crate::config::RuntimeArgs {
                    lead_seconds: self.lead_seconds,
                    jitter_seconds: self.jitter_seconds,
                    stream_url: self.stream_url.clone(),
                    epoch_api_url: self.epoch_api_url.clone(),
                    count_observed_windows: self.count_observed_windows,
                    timeout_seconds: self.timeout_seconds,
                    billing_enabled: self.billing_enabled,
                    escrow_contract: self.escrow_contract.clone(),
                    operator_pem: self.operator_pem.clone(),
                    billing_proxy: self.billing_proxy.clone(),
                    billing_chain: self.billing_chain.clone(),
                    billing_gas_limit: self.billing_gas_limit,
                    billing_gas_price: self.billing_gas_price,
                    enforce_after_grace: self.enforce_after_grace,
                    max_tick_seconds: self.max_tick_seconds,
                    allow_insecure_http: self.allow_insecure_http,
                    max_clock_skew_seconds: self.max_clock_skew_seconds,
                }
            }

            pub fn alert_args(&self) -> $crate::ops::notify::AlertArgs {
                $crate::ops::notify::AlertArgs {
                    notify: self.notify.clone(),
                    notify_format: self.notify_format.clone(),
                    notify_cooldown_seconds: self.notify_cooldown_seconds,
                    ping_url: self.ping_url.clone(),
                    ping_every_seconds: self.ping_every_seconds,
                    allow_insecure_http: $crate::config::switch(
                        self.allow_insecure_http,
                        "allow-insecure-http",
                    )
                    .unwrap_or(self.allow_insecure_http),
                }
            }
        }
    };
}
