//! What the operator sees and keeps: rows for people and scripts (`output`), the report's
//! rows (`report`), what needs a human (`health`), alerts and pings (`notify`), backups
//! (`backup`), the database's lock (`lock`), its disk (`disk`: free space and the
//! reserve), `run`'s renewer processes (`renewers`), and SIGTERM/SIGINT for the loops
//! (`signals`).

pub(crate) mod backup;
pub mod disk;
pub(crate) mod health;
pub(crate) mod lock;
pub(crate) mod notify;
pub(crate) mod output;
pub(crate) mod renewers;
pub mod report;
pub(crate) mod signals;
