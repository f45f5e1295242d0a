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

/// The contract's `EpochState` enum, by `getEpochState`'s index (`Unbilled` = 0 is never
/// stored: an epoch never billed has no return data at all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EpochState {
    Billed = 1,
    SettledOnTime = 2,
    SettledLate = 3,
    Slashed = 4,
    Delinquent = 5,
}

/// Every state a billed epoch can be in, in the contract's order.
pub const EPOCH_STATES: [EpochState; 5] = [
    EpochState::Billed,
    EpochState::SettledOnTime,
    EpochState::SettledLate,
    EpochState::Slashed,
    EpochState::Delinquent,
];

impl EpochState {
    /// The state of `getEpochState`'s index; `None` for 0 (`Unbilled`) and any index the
    /// spec does not know.
    pub fn from_index(index: u8) -> Option<EpochState> {
        EPOCH_STATES.into_iter().find(|s| *s as u8 == index)
    }

    /// The name stored in `usage_windows.settlement` (the schema checks it).
    pub fn as_str(self) -> &'static str {
        match self {
            EpochState::Billed => "Billed",
            EpochState::SettledOnTime => "SettledOnTime",
            EpochState::SettledLate => "SettledLate",
            EpochState::Slashed => "Slashed",
            EpochState::Delinquent => "Delinquent",
        }
    }

    pub fn parse(s: &str) -> Option<EpochState> {
        EPOCH_STATES.into_iter().find(|k| k.as_str() == s)
    }

    /// Something is still due on the bill (nothing paid it in full, nothing took it all).
    pub fn is_open(self) -> bool {
        matches!(self, EpochState::Billed | EpochState::Delinquent)
    }

    /// Whether the chain may move a bill from `self` to `next`: Billed goes anywhere,
    /// Delinquent only to a settlement or a slash, a paid or slashed bill nowhere.
    pub fn may_become(self, next: EpochState) -> bool {
        match self {
            _ if self == next => true,
            EpochState::Billed => true,
            EpochState::Delinquent => next != EpochState::Billed,
            _ => false,
        }
    }
}

impl fmt::Display for EpochState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a bill with this settlement (None: not read yet) is still to be paid; one paid
/// from the bond at the agent's cancellation is not.
pub fn bill_is_open(state: Option<EpochState>, paid_at_cancel: bool) -> bool {
    !paid_at_cancel && state.is_none_or(EpochState::is_open)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_match_the_schema() {
        let schema = format!(
            "{}{}",
            include_str!("../../sql/0001_initial.sql"),
            include_str!("../../sql/0002_ledger.sql")
        );
        for k in ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
            assert!(schema.contains(&format!("'{k}'")), "{k} not in the schema");
        }
        assert_eq!(Kind::parse("billed (found on chain)"), None);
    }

    #[test]
    fn epoch_states_have_the_contracts_indexes() {
        assert_eq!(EpochState::from_index(0), None, "Unbilled is never stored");
        assert_eq!(EpochState::from_index(1), Some(EpochState::Billed));
        assert_eq!(EpochState::from_index(2), Some(EpochState::SettledOnTime));
        assert_eq!(EpochState::from_index(3), Some(EpochState::SettledLate));
        assert_eq!(EpochState::from_index(4), Some(EpochState::Slashed));
        assert_eq!(EpochState::from_index(5), Some(EpochState::Delinquent));
        assert_eq!(EpochState::from_index(6), None);
        assert_eq!(EpochState::from_index(255), None);
        let schema = include_str!("../../sql/0002_ledger.sql");
        for s in EPOCH_STATES {
            assert_eq!(EpochState::parse(s.as_str()), Some(s));
            assert!(schema.contains(&format!("'{s}'")), "{s} not in the schema");
        }
        assert!(EpochState::Billed.may_become(EpochState::SettledLate));
        assert!(EpochState::Delinquent.may_become(EpochState::SettledLate));
        assert!(!EpochState::SettledOnTime.may_become(EpochState::Billed));
        assert!(!EpochState::Delinquent.may_become(EpochState::Billed));
        assert!(!EpochState::Slashed.may_become(EpochState::Delinquent));
    }
}
