//! The contract's views, asked through the billing gateway.

use super::abi::{big_uint, decode_agent_info, decode_config, decode_epoch_state};
use super::{AgentInfo, EscrowConfig};
use crate::chain::gateway::{Gateway, GatewayError};
use crate::chain::ledger::EpochState;
use crate::chain::tx::u64_arg;
use crate::crypto::keys::Address;

/// The contract's views, through the billing gateway.
pub struct Escrow<'a> {
    pub gateway: &'a Gateway,
    pub contract: String,
}

impl<'a> Escrow<'a> {
    pub fn new(gateway: &'a Gateway, contract: &Address) -> Escrow<'a> {
        Escrow {
            gateway,
            contract: contract.to_bech32(),
        }
    }

    pub fn config(&self) -> Result<EscrowConfig, GatewayError> {
        decode_config(&self.gateway.query(&self.contract, "getConfig", &[])?)
            .map_err(GatewayError::Malformed)
    }

    pub fn agent_info(&self, agent: &Address) -> Result<Option<AgentInfo>, GatewayError> {
        let items = self
            .gateway
            .query(&self.contract, "getAgentInfo", &[agent.to_hex()])?;
        match items.first() {
            None => Ok(None),
            Some(bytes) if bytes.is_empty() => Ok(None),
            Some(bytes) => decode_agent_info(bytes)
                .map(Some)
                .map_err(GatewayError::Malformed),
        }
    }

    /// `Some(state)` once the epoch was billed; an index the spec does not know, or an
    /// answer of another shape, is an error (nothing is concluded from it).
    pub fn epoch_state(
        &self,
        agent: &Address,
        epoch: u64,
    ) -> Result<Option<EpochState>, GatewayError> {
        decode_epoch_state(&self.bill_view("getEpochState", agent, epoch)?)
            .map_err(GatewayError::Malformed)
    }

    /// The raw return data of a view of one (agent, epoch): `getEpochState`,
    /// `getEpochDebt`. An `Err` is the gateway's (no answer, a refusal).
    pub fn bill_view(
        &self,
        function: &str,
        agent: &Address,
        epoch: u64,
    ) -> Result<Vec<Vec<u8>>, GatewayError> {
        self.gateway
            .query(&self.contract, function, &[agent.to_hex(), u64_arg(epoch)])
    }

    /// `getEpochDebt`: what is still due on the bill (0 when nothing, or never billed).
    pub fn epoch_debt(&self, agent: &Address, epoch: u64) -> Result<u128, GatewayError> {
        match self.bill_view("getEpochDebt", agent, epoch)?.as_slice() {
            [] => Ok(0),
            [debt] if debt.len() <= 32 => Ok(big_uint(debt)),
            _ => Err(GatewayError::Malformed(
                "escrow view getEpochDebt: not one number".into(),
            )),
        }
    }

    /// `getAgentServiceStats`'s first item: the windows the escrow ever billed the agent.
    pub fn billed_windows(&self, agent: &Address) -> Result<u64, GatewayError> {
        let items =
            self.gateway
                .query(&self.contract, "getAgentServiceStats", &[agent.to_hex()])?;
        match items.first() {
            None => Ok(0),
            Some(n) if n.len() <= 8 => Ok(big_uint(n) as u64),
            Some(_) => Err(GatewayError::Malformed(
                "escrow view getAgentServiceStats: windows not a u64".into(),
            )),
        }
    }

    /// A view of no argument whose item `index` is one number (`getClaimableOwner`, ...).
    pub fn number(&self, function: &str, index: usize) -> Result<u128, GatewayError> {
        let items = self.gateway.query(&self.contract, function, &[])?;
        match items.get(index) {
            None if index == 0 && items.is_empty() => Ok(0),
            Some(n) if n.len() <= 32 => Ok(big_uint(n)),
            _ => Err(GatewayError::Malformed(format!(
                "escrow view {function}: no number at item {index} of {}",
                items.len()
            ))),
        }
    }

    /// `getClaimableOwner`: what the escrow's owner may withdraw.
    pub fn claimable_owner(&self) -> Result<u128, GatewayError> {
        self.number("getClaimableOwner", 0)
    }

    /// `getAgentFinancials`: (bond balance, outstanding total).
    pub fn agent_financials(&self, agent: &Address) -> Result<(u128, u128), GatewayError> {
        let items = self
            .gateway
            .query(&self.contract, "getAgentFinancials", &[agent.to_hex()])?;
        match items.as_slice() {
            [bond, outstanding] if bond.len() <= 32 && outstanding.len() <= 32 => {
                Ok((big_uint(bond), big_uint(outstanding)))
            }
            _ => Err(GatewayError::Malformed(format!(
                "escrow view getAgentFinancials: {} items, expected 2",
                items.len()
            ))),
        }
    }
}
