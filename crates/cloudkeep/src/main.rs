//! The `cloudkeep` binary: parses the command line, layers the settings,
//! builds the adapters (SQL store, clock, server key) and hands them to the
//! services. `serve` runs the server; `admin` scripts setup against the same
//! data, even while a server runs.
#![forbid(unsafe_code)]

mod admin;
mod listeners;
mod serve;
mod settings;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cloudkeep", version, about = "Self-hosted account and sync server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::ServeArgs),
    /// Create organizations and accounts from the command line.
    Admin(admin::AdminArgs),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Admin(args) => admin::run(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
