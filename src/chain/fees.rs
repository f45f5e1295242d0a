//! What a transaction costs, by the chain's fee rule (the spec's "Fees"), exactly in
//! atto-CLAW. Pure: the numbers come from `/network/config`, `/transaction/cost` and the
//! receipts.
//!
//! A transaction's gas is a *move* part (`min_gas_limit + gas_per_data_byte * len(data)`,
//! at the full price) and an *execution* part (at `price * modifier`). A failed call pays
//! its whole limit; a successful one the gas it used, unless the execution gas it was given
//! is more than twice what it used: then the whole limit too.

/// The chain's fee parameters, from `/network/config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeeRule {
    pub min_gas_price: u64,
    pub min_gas_limit: u64,
    pub gas_per_data_byte: u64,
    /// `erd_gas_price_modifier` as a fraction (`"0.01"` is 1/100).
    pub modifier: Ratio,
}

/// A non-negative decimal as numerator / denominator (a power of ten).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ratio {
    pub num: u128,
    pub den: u128,
}

impl Ratio {
    pub const ONE: Ratio = Ratio { num: 1, den: 1 };

    /// `"0.01"`, `"1"`, `"0.5"`: at most 18 decimals; anything else is `None`.
    pub fn parse(text: &str) -> Option<Ratio> {
        let text = text.trim();
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || frac.len() > 18 || int.len() > 18 {
            return None;
        }
        let den = 10u128.pow(frac.len() as u32);
        let num = format!("{int}{frac}").parse().ok()?;
        Some(Ratio { num, den })
    }

    fn of(self, n: u128) -> u128 {
        n.saturating_mul(self.num) / self.den
    }
}

/// The execution gas a limit leaves room for is at most this many times the estimate:
/// below the chain's no-refund threshold (twice the use), with room for a contract
/// that needs a little more than estimated.
pub const MARGIN_NUM: u64 = 3;
pub const MARGIN_DEN: u64 = 2;

/// The gas limit used when nothing better is known (no estimate, no earlier transaction
/// of the same function): what the escrow's own examples use.
pub const SAFE_GAS_LIMIT: u64 = 25_000_000;

impl FeeRule {
    /// The move part of a transaction whose data is `data_len` bytes.
    pub fn move_gas(&self, data_len: usize) -> u64 {
        self.min_gas_limit
            .saturating_add(self.gas_per_data_byte.saturating_mul(data_len as u64))
    }

    /// The limit for a call of `data_len` bytes whose execution needs `execution` gas:
    /// the estimate and a margin, staying below the no-refund threshold.
    pub fn limit_for(&self, data_len: usize, execution: u64) -> u64 {
        let room = execution.saturating_mul(MARGIN_NUM) / MARGIN_DEN;
        self.move_gas(data_len).saturating_add(room.max(1))
    }

    /// The fee of a transaction of `gas_limit` at `price` whose call used `execution` gas
    /// (`None`: it failed, the whole limit is paid).
    pub fn fee(&self, data_len: usize, gas_limit: u64, price: u64, execution: Option<u64>) -> u128 {
        let moved = self.move_gas(data_len).min(gas_limit);
        let given = gas_limit - moved;
        let charged = match execution {
            Some(used) if given <= used.saturating_mul(2) => used.min(given),
            _ => given,
        };
        let price = u128::from(price);
        u128::from(moved) * price + self.modifier.of(u128::from(charged) * price)
    }

    /// The fee expected of a call of `data_len` bytes sent with `gas_limit` at `price`,
    /// when its execution needs `execution` gas (as estimated).
    pub fn expected(&self, data_len: usize, gas_limit: u64, price: u64, execution: u64) -> u128 {
        self.fee(data_len, gas_limit, price, Some(execution))
    }
}

/// Atto-CLAW (10^-18) as CLAW with four decimals.
pub fn claw(atto: u128) -> String {
    let unit = 1_000_000_000_000_000_000u128;
    format!("{}.{:04}", atto / unit, (atto % unit) / 100_000_000_000_000)
}

/// An amount of CLAW as typed (`12`, `0.5`, up to 18 decimals) in atto-CLAW.
pub fn parse_claw(text: &str) -> Result<u128, String> {
    let bad = || format!("{text} is not an amount of CLAW (e.g. 12.5, at most 18 decimals)");
    let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if whole.is_empty() && fraction.is_empty()
        || fraction.len() > 18
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let fraction: u128 = format!("{fraction:0<18}").parse().map_err(|_| bad())?;
    whole
        .checked_mul(1_000_000_000_000_000_000)
        .and_then(|w| w.checked_add(fraction))
        .ok_or_else(bad)
}

/// The fee in basis points at which a bill of `windows` windows pays for its `fee`:
/// `window_reward * windows * bps / 10000 >= fee`. `None`: no fee up to 10,000 bps does.
pub fn break_even_bps(fee: u128, window_reward: u128, windows: u64) -> Option<u64> {
    let per_bps = window_reward.saturating_mul(u128::from(windows));
    if per_bps == 0 {
        return None;
    }
    // The least bps with per_bps * bps / 10000 >= fee (the contract rounds down).
    let bps = fee.saturating_mul(10_000).div_ceil(per_bps);
    u64::try_from(bps)
        .ok()
        .filter(|&b| b <= 10_000)
        .map(|b| b.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claw_amounts_are_read_exactly() {
        assert_eq!(parse_claw("12.5"), Ok(12_500_000_000_000_000_000));
        assert_eq!(parse_claw("0.000000000000000001"), Ok(1));
        assert_eq!(parse_claw(".5"), Ok(500_000_000_000_000_000));
        for bad in [
            "",
            ".",
            "1.2.3",
            "-1",
            "1e3",
            "0.0000000000000000001",
            "abc",
        ] {
            assert!(parse_claw(bad).is_err(), "{bad}");
        }
    }

    /// MultiversX mainnet's numbers, as the spec gives them.
    fn mainnet() -> FeeRule {
        FeeRule {
            min_gas_price: 1_000_000_000,
            min_gas_limit: 50_000,
            gas_per_data_byte: 1_500,
            modifier: Ratio::parse("0.01").unwrap(),
        }
    }

    const CLAW: u128 = 1_000_000_000_000_000_000;

    #[test]
    fn the_spec_worked_example() {
        let rule = mainnet();
        // billEpoch's data is 82 bytes: a move part of 173,000 gas, 3.46 CLAW at 2*10^13.
        assert_eq!(rule.move_gas(82), 173_000);
        let price = 20_000_000_000_000;
        assert_eq!(rule.fee(82, 173_000, price, Some(0)), 346 * CLAW / 100);
        // At 25,000,000, far above twice the use: the whole limit, 8.43 CLAW, either way.
        let whole = rule.fee(82, 25_000_000, price, None);
        assert_eq!(whole, rule.fee(82, 25_000_000, price, Some(3_000_000)));
        assert_eq!(whole, 8_425_400_000_000_000_000);
        // Each million of execution gas adds 0.20 CLAW.
        let one = rule.fee(82, 1_173_000, price, Some(1_000_000));
        assert_eq!(one - 346 * CLAW / 100, 20 * CLAW / 100);
        // Within twice the use, the unused gas is refunded.
        let sized = rule.fee(82, rule.limit_for(82, 3_000_000), price, Some(3_000_000));
        assert_eq!(sized, rule.fee(82, 3_173_000, price, Some(3_000_000)));
        assert!(sized < whole / 2, "{sized} vs {whole}");
    }

    #[test]
    fn a_limit_leaves_less_than_twice_the_estimate() {
        let rule = mainnet();
        for exec in [1, 7, 1_000, 3_000_000, 30_000_000] {
            let limit = rule.limit_for(82, exec);
            let given = limit - rule.move_gas(82);
            assert!(given >= exec && given <= 2 * exec, "{exec}: {given}");
        }
    }

    #[test]
    fn modifiers_parse_exactly() {
        assert_eq!(Ratio::parse("0.01"), Some(Ratio { num: 1, den: 100 }));
        assert_eq!(Ratio::parse("1"), Some(Ratio::ONE));
        assert_eq!(Ratio::parse("0.5").map(|r| r.of(10)), Some(5));
        for bad in ["", "-1", "1e-2", "0.0.1", ".5", "x"] {
            assert_eq!(Ratio::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn break_even_is_the_least_fee_that_pays() {
        // 48 windows of 1 CLAW against a fee of 3.5 CLAW: 730 bps (729 charges 3.4992).
        assert_eq!(break_even_bps(35 * CLAW / 10, CLAW, 48), Some(730));
        assert_eq!(break_even_bps(0, CLAW, 48), Some(1));
        assert_eq!(break_even_bps(100 * CLAW, CLAW, 2), None);
        assert_eq!(break_even_bps(1, 0, 48), None);
    }
}
