//! Renewals: the stream service's client and its answers (`stream`), and when to renew
//! (`schedule`, pure).

pub(crate) mod schedule;
pub mod stream;
