//! `keygen` and `encrypt-secrets`: the key that encrypts stream signatures at rest.

use std::path::PathBuf;

use argh::FromArgs;

use super::{Ctx, Run};
use crate::crypto::secrets::SecretKey;
use crate::error::{Error, Result};

/// Write a new random key file (mode 0600) for encrypting stream signatures at rest.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "keygen")]
pub struct Keygen {
    /// where to write the key (refuses to overwrite)
    #[argh(option)]
    pub out: PathBuf,
}

impl Run for Keygen {
    fn run(self, _ctx: &Ctx) -> Result<()> {
        SecretKey::generate(&self.out)?;
        println!(
            "wrote a new key to {} (mode 0600); keep a copy: encrypted signatures cannot be read without it",
            self.out.display()
        );
        Ok(())
    }
}

/// Encrypt the plaintext stream signatures in place with --secret-key-file (crash-safe).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "encrypt-secrets")]
pub struct EncryptSecrets {}

impl Run for EncryptSecrets {
    fn run(self, ctx: &Ctx) -> Result<()> {
        let Some(file) = &ctx.key_file else {
            return Err(Error::usage(
                "encrypt-secrets needs --secret-key-file (create one with `keygen`)",
            ));
        };
        let key = SecretKey::load(file)?;
        let n = ctx.open()?.encrypt_secrets(&key)?;
        println!("encrypted {n} stream signatures");
        Ok(())
    }
}
