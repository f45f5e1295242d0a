//! The billing ledger's vocabulary: what became of an (agent, epoch) and of each billing
//! transaction or decision. Stored as the `kind` columns (checked by the schema) next to a
//! human reason; code decides by kind, never by the reason's text.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A transaction in flight (billing attempts only).
    Pending,
    /// Our transaction, confirmed by `getEpochState`.
    Billed,
    /// The contract had the epoch billed already.
    BilledFoundOnChain,
    /// Imported from the Python MVP as billed; not confirmed by the chain.
    BilledByMvp,
    /// Older than the contract's `max_backbill_epochs`.
    Expired,
    /// Unbillable for good by the contract's rules.
    Refused,
    /// The contract's guards allow 0 windows.
    Clipped,
    /// Failed for a reason we cannot explain: the agent's billing waits for a human.
    Held,
    /// A "try later" failure (billing attempts only).
    Retry,
    /// Refused by the gateway before reaching the chain (billing attempts only).
    GatewayRefused,
    /// `billing skip`.
    SkippedByHuman,
    /// `billing retry` released a hold (billing attempts only).
    RetriedByHuman,
    /// `reconcile --apply`: the chain lacks it and can no longer take it.
    Lost,
    /// History imported from the Python MVP (billing attempts only).
    Mvp,
}

const ALL: [Kind; 14] = [
    Kind::Pending,
    Kind::Billed,
    Kind::BilledFoundOnChain,
    Kind::BilledByMvp,
    Kind::Expired,
    Kind::Refused,
    Kind::Clipped,
    Kind::Held,
    Kind::Retry,
    Kind::GatewayRefused,
    Kind::SkippedByHuman,
    Kind::RetriedByHuman,
    Kind::Lost,
    Kind::Mvp,
];

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pending => "pending",
            Kind::Billed => "billed",
            Kind::BilledFoundOnChain => "billed-found-on-chain",
            Kind::BilledByMvp => "billed-by-mvp",
            Kind::Expired => "expired",
            Kind::Refused => "refused",
            Kind::Clipped => "clipped",
            Kind::Held => "held",
            Kind::Retry => "retry",
            Kind::GatewayRefused => "gateway-refused",
            Kind::SkippedByHuman => "skipped-by-human",
            Kind::RetriedByHuman => "retried-by-human",
            Kind::Lost => "lost",
            Kind::Mvp => "mvp",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The epoch counts as billed (the `billed` column is 1).
    pub fn is_billed(self) -> bool {
        matches!(
            self,
            Kind::Billed | Kind::BilledFoundOnChain | Kind::BilledByMvp
        )
    }

    /// The `status` column of `billing_attempts` (kept for scripts).
    pub fn attempt_status(self) -> &'static str {
        match self {
            Kind::Pending => "pending",
            Kind::Billed | Kind::BilledFoundOnChain => "success",
            Kind::Expired
            | Kind::Refused
            | Kind::Clipped
            | Kind::SkippedByHuman
            | Kind::RetriedByHuman
            | Kind::Lost => "skipped",
            _ => "failed",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The settlement states of a billed epoch, by `getEpochState`'s index.
pub const SETTLEMENTS: [&str; 5] = [
    "Billed",
    "SettledOnTime",
    "SettledLate",
    "Slashed",
    "Delinquent",
];

/// The settlement state of `getEpochState`'s index (an unknown index reads as Billed).
pub fn settlement(index: u8) -> &'static str {
    SETTLEMENTS
        .get(usize::from(index))
        .copied()
        .unwrap_or("Billed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_match_the_schema() {
        let schema = format!(
            "{}{}",
            include_str!("../sql/0001_initial.sql"),
            include_str!("../sql/0002_ledger.sql")
        );
        for k in ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert!(schema.contains(&format!("'{k}'")), "{k} not in the schema");
        }
        assert_eq!(Kind::parse("billed (found on chain)"), None);
        assert_eq!(settlement(0), "Billed");
        assert_eq!(settlement(4), "Delinquent");
    }
}
