//! The one reader of the process environment, below every other module (the network's
//! clock reads its test hook here too): a variable set but empty (as env-file templates
//! leave them) is unset, for every variable the tool reads. `config` resolves the options
//! from it; nothing else reads `std::env`.

use std::path::PathBuf;

pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A path from the environment (not necessarily UTF-8); empty is unset.
pub fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}
