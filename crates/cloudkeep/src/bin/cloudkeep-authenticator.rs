//! `cloudkeep-authenticator`: the companion app, as a command line. Links
//! this device to accounts and shows their offline codes; the logic is in
//! the `authenticator` crate.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cloudkeep-authenticator", version, about = "cloudkeep's authenticator app")]
struct Cli {
    /// Where the app keeps its accounts and keys
    /// [default: ~/.local/share/cloudkeep-authenticator]
    #[arg(long, env = "CLOUDKEEP_AUTHENTICATOR_STATE", value_name = "DIR")]
    state: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Link this device with the link (or QR code) from the console.
    Link { link: String },
    /// List the linked accounts.
    Accounts,
    /// Show the current 30-second code of each account (or of one).
    Code { account: Option<String> },
    /// Forget an account on this device (by number or email).
    Remove { account: String },
}

fn default_state() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/cloudkeep-authenticator")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut state = authenticator::State::open(cli.state.unwrap_or_else(default_state))?;
    match cli.command {
        Command::Link { link } => {
            let linked = authenticator::link(&mut state, &link).await?;
            println!("linked {}", linked.account.label());
            if let Some(codes) = linked.backup_codes {
                println!("Two-step verification is now on. Keep these backup codes somewhere safe; each works once:");
                for code in codes {
                    println!("  {code}");
                }
            }
        }
        Command::Accounts => {
            if state.accounts.is_empty() {
                println!("no linked accounts");
            }
            for (i, account) in state.accounts.iter().enumerate() {
                println!("{}. {}", i + 1, account.label());
            }
        }
        Command::Code { account } => {
            let chosen: Vec<usize> = match account {
                Some(selector) => vec![state.find(&selector)?],
                None => (0..state.accounts.len()).collect(),
            };
            if chosen.is_empty() {
                anyhow::bail!("no linked accounts: link one first");
            }
            for i in chosen {
                let account = &state.accounts[i];
                let (code, left) = authenticator::code(account, now_ms())?;
                println!("{code}  {}  ({left} s left)", account.label());
            }
        }
        Command::Remove { account } => {
            let i = state.find(&account)?;
            let removed = state.accounts.remove(i);
            state.save()?;
            println!(
                "forgot {} on this device (remove the method in the console to revoke it)",
                removed.label()
            );
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
