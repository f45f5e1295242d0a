//! `enroll` (one agent, or many with `--from-file`) and `enroll-from-pem`. Every input is
//! checked before the database is opened, so bad input changes nothing.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use argh::FromArgs;

use super::{parse_address, Ctx, Run};
use crate::error::{Error, Result};
use zeroize::Zeroizing;

use crate::crypto::keys::{self, Address, Secret, Wallet, STREAM_MESSAGE};
use crate::net::clock::now_ms;
use crate::store::Store;

/// Enroll an agent with its signature of "stream" (verified offline first), or many from a
/// file of `address<TAB>signature[<TAB>fee_bps]` lines (all checked before any is written).
/// The signature is a bearer secret: give it on standard input (`--signature -`) or in a
/// 0600 file (`--signature-file`), not on the command line.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "enroll")]
pub struct Enroll {
    /// the agent's claw1... address
    #[argh(option)]
    pub address: Option<String>,
    /// the agent's signature of the message "stream", hex (optional 0x): "-" reads one line
    /// from standard input; a value on the command line is visible to other users (ps)
    #[argh(option)]
    pub signature: Option<String>,
    /// read the signature from this file (mode 0600)
    #[argh(option)]
    pub signature_file: Option<PathBuf>,
    /// enroll every line of this file ("-" for stdin); "#" starts a comment
    #[argh(option)]
    pub from_file: Option<PathBuf>,
    /// the agency's fee in basis points, 1..=10000 (default: 500)
    #[argh(option, default = "crate::chain::escrow::DEFAULT_FEE_BPS")]
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
    #[argh(option, default = "crate::chain::escrow::DEFAULT_FEE_BPS")]
    pub fee_bps: u32,
}

/// An enrollment whose address, signature and fee were checked.
pub type Checked = (Address, Secret, u32);

impl Run for Enroll {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let agents = match (self.from_file, self.address) {
            (Some(file), None) if self.signature.is_none() && self.signature_file.is_none() => {
                check_fee(self.fee_bps)?;
                parse_enrollment_file(&Zeroizing::new(read_input(&file)?), self.fee_bps)?
            }
            (None, Some(address)) => {
                let signature = signature_input(self.signature, self.signature_file)?;
                vec![check_enrollment(&address, signature.expose(), self.fee_bps)?]
            }
            _ => {
                return Err(Error::usage(
                    "enroll takes --address with --signature - (stdin) or --signature-file FILE, or --from-file FILE (not both)",
                ))
            }
        };
        save(&mut ctx.open_with_secrets()?, &agents)
    }
}

impl Run for EnrollFromPem {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let fee_bps = check_fee(self.fee_bps)?;
        let wallet = Wallet::from_pem_file(&self.pem)?;
        let sig = wallet.sign_message(STREAM_MESSAGE.as_bytes());
        save(
            &mut ctx.open_with_secrets()?,
            &[(wallet.address(), Secret::new(hex::encode(sig)), fee_bps)],
        )
    }
}

pub fn check_fee(fee_bps: u32) -> Result<u32> {
    if !crate::chain::escrow::FEE_BPS_RANGE.contains(&fee_bps) {
        return Err(Error::usage(format!(
            "--fee-bps {fee_bps} is out of range: the escrow contract accepts 1..=10000 basis points"
        )));
    }
    Ok(fee_bps)
}

/// The signature (hex, optional 0x) must verify offline as the address's signature of "stream".
pub fn check_enrollment(address: &str, signature: &str, fee_bps: u32) -> Result<Checked> {
    let address = parse_address(address)?;
    let fee_bps = check_fee(fee_bps)?;
    let sig = keys::stream_signature(&address, signature).map_err(|e| match e {
        keys::NotEnrollable::Malformed(e) => Error::usage(format!("--signature: {e}")),
        keys::NotEnrollable::NotTheirs => Error::usage(format!(
            "--signature is not {address}'s signature of \"{STREAM_MESSAGE}\": sign it with that agent's wallet"
        )),
    })?;
    Ok((address, Secret::new(hex::encode(sig)), fee_bps))
}

/// The signature from standard input (`-`, one line), a 0600 file, or the command line,
/// which is visible in `ps` and kept in shell history: that one works, with a warning.
fn signature_input(arg: Option<String>, file: Option<PathBuf>) -> Result<Secret> {
    match (arg, file) {
        (Some(dash), None) if dash == "-" => {
            let mut line = Zeroizing::new(String::new());
            std::io::stdin()
                .read_line(&mut line)
                .map_err(|e| Error::usage(format!("cannot read the signature from standard input: {e}")))?;
            Ok(Secret::new(line.trim().to_string()))
        }
        (None, Some(path)) => {
            crate::crypto::private::check_private_file(&path, "signature file")?;
            let text = Zeroizing::new(read_input(&path)?);
            Ok(Secret::new(text.trim().to_string()))
        }
        (Some(hex), None) => {
            eprintln!(
                "warning: --signature on the command line is visible to other users (ps, /proc) and kept in shell history; use --signature - (stdin) or --signature-file FILE"
            );
            Ok(Secret::new(hex))
        }
        (None, None) => Err(Error::usage(
            "enroll --address needs the signature: --signature - (one line on stdin) or --signature-file FILE (or enroll many with --from-file FILE)",
        )),
        (Some(_), Some(_)) => Err(Error::usage(
            "give the signature once: --signature - or --signature-file FILE",
        )),
    }
}

/// A file's text, or standard input's for "-".
fn read_input(file: &Path) -> Result<String> {
    let mut text = String::new();
    let read = if file == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| Error::usage(format!("cannot read {}: {e}", file.display())))?;
    Ok(text)
}

/// Checks every line of an enrollment file: `address<TAB>signature[<TAB>fee_bps]`, `#`
/// comments and blank lines allowed. The first bad line refuses the whole file.
pub fn parse_enrollment_file(text: &str, default_fee: u32) -> Result<Vec<Checked>> {
    let mut out = Vec::new();
    let mut seen: HashMap<Address, usize> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = |e: Error| Error::usage(format!("line {n}: {e}; nothing was enrolled"));
        let checked = parse_enrollment_line(line, default_fee).map_err(at)?;
        if let Some(first) = seen.insert(checked.0, n) {
            return Err(at(Error::usage(format!(
                "{} is already on line {first}",
                checked.0
            ))));
        }
        out.push(checked);
    }
    if out.is_empty() {
        return Err(Error::usage("the enrollment file has no agents"));
    }
    Ok(out)
}

fn parse_enrollment_line(line: &str, default_fee: u32) -> Result<Checked> {
    let fields: Vec<&str> = if line.contains('\t') {
        line.split('\t').map(str::trim).collect()
    } else {
        line.split_whitespace().collect()
    };
    let fee = match fields.as_slice() {
        [_, _] => default_fee,
        [_, _, fee] => fee.parse().map_err(|_| {
            Error::usage(format!(
                "fee_bps '{}' is not a number",
                fee.chars().take(20).collect::<String>()
            ))
        })?,
        _ => {
            return Err(Error::usage(format!(
                "expected address<TAB>signature[<TAB>fee_bps], found {} fields",
                fields.len()
            )))
        }
    };
    check_enrollment(fields[0], fields[1], fee)
}

fn save(store: &mut Store, agents: &[Checked]) -> Result<()> {
    let (new, updated) = store.enroll_many(agents, now_ms())?;
    for (address, _, fee) in agents {
        if let Some(note) = crate::ops::report::fee_never_pays(store, *fee)? {
            eprintln!("warning: {address}: {note}");
        }
    }
    match agents {
        [(address, _, fee)] if new == 1 => println!("enrolled {address} (fee {fee} bps)"),
        [(address, _, fee)] => println!(
            "updated {address}: already enrolled, signature and fee ({fee} bps) replaced, agent active"
        ),
        _ => println!("enrolled {new} new agents, updated {updated} already enrolled"),
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::vectors;

    #[test]
    fn enrollment_files_are_checked_line_by_line() {
        let v = vectors();
        let w = |name: &str| {
            (
                v["wallets"][name]["address_claw"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                v["wallets"][name]["signed_messages"]["stream"]["signature_hex"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        };
        let (a, sa) = w("alice");
        let (b, sb) = w("bob");
        let good = format!("# agency clients\n{a}\t{sa}\n\n{b}\t0x{sb}\t750  # bob\n");
        let agents = parse_enrollment_file(&good, 500).unwrap();
        assert_eq!(agents.len(), 2);
        assert_eq!((agents[0].2, agents[1].2), (500, 750));
        let bad = format!("{a}\t{sa}\n{b}\t{sa}\n");
        let err = parse_enrollment_file(&bad, 500).unwrap_err().to_string();
        assert!(
            err.starts_with("line 2: ") && err.contains("is not"),
            "{err}"
        );
        let dup = format!("{a}\t{sa}\n{a}\t{sa}\n");
        assert!(parse_enrollment_file(&dup, 500)
            .unwrap_err()
            .to_string()
            .contains("already on line 1"));
        let fee = format!("{a}\t{sa}\t0\n");
        assert!(parse_enrollment_file(&fee, 500)
            .unwrap_err()
            .to_string()
            .contains("line 1: --fee-bps 0"));
        assert!(parse_enrollment_file("# nothing\n", 500).is_err());
    }
}
