//! Entry point: parse arguments, run one command, map errors to exit statuses.

use std::path::PathBuf;

use argh::FromArgs;

use stream_agency::cli::{Cli, Command};
use stream_agency::error::{exit, Error, Result};
use stream_agency::secrets::SecretKey;
use stream_agency::store::Store;
use stream_agency::tick::Agency;
use stream_agency::{config, health, lock, manage, now_ms, report, run};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let args: Vec<String> = std::env::args().collect();
    let name = args.first().map(String::as_str).unwrap_or("stream-agency");
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let cli = match Cli::from_args(&[name], &rest) {
        Ok(cli) => cli,
        Err(early) => {
            // --help goes to stdout with status 0; a usage error to stderr with status 2.
            if early.status.is_ok() {
                print!("{}", early.output);
                std::process::exit(exit::OK);
            }
            eprint!("{}", early.output);
            std::process::exit(exit::USAGE);
        }
    };
    if let Err(e) = dispatch(cli) {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}

/// Where the database is and how to open it.
struct Ctx {
    db: PathBuf,
    key_file: Option<PathBuf>,
}

impl Ctx {
    fn open(&self) -> Result<Store> {
        Store::open(&self.db)
    }

    /// Opens with the secret key, for commands that read or write stream signatures.
    fn open_with_secrets(&self) -> Result<Store> {
        let key = self.key_file.as_deref().map(SecretKey::load).transpose()?;
        let mut store = self.open()?;
        store.secret_key = key;
        Ok(store)
    }

    /// A dry run never creates a database.
    fn open_existing(&self) -> Result<Store> {
        if !self.db.exists() {
            return Err(Error::usage(format!(
                "no database at {}: run init-db or enroll first",
                self.db.display()
            )));
        }
        self.open_with_secrets()
    }
}

fn db_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| {
        std::env::var_os("STREAM_AGENCY_DB")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    })
    .unwrap_or_else(|| PathBuf::from("stream-agency.db"))
}

/// What needs a human ends `tick` and `check` with exit status 4 (after the work is done).
fn needs_human(items: &[String]) -> Result<()> {
    if items.is_empty() {
        return Ok(());
    }
    for item in items {
        log::error!("needs a human: {item}");
    }
    let more = if items.len() > 1 {
        format!(" (and {} more)", items.len() - 1)
    } else {
        String::new()
    };
    Err(Error::NeedsHuman(format!(
        "needs a human: {}{more}",
        items[0]
    )))
}

fn dispatch(cli: Cli) -> Result<()> {
    let ctx = Ctx {
        db: db_path(cli.db),
        key_file: config::secret_key_file(cli.secret_key_file),
    };
    match cli.command {
        Command::InitDb(_) => {
            ctx.open()?;
            println!(
                "database {} ready (schema version {})",
                ctx.db.display(),
                Store::schema_version()
            );
        }
        Command::Keygen(a) => {
            SecretKey::generate(&a.out)?;
            println!(
                "wrote a new key to {} (mode 0600); keep a copy: encrypted signatures cannot be read without it",
                a.out.display()
            );
        }
        Command::EncryptSecrets(_) => {
            if ctx.key_file.is_none() {
                return Err(Error::usage(
                    "encrypt-secrets needs --secret-key-file (create one with `keygen`)",
                ));
            }
            let n = ctx.open_with_secrets()?.encrypt_secrets()?;
            println!("encrypted {n} stream signatures");
        }
        Command::Enroll(a) => match (a.from_file, a.address, a.signature) {
            (Some(file), None, None) => manage::enroll_file(&ctx.db, &file, a.fee_bps, |db| {
                Ctx {
                    db: db.to_path_buf(),
                    key_file: ctx.key_file.clone(),
                }
                .open_with_secrets()
            })?,
            (None, Some(address), Some(signature)) => {
                let checked = manage::check_enrollment(&address, &signature, a.fee_bps)?;
                manage::save(&mut ctx.open_with_secrets()?, &[checked])?
            }
            _ => {
                return Err(Error::usage(
                    "enroll takes --address and --signature, or --from-file FILE (not both)",
                ))
            }
        },
        Command::EnrollFromPem(a) => {
            let checked = manage::check_pem(&a.pem, a.fee_bps)?;
            manage::save(&mut ctx.open_with_secrets()?, &[checked])?
        }
        // Addresses are checked before the database is opened: bad input changes nothing.
        Command::Pause(a) => {
            let address = manage::parse_address(&a.address)?;
            manage::set_status(&ctx.open()?, &address, false)?
        }
        Command::Resume(a) => {
            let address = manage::parse_address(&a.address)?;
            manage::set_status(&ctx.open()?, &address, true)?
        }
        Command::Remove(a) => {
            let address = manage::parse_address(&a.address)?;
            manage::remove(&mut ctx.open()?, &address, a.force)?
        }
        Command::Tick(a) => {
            let cfg = a.runtime_args().resolve()?;
            if config::switch(a.dry_run, "dry-run")? {
                let agency = Agency::new(ctx.open_existing()?, cfg);
                print!("{}", agency.dry_run()?);
                return Ok(());
            }
            let mut lock = lock::acquire(&ctx.db, "tick")?;
            let mut agency = Agency::new(ctx.open_with_secrets()?, cfg);
            let summary = agency.tick()?;
            lock.tick_completed(now_ms());
            println!("{summary}");
            needs_human(&summary.attention)?;
        }
        Command::Run(a) => {
            let cfg = a.runtime_args().resolve()?;
            let poll = config::poll_seconds(a.poll_seconds)?;
            let mut lock = lock::acquire(&ctx.db, "run")?;
            let mut agency = Agency::new(ctx.open_with_secrets()?, cfg);
            run::run(&mut agency, &mut lock, poll)?;
        }
        Command::Report(a) => report::report(&ctx.open()?, a.format)?,
        Command::Attempts(a) => {
            let address = manage::parse_address(&a.address)?;
            report::attempts(&ctx.open()?, &address, a.limit, a.format)?
        }
        Command::BillingAttempts(a) => report::billing_attempts(&ctx.open()?, a.limit, a.format)?,
        Command::Check(a) => {
            let store = ctx.open()?;
            let now = now_ms();
            if let Some(path) = &a.prometheus {
                health::write_prometheus(&store, &ctx.db, path, now)?;
            }
            let problems = health::check(
                &store,
                now,
                i64::from(a.warn_seconds) * 1000,
                i64::from(a.pending_limit_seconds) * 1000,
            )?;
            for p in &problems {
                println!("{p}");
            }
            needs_human(&problems)?;
            println!("ok: all active agents streaming, billing on time");
        }
        Command::Prune(a) => {
            if a.older_than == 0 {
                return Err(Error::usage("--older-than must be at least 1 day"));
            }
            let cutoff = now_ms() - i64::from(a.older_than) * 86_400_000;
            let pruned = ctx.open()?.prune(cutoff)?;
            println!("{pruned}");
        }
    }
    Ok(())
}
