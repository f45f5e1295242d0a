//! The chain's figures the pages keep once an epoch: the operator's wallet (what pays
//! every fee), the owner's claimable, the value protected, the promo slots used.

use super::pass::Biller;
use crate::chain::escrow::Books;

impl Biller {
    /// Each figure read on its own: one the gateway does not give stays `None` (said in
    /// the log), the others are kept.
    pub fn read_books(&self) -> Books {
        let escrow = self.escrow();
        let kept = |what: &str, read: Result<u128, crate::chain::gateway::GatewayError>| {
            read.map_err(|e| log::warn!("{what} not read this epoch: {e}"))
                .ok()
        };
        let operator = self.cfg.operator.address().to_bech32();
        Books {
            operator_balance: kept(
                "the operator's balance",
                self.gateway.account_balance(&operator),
            ),
            claimable_owner: kept("getClaimableOwner", escrow.claimable_owner()),
            protected: kept("getServiceStats", escrow.number("getServiceStats", 6)),
            promo_used: kept("getPromoUsage", escrow.number("getPromoUsage", 0))
                .map(|n| n.min(u128::from(u64::MAX)) as u64),
        }
    }
}
