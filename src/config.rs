//! Runtime configuration of `tick` and `run`: flags, then `STREAM_AGENCY_<OPTION>`
//! environment variables, then the spec's defaults; all checked before anything is done.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::keys::{Address, Wallet};
use crate::schedule::Policy;

pub const DEFAULT_STREAM_URL: &str = "https://stream.claws.network/stream";
pub const DEFAULT_API_URL: &str = "https://api.claws.network";

/// The runtime options as given on the command line (None: not given).
#[derive(Debug, Default, Clone)]
pub struct RuntimeArgs {
    pub lead_seconds: Option<u64>,
    pub jitter_seconds: Option<u64>,
    pub stream_url: Option<String>,
    pub epoch_api_url: Option<String>,
    pub count_observed_windows: bool,
    pub timeout_seconds: Option<u64>,
    pub billing_enabled: bool,
    pub escrow_contract: Option<String>,
    pub operator_pem: Option<PathBuf>,
    pub billing_proxy: Option<String>,
    pub billing_chain: Option<String>,
    pub billing_gas_limit: Option<u64>,
    pub billing_gas_price: Option<u64>,
}

#[derive(Debug)]
pub struct RuntimeConfig {
    pub policy: Policy,
    pub stream_url: String,
    pub epoch_api_url: String,
    pub count_observed_windows: bool,
    pub timeout: Duration,
    pub billing: Option<BillingConfig>,
}

#[derive(Debug)]
pub struct BillingConfig {
    pub escrow: Address,
    pub operator: Wallet,
    pub proxy: String,
    pub chain: String,
    pub gas_limit: u64,
    pub gas_price: u64,
}

fn env_name(option: &str) -> String {
    format!(
        "STREAM_AGENCY_{}",
        option.replace('-', "_").to_ascii_uppercase()
    )
}

/// The flag's value, else the environment's, else None.
fn string_opt(flag: Option<String>, option: &str) -> Option<String> {
    flag.or_else(|| {
        std::env::var(env_name(option))
            .ok()
            .filter(|v| !v.is_empty())
    })
}

fn u64_opt(flag: Option<u64>, option: &str, default: u64) -> Result<u64> {
    if let Some(v) = flag {
        return Ok(v);
    }
    match std::env::var(env_name(option)) {
        Ok(v) if !v.is_empty() => v.trim().parse().map_err(|_| {
            Error::usage(format!(
                "{} must be a non-negative whole number (for --{option})",
                env_name(option)
            ))
        }),
        _ => Ok(default),
    }
}

fn switch(flag: bool, option: &str) -> Result<bool> {
    if flag {
        return Ok(true);
    }
    match std::env::var(env_name(option))
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

fn url(flag: Option<String>, option: &str, default: &str) -> Result<String> {
    let url = string_opt(flag, option).unwrap_or_else(|| default.to_string());
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048 {
        return Err(Error::usage(format!(
            "--{option} must be an http(s):// URL"
        )));
    }
    Ok(url)
}

/// Refuses a secret file that others can read: a key must be guarded like a password.
pub fn check_private_file(path: &Path, what: &str) -> Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::usage(format!("cannot read {what} {}: {e}", path.display())))?;
    if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::usage(format!(
            "{what} {} is readable by other users: run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

impl RuntimeArgs {
    pub fn resolve(self) -> Result<RuntimeConfig> {
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
        let timeout = u64_opt(self.timeout_seconds, "timeout-seconds", 10)?;
        if !(1..=300).contains(&timeout) {
            return Err(Error::usage("--timeout-seconds must be between 1 and 300"));
        }
        let billing = if switch(self.billing_enabled, "billing-enabled")? {
            Some(self.billing()?)
        } else {
            None
        };
        Ok(RuntimeConfig {
            policy: Policy {
                lead_ms: lead as i64 * 1000,
                jitter_ms: jitter as i64 * 1000,
            },
            stream_url: url(self.stream_url, "stream-url", DEFAULT_STREAM_URL)?,
            epoch_api_url: url(self.epoch_api_url, "epoch-api-url", DEFAULT_API_URL)?,
            count_observed_windows: switch(self.count_observed_windows, "count-observed-windows")?,
            timeout: Duration::from_secs(timeout),
            billing,
        })
    }

    fn billing(&self) -> Result<BillingConfig> {
        let escrow = string_opt(self.escrow_contract.clone(), "escrow-contract").ok_or_else(|| {
            Error::usage("--billing-enabled needs --escrow-contract claw1... (the StreamAgencyEscrow contract)")
        })?;
        let escrow =
            Address::parse(&escrow).map_err(|e| Error::usage(format!("--escrow-contract: {e}")))?;
        let pem = self
            .operator_pem
            .clone()
            .or_else(|| string_opt(None, "operator-pem").map(PathBuf::from))
            .ok_or_else(|| {
                Error::usage("--billing-enabled needs --operator-pem FILE (the operator's wallet)")
            })?;
        check_private_file(&pem, "operator PEM")?;
        let operator = Wallet::from_pem_file(&pem)?;
        let chain =
            string_opt(self.billing_chain.clone(), "billing-chain").unwrap_or_else(|| "C".into());
        if chain.is_empty() || chain.len() > 32 || !chain.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(Error::usage(
                "--billing-chain must be a short alphanumeric chain id, e.g. C",
            ));
        }
        let gas_limit = u64_opt(self.billing_gas_limit, "billing-gas-limit", 25_000_000)?;
        let gas_price = u64_opt(
            self.billing_gas_price,
            "billing-gas-price",
            20_000_000_000_000,
        )?;
        if gas_limit == 0 || gas_price == 0 {
            return Err(Error::usage(
                "--billing-gas-limit and --billing-gas-price must be positive",
            ));
        }
        Ok(BillingConfig {
            escrow,
            operator,
            proxy: url(self.billing_proxy.clone(), "billing-proxy", DEFAULT_API_URL)?,
            chain,
            gas_limit,
            gas_price,
        })
    }
}

/// `--poll-seconds` of `run`.
pub fn poll_seconds(flag: Option<u64>) -> Result<u64> {
    let poll = u64_opt(flag, "poll-seconds", 20)?;
    if !(1..=3600).contains(&poll) {
        return Err(Error::usage("--poll-seconds must be between 1 and 3600"));
    }
    Ok(poll)
}
