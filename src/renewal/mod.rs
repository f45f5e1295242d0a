//! Renewals: the stream service's client and its answers (`stream`), and when to renew
//! (`schedule`, pure).

pub mod schedule;
pub mod stream;
