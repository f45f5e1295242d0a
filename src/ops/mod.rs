//! What the operator sees and keeps: rows for people and scripts (`output`), what needs a
//! human (`health`), alerts and pings (`notify`), backups (`backup`), the database's lock
//! (`lock`) and its disk (`disk`: free space and the reserve).

pub(crate) mod backup;
pub mod disk;
pub(crate) mod health;
pub(crate) mod lock;
pub(crate) mod notify;
pub(crate) mod output;
pub mod report;
pub(crate) mod signals;
