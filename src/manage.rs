//! Commands that change who is enrolled: enroll, enroll-from-pem, pause, resume, remove.
//! Every input is checked before the database is opened, so bad input changes nothing.

use std::path::Path;

use crate::error::{Error, Result};
use crate::keys::{self, Address, Wallet, STREAM_MESSAGE};
use crate::now_ms;
use crate::store::agents::Enrolled;
use crate::store::Store;

pub fn parse_address(text: &str) -> Result<Address> {
    Address::parse(text.trim()).map_err(|e| Error::usage(format!("--address: {e}")))
}

pub fn check_fee(fee_bps: u32) -> Result<u32> {
    if !(1..=10_000).contains(&fee_bps) {
        return Err(Error::usage(format!(
            "--fee-bps {fee_bps} is out of range: the escrow contract accepts 1..=10000 basis points"
        )));
    }
    Ok(fee_bps)
}

/// `enroll`: the signature must verify offline as the address's signature of "stream".
pub fn enroll(db: &Path, address: &str, signature: &str, fee_bps: u32) -> Result<()> {
    let address = parse_address(address)?;
    let fee_bps = check_fee(fee_bps)?;
    let sig = keys::parse_signature_hex(signature)
        .map_err(|e| Error::usage(format!("--signature: {e}")))?;
    if !keys::verify_message(&address, STREAM_MESSAGE.as_bytes(), &sig) {
        return Err(Error::usage(format!(
            "--signature is not {address}'s signature of \"{STREAM_MESSAGE}\": sign it with that agent's wallet"
        )));
    }
    save(db, &address, &hex::encode(sig), fee_bps)
}

/// `enroll-from-pem`: sign "stream" with the wallet's key; the key itself is not kept.
pub fn enroll_from_pem(db: &Path, pem: &Path, fee_bps: u32) -> Result<()> {
    let fee_bps = check_fee(fee_bps)?;
    let wallet = Wallet::from_pem_file(pem)?;
    let sig = wallet.sign_message(STREAM_MESSAGE.as_bytes());
    save(db, &wallet.address(), &hex::encode(sig), fee_bps)
}

fn save(db: &Path, address: &Address, signature_hex: &str, fee_bps: u32) -> Result<()> {
    let mut store = Store::open(db)?;
    match store.enroll(address, signature_hex, fee_bps, now_ms())? {
        Enrolled::New => println!("enrolled {address} (fee {fee_bps} bps)"),
        Enrolled::Updated => println!(
            "updated {address}: already enrolled, signature and fee ({fee_bps} bps) replaced, agent active"
        ),
    }
    Ok(())
}

pub fn set_status(db: &Path, address: &str, active: bool) -> Result<()> {
    let address = parse_address(address)?;
    let store = Store::open(db)?;
    let changed = store.set_status(&address, active, now_ms())?;
    let state = if active { "active" } else { "paused" };
    if changed {
        println!("{address} is now {state}");
    } else {
        println!("{address} was already {state}");
    }
    Ok(())
}

pub fn remove(db: &Path, address: &str, force: bool) -> Result<()> {
    let address = parse_address(address)?;
    let mut store = Store::open(db)?;
    let dropped = store.remove(&address, force)?;
    if dropped > 0 {
        println!("removed {address}; {dropped} unbilled windows were dropped (--force)");
    } else {
        println!("removed {address}");
    }
    Ok(())
}
