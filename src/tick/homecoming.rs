//! Step 0b: the standby's windows come home by themselves. With `--standby-copy`, the
//! standby's database as replicated back to this host is read (read-only, whenever its
//! file changed) and every window the standby opened is brought into the ledger once, as
//! `absorb` does, before this tick attributes and bills; how fresh the copy is (the
//! standby's heartbeat) is kept, so billing knows which epochs it may bill already.

use std::path::PathBuf;

use crate::error::Result;
use crate::store::standby::{read_standby_copy, CopyStamp};
use crate::store::Store;

pub struct Homecoming {
    copy: PathBuf,
    /// The copy's file at the last good read: unchanged, not read again.
    read_as: CopyStamp,
    /// Whether the copy could be read last time (said when it changes).
    readable: Option<bool>,
}

impl Homecoming {
    pub fn new(copy: PathBuf) -> Homecoming {
        Homecoming {
            copy,
            read_as: CopyStamp::default(),
            readable: None,
        }
    }

    /// Absorbs the copy's windows when its file changed. Returns the windows added.
    pub fn absorb(&mut self, store: &mut Store) -> Result<usize> {
        let Some(stamp) = self.read_as.changed(&self.copy) else {
            return Ok(0);
        };
        let read = read_standby_copy(&self.copy);
        if self.readable != Some(read.is_ok()) {
            match &read {
                Ok(_) => log::info!("the standby's copy {} reads", self.copy.display()),
                Err(e) => log::warn!(
                    "{e}: epochs this host did not renew in time wait for it (--standby-wait-epochs)"
                ),
            }
            self.readable = Some(read.is_ok());
        }
        let Ok(copy) = read else { return Ok(0) };
        let (added, _, strangers) = store.absorb(&copy.windows)?;
        if let Some(fresh) = copy.fresh_ms {
            store.set_standby_fresh(fresh)?;
        }
        self.read_as = stamp;
        if added > 0 {
            log::info!(
                "absorbed {added} windows the standby opened{}; they are counted and billed in their epochs",
                if strangers > 0 {
                    format!(" ({strangers} of agents not enrolled here skipped)")
                } else {
                    String::new()
                }
            );
        }
        Ok(added)
    }
}
