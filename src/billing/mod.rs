//! Exactly-once epoch billing on the `StreamAgencyEscrow` contract.
//!
//! [`pass`] holds the [`Biller`] and its pass; each stage below is an `impl Biller` of its
//! own file. One pass reads top to bottom:
//! 1. [`preflight`]: chain id, gas price, the escrow's config and operator; billing is
//!    `Ready`, `Blocked` until a human fixes the configuration, or `Unavailable` this tick.
//! 2. [`settle`]: the transactions already sent, each confirmed by the contract's
//!    `getEpochState` (never by the transaction's shallow status); failures classified by
//!    the contract's message into expired, refused, retry later, or held for a human.
//! 3. the [`breaker`]: stopped billing stays stopped until a human acts.
//! 4. [`send`]: for each agent, its lowest open closed epoch: the contract's views judged by
//!    `escrow::judge`, then sign, store (write-ahead), send, store the hash; never more in
//!    flight than the breaker's slow-start window.
//!    Where the gateway serves `/transaction/simulate`, each bill is tried there first: a
//!    refusal we can explain is applied by [`refusal`] without spending gas.
//!    With a standby, an epoch this host did not renew in time waits for its copy
//!    ([`standby_wait`]).
//! 5. [`enforce`] (`--enforce-after-grace`): bills unpaid past their deadline, collected once.
//! 6. [`receivables`]: the settlement state and remaining due of billed epochs, at a
//!    bounded rate. [`lifecycle`]: each agent's status on the escrow (a cancelled one is
//!    no longer renewed).
//!
//! Besides the pass: [`books`], the chain's figures the pages keep once an epoch;
//! [`withdraw`], the owner's cash-out from the escrow (its own command).
//!
//! At most one transaction per agent is in flight, so epochs go out in increasing order,
//! and an agent with a held epoch sends nothing until a human acts.

mod books;
pub(crate) mod breaker;
mod cost;
mod enforce;
pub(crate) mod lifecycle;
mod pass;
mod preflight;
pub(crate) mod receivables;
pub(crate) mod reconcile;
mod refusal;
mod send;
mod settle;
mod standby_wait;
pub(crate) mod withdraw;

pub use pass::{candidates, has_work, Biller, BillingSummary};
