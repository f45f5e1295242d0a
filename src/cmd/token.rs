//! `token new|list|revoke`: the operator's tokens for the intake's operator routes.

use argh::FromArgs;

use super::{Ctx, Run};
use crate::error::{Error, Result};
use crate::net::clock::now_ms;
use crate::ops::output::{Cell, Format, Rows};
use crate::serve::auth;

/// Operator tokens of `serve` (report, metrics, acting on any agent): printed once, only
/// their SHA-256 stored.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "token")]
pub struct Token {
    #[argh(subcommand)]
    pub action: Action,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Action {
    New(New),
    List(List),
    Revoke(Revoke),
}

/// Create a token (256 random bits) and print it once.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "new")]
pub struct New {
    /// a name for it (1 to 64 letters, digits, '-', '_', '.')
    #[argh(option)]
    pub name: String,
}

/// List the tokens by name (never the tokens).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
pub struct List {
    /// table, json or tsv (default: table)
    #[argh(option, default = "Format::Table")]
    pub format: Format,
}

/// Revoke a token by name: it stops working at once.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "revoke")]
pub struct Revoke {
    /// the token's name
    #[argh(option)]
    pub name: String,
}

fn check_name(name: &str) -> Result<&str> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !ok {
        return Err(Error::usage(
            "--name must be 1 to 64 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(name)
}

impl Run for Token {
    fn run(self, ctx: &Ctx) -> Result<()> {
        match self.action {
            Action::New(n) => {
                let name = check_name(&n.name)?;
                let token = zeroize::Zeroizing::new(auth::new_token());
                if !ctx
                    .open()?
                    .add_token(name, &auth::sha256_hex(token.as_bytes()), now_ms())?
                {
                    return Err(Error::usage(format!(
                        "a token named {name} exists: revoke it or choose another name"
                    )));
                }
                eprintln!("token {name} created; it is shown once, keep it like a password:");
                println!("{}", token.as_str());
                Ok(())
            }
            Action::List(l) => {
                let mut rows = Rows::new(vec!["name", "created", "revoked"]);
                for t in ctx.open()?.tokens()? {
                    rows.rows.push(vec![
                        Cell::Text(t.name),
                        Cell::Time(Some(t.created_ms)),
                        Cell::Time(t.revoked_ms),
                    ]);
                }
                rows.emit(l.format, &[]);
                Ok(())
            }
            Action::Revoke(r) => {
                let name = check_name(&r.name)?;
                if !ctx.open()?.revoke_token(name, now_ms())? {
                    return Err(Error::usage(format!(
                        "no live token named {name}: see `token list`"
                    )));
                }
                println!("token {name} revoked");
                Ok(())
            }
        }
    }
}
