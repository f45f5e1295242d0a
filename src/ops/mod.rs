//! What the operator sees and keeps: rows for people and scripts (`output`), what needs a
//! human (`health`), alerts and pings (`notify`), backups (`backup`), the database's lock
//! (`lock`) and its disk (`disk`: free space and the reserve).

pub mod backup;
pub mod disk;
pub mod health;
pub mod lock;
pub mod notify;
pub mod output;
pub mod report;
pub mod signals;
