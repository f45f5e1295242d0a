//! Commands that change who is enrolled: enroll (one or a file), enroll-from-pem, pause,
//! resume, remove. Every input is checked before the database is opened, so bad input
//! changes nothing.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::keys::{self, Address, Wallet, STREAM_MESSAGE};
use crate::now_ms;
use crate::store::Store;

/// An enrollment whose address, signature and fee were checked.
pub type Checked = (Address, String, u32);

pub fn parse_address(text: &str) -> Result<Address> {
    Address::parse(text).map_err(|e| Error::usage(format!("--address: {e}")))
}

pub fn check_fee(fee_bps: u32) -> Result<u32> {
    if !(1..=10_000).contains(&fee_bps) {
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
    let sig = keys::parse_signature_hex(signature)
        .map_err(|e| Error::usage(format!("--signature: {e}")))?;
    if !keys::verify_message(&address, STREAM_MESSAGE.as_bytes(), &sig) {
        return Err(Error::usage(format!(
            "--signature is not {address}'s signature of \"{STREAM_MESSAGE}\": sign it with that agent's wallet"
        )));
    }
    Ok((address, hex::encode(sig), fee_bps))
}

/// Signs "stream" with the wallet's key; the key itself is not kept.
pub fn check_pem(pem: &Path, fee_bps: u32) -> Result<Checked> {
    let fee_bps = check_fee(fee_bps)?;
    let wallet = Wallet::from_pem_file(pem)?;
    let sig = wallet.sign_message(STREAM_MESSAGE.as_bytes());
    Ok((wallet.address(), hex::encode(sig), fee_bps))
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
        let fields: Vec<&str> = if line.contains('\t') {
            line.split('\t').map(str::trim).collect()
        } else {
            line.split_whitespace().collect()
        };
        let at = |e: Error| Error::usage(format!("line {n}: {e}; nothing was enrolled"));
        let fee = match fields.as_slice() {
            [_, _] => default_fee,
            [_, _, fee] => fee.parse().map_err(|_| {
                at(Error::usage(format!(
                    "fee_bps '{}' is not a number",
                    fee.chars().take(20).collect::<String>()
                )))
            })?,
            _ => {
                return Err(at(Error::usage(format!(
                    "expected address<TAB>signature[<TAB>fee_bps], found {} fields",
                    fields.len()
                ))))
            }
        };
        let checked = check_enrollment(fields[0], fields[1], fee).map_err(at)?;
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

/// `enroll --from-file`: all lines checked first, then one transaction.
pub fn enroll_file(
    db: &Path,
    file: &Path,
    default_fee: u32,
    open: impl FnOnce(&Path) -> Result<Store>,
) -> Result<()> {
    check_fee(default_fee)?;
    let mut text = String::new();
    let read = if file == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|e| Error::usage(format!("cannot read {}: {e}", file.display())))?;
    let agents = parse_enrollment_file(&text, default_fee)?;
    save(&mut open(db)?, &agents)
}

pub fn save(store: &mut Store, agents: &[Checked]) -> Result<()> {
    let (new, updated) = store.enroll_many(agents, now_ms())?;
    match agents {
        [(address, _, fee)] if new == 1 => println!("enrolled {address} (fee {fee} bps)"),
        [(address, _, fee)] => println!(
            "updated {address}: already enrolled, signature and fee ({fee} bps) replaced, agent active"
        ),
        _ => println!("enrolled {new} new agents, updated {updated} already enrolled"),
    }
    Ok(())
}

pub fn set_status(store: &Store, address: &Address, active: bool) -> Result<()> {
    let changed = store.set_status(address, active, now_ms())?;
    let state = if active { "active" } else { "paused" };
    if changed {
        println!("{address} is now {state}");
    } else {
        println!("{address} was already {state}");
    }
    Ok(())
}

pub fn remove(store: &mut Store, address: &Address, force: bool) -> Result<()> {
    let dropped = store.remove(address, force)?;
    if dropped > 0 {
        println!("removed {address}; {dropped} unbilled windows were dropped (--force)");
    } else {
        println!("removed {address}");
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
