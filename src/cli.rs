//! Command-line definitions (argh). Defaults are resolved in `config`, so that every
//! runtime option can also come from a `STREAM_AGENCY_<OPTION>` environment variable.

use std::path::PathBuf;

use argh::FromArgs;

use crate::config::RuntimeArgs;
use crate::output::Format;

/// Keeps Claws Network agents' funding streams alive and bills the windows per epoch.
#[derive(FromArgs, Debug)]
#[argh(
    note = "Every runtime option of tick and run can also be set as STREAM_AGENCY_<OPTION> (e.g. STREAM_AGENCY_LEAD_SECONDS); flags win.",
    error_code(1, "runtime error (database unreadable, disk full, ...)"),
    error_code(2, "usage or configuration error: nothing was done"),
    error_code(3, "another tick or run holds the database's lock"),
    error_code(4, "ran, but something needs a human (lapsed window, agent failing over an hour, epoch lost for billing)")
)]
pub struct Cli {
    /// SQLite database file (env STREAM_AGENCY_DB; default: stream-agency.db)
    #[argh(option)]
    pub db: Option<PathBuf>,

    /// key file that encrypts stream signatures at rest (env STREAM_AGENCY_SECRET_KEY_FILE;
    /// under systemd: $CREDENTIALS_DIRECTORY/stream-agency.key)
    #[argh(option)]
    pub secret_key_file: Option<PathBuf>,

    #[argh(subcommand)]
    pub command: Command,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    InitDb(InitDb),
    Keygen(Keygen),
    EncryptSecrets(EncryptSecrets),
    Enroll(Enroll),
    EnrollFromPem(EnrollFromPem),
    Pause(Pause),
    Resume(Resume),
    Remove(Remove),
    Tick(Tick),
    Run(Run),
    Report(Report),
    Attempts(Attempts),
    BillingAttempts(BillingAttempts),
    Check(Check),
    Prune(Prune),
}

/// Create or migrate the database (idempotent).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "init-db")]
pub struct InitDb {}

/// Write a new random key file (mode 0600) for encrypting stream signatures at rest.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "keygen")]
pub struct Keygen {
    /// where to write the key (refuses to overwrite)
    #[argh(option)]
    pub out: PathBuf,
}

/// Encrypt the plaintext stream signatures in place with --secret-key-file (crash-safe).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "encrypt-secrets")]
pub struct EncryptSecrets {}

/// Enroll an agent with its signature of "stream" (verified offline first), or many from a
/// file of `address<TAB>signature[<TAB>fee_bps]` lines (all checked before any is written).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "enroll")]
pub struct Enroll {
    /// the agent's claw1... address
    #[argh(option)]
    pub address: Option<String>,
    /// the agent's signature of the message "stream", hex (optional 0x)
    #[argh(option)]
    pub signature: Option<String>,
    /// enroll every line of this file ("-" for stdin); "#" starts a comment
    #[argh(option)]
    pub from_file: Option<PathBuf>,
    /// the agency's fee in basis points, 1..=10000 (default: 500)
    #[argh(option, default = "500")]
    pub fee_bps: u32,
}

/// Enroll the agent of a wallet PEM file, signing "stream" natively. The key is not stored.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "enroll-from-pem")]
pub struct EnrollFromPem {
    /// wallet PEM file (its first key is used)
    #[argh(option)]
    pub pem: PathBuf,
    /// the agency's fee in basis points, 1..=10000 (default: 500)
    #[argh(option, default = "500")]
    pub fee_bps: u32,
}

/// Stop renewing an agent (its records stay).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "pause")]
pub struct Pause {
    /// the agent's claw1... address
    #[argh(option)]
    pub address: String,
}

/// Renew a paused agent again.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "resume")]
pub struct Resume {
    /// the agent's claw1... address
    #[argh(option)]
    pub address: String,
}

/// Delete an agent and its records; refused while windows wait for billing.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "remove")]
pub struct Remove {
    /// the agent's claw1... address
    #[argh(option)]
    pub address: String,
    /// delete even if counted windows are not billed yet (they are lost)
    #[argh(switch)]
    pub force: bool,
}

/// Declares a runtime command (tick, run) with the options both share, plus its own
/// fields passed through as raw tokens (argh must see the literal `Option<...>` type).
macro_rules! runtime_command {
    ($(#[$meta:meta])* $name:ident { $($extra:tt)* }) => {
        #[derive(FromArgs, Debug)]
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
            pub operator_pem: Option<PathBuf>,
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
            /// stop starting renewals and billing after this many seconds; the rest goes
            /// first next time (default: 50, so a one-minute timer never overlaps)
            #[argh(option)]
            pub max_tick_seconds: Option<u64>,
            /// allow http:// URLs to hosts other than loopback (TLS is otherwise required)
            #[argh(switch)]
            pub allow_insecure_http: bool,
            $($extra)*
        }

        impl $name {
            pub fn runtime_args(&self) -> RuntimeArgs {
                RuntimeArgs {
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
                    max_tick_seconds: self.max_tick_seconds,
                    allow_insecure_http: self.allow_insecure_http,
                }
            }
        }
    };
}

runtime_command! {
    /// One cycle: learn the epoch, renew the agents that are due, record the windows.
    #[argh(subcommand, name = "tick")]
    Tick {
        /// print what would be renewed and billed; change nothing
        #[argh(switch)]
        pub dry_run: bool,
    }
}

runtime_command! {
    /// Tick in a loop, sleeping until the next agent is due; SIGTERM/SIGINT stop it cleanly.
    #[argh(subcommand, name = "run")]
    Run {
        /// longest sleep between ticks in seconds (default: 20)
        #[argh(option)]
        pub poll_seconds: Option<u64>,
    }
}

/// One row per agent: renewals, windows, schedule, last error.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "report")]
pub struct Report {
    /// table, json or tsv (default: table)
    #[argh(option, default = "Format::Table")]
    pub format: Format,
}

/// The latest /stream attempts of an agent.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "attempts")]
pub struct Attempts {
    /// the agent's claw1... address
    #[argh(option)]
    pub address: String,
    /// how many rows, newest first (default: 20)
    #[argh(option, default = "20")]
    pub limit: u32,
    /// table, json or tsv (default: table)
    #[argh(option, default = "Format::Table")]
    pub format: Format,
}

/// The latest billing transactions and decisions.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "billing-attempts")]
pub struct BillingAttempts {
    /// how many rows, newest first (default: 20)
    #[argh(option, default = "20")]
    pub limit: u32,
    /// table, json or tsv (default: table)
    #[argh(option, default = "Format::Table")]
    pub format: Format,
}

/// For monitoring: exit 4 and say why when a window lapsed or will lapse without a renewal
/// planned, billing transactions stay pending, or epochs near the backbill limit.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "check")]
pub struct Check {
    /// warn about windows ending within this many seconds with no renewal planned (default: 600)
    #[argh(option, default = "600")]
    pub warn_seconds: u32,
    /// warn about billing transactions pending longer than this (default: 900)
    #[argh(option, default = "900")]
    pub pending_limit_seconds: u32,
    /// also write node_exporter textfile metrics to this file (atomically)
    #[argh(option)]
    pub prometheus: Option<PathBuf>,
}

/// Delete attempts and settled billing records older than N days (never unbilled usage).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "prune")]
pub struct Prune {
    /// age in days of the records to delete
    #[argh(option)]
    pub older_than: u32,
}
