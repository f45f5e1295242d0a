//! Runtime configuration of `tick` and `run`: flags, then `STREAM_AGENCY_<OPTION>`
//! environment variables, then the spec's defaults; all checked before anything is done.

use std::path::PathBuf;
use std::time::Duration;

use crate::crypto::keys::{Address, Wallet};
use crate::crypto::private::check_private_file;
use crate::error::{Error, Result};
use crate::net::url::is_loopback;
use crate::renewal::schedule::Policy;

pub const DEFAULT_STREAM_URL: &str = "https://stream.claws.network/stream";
pub const DEFAULT_API_URL: &str = "https://api.claws.network";

/// Every runtime option of `tick`, `run` and `serve`, declared once: `$then!` receives
/// the list after its own tokens and a `;` (doc comments, argh kind, name, `[type]`). The
/// types stay literal tokens, so argh still sees `Option<...>`, `bool` and `Vec<...>`.
#[macro_export]
macro_rules! runtime_options {
    ($then:path { $($pass:tt)* }) => {
        $then! { $($pass)* ;

        /// renew this many seconds before a window ends (default: 360)
        #[argh(option)]
        lead_seconds: [Option<u64>],
        /// add a random 0..=N seconds to every planned attempt (default: 20)
        #[argh(option)]
        jitter_seconds: [Option<u64>],
        /// stream service endpoint (default: https://stream.claws.network/stream)
        #[argh(option)]
        stream_url: [Option<String>],
        /// gateway that tells the current epoch (default: https://api.claws.network)
        #[argh(option)]
        epoch_api_url: [Option<String>],
        /// also count windows found already open (403 "already streaming"), once each
        #[argh(switch)]
        count_observed_windows: [bool],
        /// HTTP timeout per request in seconds (default: 10)
        #[argh(option)]
        timeout_seconds: [Option<u64>],
        /// bill closed epochs on the escrow contract
        #[argh(switch)]
        billing_enabled: [bool],
        /// address of the StreamAgencyEscrow contract (claw1...), required for billing
        #[argh(option)]
        escrow_contract: [Option<String>],
        /// operator wallet PEM (mode 0600), required for billing
        #[argh(option)]
        operator_pem: [Option<std::path::PathBuf>],
        /// gateway for billing transactions (default: https://api.claws.network)
        #[argh(option)]
        billing_proxy: [Option<String>],
        /// chain id the transactions are signed for (default: C)
        #[argh(option)]
        billing_chain: [Option<String>],
        /// gas limit of each billing transaction: auto (the gateway's estimate with a
        /// margin, else the gas the last call of its function used) or a number (default:
        /// auto)
        #[argh(option)]
        billing_gas_limit: [Option<String>],
        /// gas price of each billing transaction: auto (the network's minimum) or a number,
        /// at least the minimum (default: auto)
        #[argh(option)]
        billing_gas_price: [Option<String>],
        /// send bills and enforcements whose expected fee is more than they bring in
        /// (otherwise held as unprofitable and weighed again each epoch)
        #[argh(switch)]
        bill_at_a_loss: [bool],
        /// collect bills still unpaid after their deadline (epoch + grace_epochs) from
        /// the agent's bond with enforceEpoch, once each
        #[argh(switch)]
        enforce_after_grace: [bool],
        /// the standby's database as replicated back to this host: its windows are
        /// absorbed at every tick, and an epoch this host did not renew in time is billed
        /// only once the copy is fresh past its end
        #[argh(option)]
        standby_copy: [Option<std::path::PathBuf>],
        /// with --standby-copy: epochs an epoch waits after its end for a stale copy
        /// before it is billed with what this host has (default: 1, at most the escrow's
        /// max_backbill_epochs - 1)
        #[argh(option)]
        standby_wait_epochs: [Option<u64>],
        /// stop renewing an agent with this many enforced, unpaid epochs until the escrow
        /// shows it healthy again; 0 never stops (default: 2)
        #[argh(option)]
        max_delinquent_epochs: [Option<u64>],
        /// stop starting renewals and billing after this many seconds; the rest goes
        /// first next time (default: 50, so a one-minute timer never overlaps)
        #[argh(option)]
        max_tick_seconds: [Option<u64>],
        /// allow http:// URLs to hosts other than loopback (TLS is otherwise required)
        #[argh(switch)]
        allow_insecure_http: [bool],
        /// a host clock off the network's by more than this needs a human (default: 60)
        #[argh(option)]
        max_clock_skew_seconds: [Option<u64>],
        /// webhook told when something newly needs a human and when it is resolved
        /// (repeatable; slack, mattermost, discord, ntfy or json)
        #[argh(option)]
        notify: [Vec<String>],
        /// payload for --notify: slack, mattermost, discord, ntfy, json (default: by
        /// the URL's host, else json)
        #[argh(option)]
        notify_format: [Option<String>],
        /// the same problem is told at most once per this many seconds (default: 3600)
        #[argh(option)]
        notify_cooldown_seconds: [Option<u64>],
        /// dead man's switch (healthchecks.io style): URL/start, URL, URL/<exit status>
        #[argh(option)]
        ping_url: [Option<String>],
        /// with run, ping at most once per this many seconds (default: 300)
        #[argh(option)]
        ping_every_seconds: [Option<u64>],
        }
    };
}

/// `RuntimeArgs`, from the one list: the runtime options as given on the command line
/// (None: not given; the environment and the defaults are applied by `resolve`).
macro_rules! runtime_args_struct {
    (; $( $(#[doc = $doc:literal])* #[argh($($kind:tt)*)] $field:ident : [$($ty:tt)*], )* ) => {
        /// The runtime options as given on the command line (None: not given).
        #[derive(Debug, Default, Clone)]
        pub struct RuntimeArgs {
            $( $(#[doc = $doc])* pub $field: $($ty)*, )*
        }
    };
}
runtime_options!(runtime_args_struct {});

/// Declares a runtime command (tick, run, serve): the runtime options of the one list, plus
/// the command's own fields, passed through as raw tokens.
#[macro_export]
macro_rules! runtime_command {
    ($(#[$meta:meta])* $name:ident { $($extra:tt)* }) => {
        $crate::runtime_options!($crate::runtime_command_fields { $(#[$meta])* $name { $($extra)* } });
    };
}

/// The second half of [`runtime_command!`]: the struct, and its `RuntimeArgs`.
#[macro_export]
macro_rules! runtime_command_fields {
    ($(#[$meta:meta])* $name:ident { $($extra:tt)* } ;
     $( $(#[doc = $doc:literal])* #[argh($($kind:tt)*)] $field:ident : [$($ty:tt)*], )* ) => {
        #[derive(argh::FromArgs, Debug)]
        $(#[$meta])*
        pub struct $name {
            $( $(#[doc = $doc])* #[argh($($kind)*)] pub $field: $($ty)*, )*
            $($extra)*
        }

        impl $name {
            pub fn runtime_args(&self) -> $crate::config::RuntimeArgs {
                $crate::config::RuntimeArgs { $( $field: self.$field.clone(), )* }
            }
        }
    };
}

/// Declares a command that reads the escrow's views without a key (`reconcile`,
/// `receivables`, `earnings`): the view options, declared once, and the command's own
/// fields; `view_config()` resolves them like `tick`'s (flag, variable, default).
#[macro_export]
macro_rules! view_command {
    ($(#[$meta:meta])* $name:ident { $($extra:tt)* }) => {
        #[derive(argh::FromArgs, Debug)]
        $(#[$meta])*
        pub struct $name {
            /// address of the StreamAgencyEscrow contract (claw1...; env
            /// STREAM_AGENCY_ESCROW_CONTRACT)
            #[argh(option)]
            pub escrow_contract: Option<String>,
            /// gateway to read the contract's views from (default: https://api.claws.network;
            /// env STREAM_AGENCY_BILLING_PROXY)
            #[argh(option)]
            pub billing_proxy: Option<String>,
            /// HTTP timeout per request in seconds (default: 10)
            #[argh(option)]
            pub timeout_seconds: Option<u64>,
            /// allow an http:// gateway other than loopback
            #[argh(switch)]
            pub allow_insecure_http: bool,
            $($extra)*
        }

        impl $name {
            /// The view options resolved (the contract is required).
            pub fn view_config(&self) -> $crate::error::Result<$crate::config::ViewConfig> {
                $crate::config::view_config(
                    self.escrow_contract.clone(),
                    self.billing_proxy.clone(),
                    self.timeout_seconds,
                    self.allow_insecure_http,
                )
            }

            /// Whether the contract is given (flag or variable).
            pub fn has_contract(&self) -> bool {
                $crate::config::string_opt(self.escrow_contract.clone(), "escrow-contract").is_some()
            }
        }
    };
}

#[derive(Debug)]
pub struct RuntimeConfig {
    pub policy: Policy,
    pub stream_url: String,
    pub epoch_api_url: String,
    pub count_observed_windows: bool,
    pub timeout: Duration,
    pub max_tick: Duration,
    /// `--billing-chain`: the chain id every gateway must be on, billing or not.
    pub chain: String,
    /// A host clock off the network's by more than this needs a human.
    pub max_clock_skew_ms: i64,
    /// `--standby-copy`: the standby's database, replicated back here.
    pub standby_copy: Option<PathBuf>,
    pub billing: Option<BillingConfig>,
}

#[derive(Debug)]
pub struct BillingConfig {
    pub escrow: Address,
    pub operator: Wallet,
    pub proxy: String,
    pub chain: String,
    pub gas_limit: Gas,
    pub gas_price: Gas,
    /// `--bill-at-a-loss`: send what costs more than it brings in.
    pub bill_at_a_loss: bool,
    /// `--enforce-after-grace`: collect bills unpaid past their deadline from the bond.
    pub enforce_after_grace: bool,
    /// With `--standby-copy`: how many epochs an epoch this host did not renew in time
    /// waits for the standby's copy (`--standby-wait-epochs`); `None` without a standby.
    pub standby_wait_epochs: Option<i64>,
    /// `--max-delinquent-epochs`: enforced, unpaid epochs after which an agent is not
    /// renewed (0: never).
    pub max_delinquent_epochs: i64,
}

pub use crate::environment::{env, env_path};

/// The database: `--db`, else `STREAM_AGENCY_DB`, else `stream-agency.db`.
pub fn db_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| env_path("STREAM_AGENCY_DB"))
        .unwrap_or_else(|| PathBuf::from("stream-agency.db"))
}

/// `--ca-file`, else `STREAM_AGENCY_CA_FILE`, else `SSL_CERT_FILE`.
pub fn ca_file(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| env_path("STREAM_AGENCY_CA_FILE"))
        .or_else(|| env_path("SSL_CERT_FILE"))
}

/// The proxy variables as curl reads them (lower case first), for `net::http`.
pub fn proxy_vars() -> Vec<(&'static str, String)> {
    crate::net::http::PROXY_VARS
        .iter()
        .filter_map(|&name| Some((name, env(name)?)))
        .collect()
}

fn env_name(option: &str) -> String {
    format!(
        "STREAM_AGENCY_{}",
        option.replace('-', "_").to_ascii_uppercase()
    )
}

/// The flag's value, else the environment's, else None.
pub fn string_opt(flag: Option<String>, option: &str) -> Option<String> {
    flag.or_else(|| env(&env_name(option)))
}

pub fn u64_opt(flag: Option<u64>, option: &str, default: u64) -> Result<u64> {
    if let Some(v) = flag {
        return Ok(v);
    }
    match env(&env_name(option)) {
        Some(v) => v.trim().parse().map_err(|_| {
            Error::usage(format!(
                "{} must be a non-negative whole number (for --{option})",
                env_name(option)
            ))
        }),
        None => Ok(default),
    }
}

/// A switch: the flag, or `STREAM_AGENCY_<OPTION>` set to true/false.
pub fn switch(flag: bool, option: &str) -> Result<bool> {
    if flag {
        return Ok(true);
    }
    match env(&env_name(option))
        .unwrap_or_default()
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "0" | "false" | "no" | "off" => Ok(false),
        "1" | "true" | "yes" | "on" => Ok(true),
        _ => Err(Error::usage(format!(
            "{} must be true or false (for --{option})",
            env_name(option)
        ))),
    }
}

/// An endpoint URL: https, or http to loopback, or http anywhere with --allow-insecure-http.
fn url(flag: Option<String>, option: &str, default: &str, allow_http: bool) -> Result<String> {
    let url = string_opt(flag, option).unwrap_or_else(|| default.to_string());
    checked_url(&url, option, allow_http)
}

/// `url` checked as [`url`] checks an endpoint given for `--option`.
pub fn checked_url(url: &str, option: &str, allow_http: bool) -> Result<String> {
    let lower = url.to_ascii_lowercase();
    if url.len() > 2048 || !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err(Error::usage(format!("--{option} must be an https:// URL")));
    }
    if lower.starts_with("http://") && !allow_http && !is_loopback(url) {
        return Err(Error::usage(format!(
            "--{option} uses plain http to a remote host: use https://, or pass --allow-insecure-http"
        )));
    }
    Ok(url.to_string())
}

impl RuntimeArgs {
    pub fn resolve(self) -> Result<RuntimeConfig> {
        self.resolve_with(true)
    }

    /// For `serve`, which never signs: every option but billing's (no key is read), and
    /// whether billing is on.
    pub fn resolve_for_intake(self) -> Result<(RuntimeConfig, bool)> {
        let billing = switch(self.billing_enabled, "billing-enabled")?;
        Ok((self.resolve_with(false)?, billing))
    }

    fn resolve_with(self, with_billing: bool) -> Result<RuntimeConfig> {
        let lead = u64_opt(self.lead_seconds, "lead-seconds", 360)?;
        let jitter = u64_opt(self.jitter_seconds, "jitter-seconds", 20)?;
        if lead == 0 || lead > 86_400 {
            return Err(Error::usage("--lead-seconds must be between 1 and 86400"));
        }
        if jitter >= lead {
            return Err(Error::usage(format!(
                "--jitter-seconds ({jitter}) must be below --lead-seconds ({lead}), or renewals could come after the window ends"
            )));
        }
        let timeout = timeout_seconds(self.timeout_seconds)?;
        let allow_http = switch(self.allow_insecure_http, "allow-insecure-http")?;
        let max_tick = u64_opt(self.max_tick_seconds, "max-tick-seconds", 50)?;
        if !(1..=86_400).contains(&max_tick) {
            return Err(Error::usage(
                "--max-tick-seconds must be between 1 and 86400",
            ));
        }
        let billing = if with_billing && switch(self.billing_enabled, "billing-enabled")? {
            Some(self.billing(allow_http)?)
        } else {
            None
        };

        let skew = u64_opt(self.max_clock_skew_seconds, "max-clock-skew-seconds", 60)?;
        if !(1..=86_400 * 365).contains(&skew) {
            return Err(Error::usage(
                "--max-clock-skew-seconds must be between 1 and 31536000",
            ));
        }
        Ok(RuntimeConfig {
            max_clock_skew_ms: skew as i64 * 1000,
            standby_copy: self.standby_copy_path(),
            chain: chain_id(self.billing_chain.clone())?,
            policy: Policy {
                lead_ms: lead as i64 * 1000,
                jitter_ms: jitter as i64 * 1000,
            },
            stream_url: url(
                self.stream_url,
                "stream-url",
                DEFAULT_STREAM_URL,
                allow_http,
            )?,
            epoch_api_url: url(
                self.epoch_api_url,
                "epoch-api-url",
                DEFAULT_API_URL,
                allow_http,
            )?,
            count_observed_windows: switch(self.count_observed_windows, "count-observed-windows")?,
            timeout: Duration::from_secs(timeout),
            max_tick: Duration::from_secs(max_tick),
            billing,
        })
    }

    fn standby_copy_path(&self) -> Option<PathBuf> {
        self.standby_copy
            .clone()
            .or_else(|| string_opt(None, "standby-copy").map(PathBuf::from))
    }

    fn billing(&self, allow_http: bool) -> Result<BillingConfig> {
        let escrow = escrow_contract(self.escrow_contract.clone(), "--billing-enabled")?;
        let pem = self
            .operator_pem
            .clone()
            .or_else(|| string_opt(None, "operator-pem").map(PathBuf::from))
            .ok_or_else(|| {
                Error::usage("--billing-enabled needs --operator-pem FILE (the operator's wallet)")
            })?;
        check_private_file(&pem, "operator PEM")?;
        let operator = Wallet::from_pem_file(&pem)?;
        let chain = chain_id(self.billing_chain.clone())?;
        let gas_limit = gas(self.billing_gas_limit.clone(), "billing-gas-limit")?;
        let gas_price = gas(self.billing_gas_price.clone(), "billing-gas-price")?;
        Ok(BillingConfig {
            escrow,
            operator,
            proxy: url(
                self.billing_proxy.clone(),
                "billing-proxy",
                DEFAULT_API_URL,
                allow_http,
            )?,
            chain,
            gas_limit,
            gas_price,
            bill_at_a_loss: switch(self.bill_at_a_loss, "bill-at-a-loss")?,
            enforce_after_grace: switch(self.enforce_after_grace, "enforce-after-grace")?,
            standby_wait_epochs: match self.standby_copy_path() {
                Some(_) => Some(
                    u64_opt(self.standby_wait_epochs, "standby-wait-epochs", 1)?.min(1_000) as i64,
                ),
                None => None,
            },
            max_delinquent_epochs: u64_opt(self.max_delinquent_epochs, "max-delinquent-epochs", 2)?
                .min(1_000_000) as i64,
        })
    }
}

/// A gas limit or price: sized by the tool from what the chain says, or fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gas {
    Auto,
    Fixed(u64),
}

impl std::fmt::Display for Gas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gas::Auto => f.write_str("auto"),
            Gas::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// `--billing-gas-limit` / `--billing-gas-price` (or their variables): `auto` (the
/// default) or a positive whole number.
fn gas(flag: Option<String>, option: &str) -> Result<Gas> {
    let Some(text) = string_opt(flag, option) else {
        return Ok(Gas::Auto);
    };
    if text.trim().eq_ignore_ascii_case("auto") {
        return Ok(Gas::Auto);
    }
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(Gas::Fixed(n)),
        _ => Err(Error::usage(format!(
            "--{option} must be auto or a positive whole number, not {text:?}"
        ))),
    }
}

/// `--billing-chain` (or its variable), default C.
fn chain_id(flag: Option<String>) -> Result<String> {
    let chain = string_opt(flag, "billing-chain").unwrap_or_else(|| "C".into());
    if chain.is_empty() || chain.len() > 32 || !chain.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(Error::usage(
            "--billing-chain must be a short alphanumeric chain id, e.g. C",
        ));
    }
    Ok(chain)
}

/// `--timeout-seconds` (or its variable), 1..=300, default 10.
fn timeout_seconds(flag: Option<u64>) -> Result<u64> {
    let timeout = u64_opt(flag, "timeout-seconds", 10)?;
    if !(1..=300).contains(&timeout) {
        return Err(Error::usage("--timeout-seconds must be between 1 and 300"));
    }
    Ok(timeout)
}

/// `--escrow-contract` (or its variable), required by `what`.
fn escrow_contract(flag: Option<String>, what: &str) -> Result<Address> {
    let escrow = string_opt(flag, "escrow-contract").ok_or_else(|| {
        Error::usage(format!(
            "{what} needs --escrow-contract claw1... (the StreamAgencyEscrow contract)"
        ))
    })?;
    Address::parse(&escrow).map_err(|e| Error::usage(format!("--escrow-contract: {e}")))
}

/// What reading the escrow's views needs (no operator key): `reconcile`.
#[derive(Debug)]
pub struct ViewConfig {
    pub escrow: Address,
    pub proxy: String,
    pub timeout: Duration,
}

/// `withdraw`'s transaction settings: the view options and the owner's key (a private
/// file), on the chain `--billing-chain` (or its variable, or `C`) names, gas sized by the
/// tool. The owner's wallet signs where the operator's would.
pub fn owner_config(view: ViewConfig, owner_pem: &std::path::Path) -> Result<BillingConfig> {
    check_private_file(owner_pem, "owner PEM")?;
    Ok(BillingConfig {
        escrow: view.escrow,
        operator: Wallet::from_pem_file(owner_pem)?,
        proxy: view.proxy,
        chain: chain_id(None)?,
        gas_limit: Gas::Auto,
        gas_price: Gas::Auto,
        bill_at_a_loss: false,
        enforce_after_grace: false,
        standby_wait_epochs: None,
        max_delinquent_epochs: 0,
    })
}

/// The view options of `reconcile`, resolved like those of `tick` (flag, variable, default).
pub fn view_config(
    escrow: Option<String>,
    proxy: Option<String>,
    timeout_seconds: Option<u64>,
    allow_insecure_http: bool,
) -> Result<ViewConfig> {
    let allow_http = switch(allow_insecure_http, "allow-insecure-http")?;
    let timeout = self::timeout_seconds(timeout_seconds)?;
    Ok(ViewConfig {
        escrow: escrow_contract(escrow, "reading the escrow's views")?,
        proxy: url(proxy, "billing-proxy", DEFAULT_API_URL, allow_http)?,
        timeout: Duration::from_secs(timeout),
    })
}

/// The key file for signatures at rest: the flag, `STREAM_AGENCY_SECRET_KEY_FILE`, or the
/// systemd credential `$CREDENTIALS_DIRECTORY/stream-agency.key` when it exists.
pub fn secret_key_file(flag: Option<PathBuf>) -> Option<PathBuf> {
    flag.or_else(|| string_opt(None, "secret-key-file").map(PathBuf::from))
        .or_else(|| {
            let path = env_path("CREDENTIALS_DIRECTORY")?.join("stream-agency.key");
            path.exists().then_some(path)
        })
}

/// `--poll-seconds` of `run`.
pub fn poll_seconds(flag: Option<u64>) -> Result<u64> {
    let poll = u64_opt(flag, "poll-seconds", 20)?;
    if !(1..=3600).contains(&poll) {
        return Err(Error::usage("--poll-seconds must be between 1 and 3600"));
    }
    Ok(poll)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        for ok in [
            "http://127.0.0.1:8080/stream",
            "http://localhost/x",
            "http://[::1]:9/",
            "https://api.claws.network",
        ] {
            assert!(
                url(Some(ok.into()), "stream-url", "", false).is_ok(),
                "{ok}"
            );
        }
        let remote = "http://api.claws.network";
        let err = url(Some(remote.into()), "stream-url", "", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--allow-insecure-http"), "{err}");
        assert!(url(Some(remote.into()), "stream-url", "", true).is_ok());
        assert!(url(
            Some("http://127.0.0.1.evil.com/".into()),
            "stream-url",
            "",
            false
        )
        .is_err());
        assert!(url(Some("ftp://x".into()), "stream-url", "", true).is_err());
    }
}
