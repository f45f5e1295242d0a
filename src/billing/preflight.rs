//! Before any transaction: is the configuration one the chain and the contract accept?

use super::pass::{Biller, Preflight};

use crate::config::Gas;

impl Biller {
    /// Chain id and minimum gas price (checked once: a mismatch would make every
    /// transaction invalid), then the escrow's config and operator (every pass).
    pub fn preflight(&mut self) -> Preflight {
        if let Some(stop) = self.check_network() {
            return stop;
        }
        let config = match self.escrow().config() {
            Ok(c) => c,
            Err(e) => return Preflight::Unavailable(format!("escrow config unavailable: {e}")),
        };
        let operator = self.cfg.operator.address();
        if config.operator != operator {
            return Preflight::Blocked(format!(
                "the escrow's operator is {} but --operator-pem holds {operator}: billing would fail with 'Only operator'",
                config.operator
            ));
        }
        Preflight::Ready(config)
    }

    /// Chain id, gas price and fee rule, once per process; `Some` when nothing may be
    /// sent (a mismatch, or no answer).
    pub(super) fn check_network(&mut self) -> Option<Preflight> {
        if !self.network_checked {
            let net = match self.gateway.network_config() {
                Ok(net) => net,
                Err(e) => return Some(Preflight::Unavailable(e.to_string())),
            };
            if net.chain_id != self.cfg.chain {
                return Some(Preflight::Blocked(format!(
                    "--billing-chain is {} but the gateway's chain id is {}: fix the configuration",
                    self.cfg.chain, net.chain_id
                )));
            }
            let price = match self.cfg.gas_price {
                Gas::Auto => net.min_gas_price,
                Gas::Fixed(price) if price < net.min_gas_price => {
                    return Some(Preflight::Blocked(format!(
                        "--billing-gas-price {price} is below the chain's minimum {}",
                        net.min_gas_price
                    )));
                }
                Gas::Fixed(price) => price,
            };
            if net.fees.is_none() {
                log::warn!("the gateway's /network/config lacks the fee rule (erd_min_gas_limit, erd_gas_per_data_byte, erd_gas_price_modifier): fees are not weighed");
            }
            self.gas_price.set(price);
            self.fee_rule.set(net.fees);
            self.network_checked = true;
        }
        None
    }
}
