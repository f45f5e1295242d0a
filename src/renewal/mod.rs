//! Renewals: the stream service's client and its answers (`stream`), when to renew
//! (`schedule`, pure), and what a renewal is about and came to (`outcome`, plain data the
//! ledger records).

pub(crate) mod outcome;
pub(crate) mod schedule;
pub mod stream;
