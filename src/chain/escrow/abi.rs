//! The escrow views' return data, decoded (top and nested encoding, as the VM returns it).

use super::{AgentInfo, AgentStatus, EscrowConfig};
use crate::chain::ledger::EpochState;
use crate::crypto::keys::Address;

/// Minimal big-endian bytes as a number; saturates beyond u128.
pub fn big_uint(bytes: &[u8]) -> u128 {
    let significant: Vec<u8> = bytes.iter().copied().skip_while(|&b| b == 0).collect();
    if significant.len() > 16 {
        return u128::MAX;
    }
    significant
        .iter()
        .fold(0u128, |n, &b| (n << 8) | u128::from(b))
}

fn small_uint(bytes: &[u8], what: &str) -> Result<u64, String> {
    u64::try_from(big_uint(bytes)).map_err(|_| format!("escrow view: {what} does not fit in u64"))
}

/// Reads the nested encoding of `getAgentInfo`, field by field.
struct Nested<'a> {
    bytes: &'a [u8],
}

impl<'a> Nested<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < n {
            return Err("escrow view: agent info is truncated".into());
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn sized(&mut self) -> Result<&'a [u8], String> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        self.take(len)
    }
}

pub fn decode_agent_info(bytes: &[u8]) -> Result<AgentInfo, String> {
    let mut r = Nested { bytes };
    let fee_bps = r.u64()?;
    let max_windows_per_epoch = r.u64()?;
    let max_charge_per_epoch = big_uint(r.sized()?);
    let credit_score = r.u64()?;
    let status = match r.u8()? {
        0 => AgentStatus::Active,
        1 => AgentStatus::Paused,
        2 => AgentStatus::Suspended,
        3 => AgentStatus::Cancelled,
        n => AgentStatus::Other(n),
    };
    let _used_promo = r.u8()?;
    let joined_epoch = r.u64()?;
    let last_billed_epoch = r.u64()?;
    let _metadata = r.sized()?;
    if !r.bytes.is_empty() {
        return Err("escrow view: agent info has bytes after its last field".into());
    }
    Ok(AgentInfo {
        fee_bps,
        max_windows_per_epoch,
        max_charge_per_epoch,
        credit_score,
        status,
        joined_epoch,
        last_billed_epoch,
        probation: false,
    })
}

pub fn decode_config(items: &[Vec<u8>]) -> Result<EscrowConfig, String> {
    if items.len() < 9 {
        return Err(format!(
            "escrow getConfig returned {} items, expected 9",
            items.len()
        ));
    }
    let address = |i: usize, what: &str| -> Result<Address, String> {
        let bytes: [u8; 32] = items[i]
            .as_slice()
            .try_into()
            .map_err(|_| format!("escrow getConfig: {what} is not a 32-byte address"))?;
        Ok(Address::from_bytes(bytes))
    };
    Ok(EscrowConfig {
        owner: address(0, "owner")?,
        operator: address(1, "operator")?,
        window_reward: big_uint(&items[2]),
        setup_fee: big_uint(&items[3]),
        min_bond: big_uint(&items[4]),
        promo_free_slots: small_uint(&items[5], "promo_free_slots")?,
        grace_epochs: small_uint(&items[6], "grace_epochs")?,
        max_backbill_epochs: small_uint(&items[7], "max_backbill_epochs")?,
        hard_max_windows_per_epoch: small_uint(&items[8], "hard_max_windows_per_epoch")?,
    })
}

/// `getEpochState`'s return data: none (never billed), or one top-encoded enum index.
pub fn decode_epoch_state(items: &[Vec<u8>]) -> Result<Option<EpochState>, String> {
    match items {
        [] => Ok(None),
        // Top-encoded 0 is empty: Unbilled, never stored, read as "not billed".
        [b] if b.is_empty() => Ok(None),
        [b] if b.len() == 1 => EpochState::from_index(b[0])
            .map(Some)
            .ok_or_else(|| format!("escrow view getEpochState: unknown state index {}", b[0])),
        _ => Err(format!(
            "escrow view getEpochState: an answer of another shape ({} items)",
            items.len()
        )),
    }
}
