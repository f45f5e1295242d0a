//! Files that hold secrets (keys, signatures, the database) must be private to their owner.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Refuses a secret file that others can read: a key must be guarded like a password.
pub fn check_private_file(path: &Path, what: &str) -> Result<()> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::usage(format!("cannot read {what} {}: {e}", path.display())))?;
    if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::usage(format!(
            "{what} {} is readable by other users: run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}
