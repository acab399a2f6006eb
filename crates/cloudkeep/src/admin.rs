//! `cloudkeep admin`: scripted setup. Talks to the same database as the
//! server (safe while it runs) and prints what it created.

use std::io::BufRead;

use anyhow::Context;
use clap::{Args, Subcommand};
use identity::Role;

use crate::settings::{self, CommonArgs, Settings};

#[derive(Args, Debug)]
pub struct AdminArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Drives.
    #[command(subcommand)]
    Drive(DriveCommand),
}

#[derive(Subcommand, Debug)]
enum DriveCommand {
    /// Create a drive in an organization; prints its numeric id.
    Create {
        /// The organization (by name).
        #[arg(long)]
        org: String,
        #[arg(long)]
        name: String,
        /// The quota in bytes [default: 10 GiB]
        #[arg(long)]
        quota: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum OrgCommand {
    /// Create an organization.
    Create {
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand, Debug)]
enum UserCommand {
    /// Create an account, optionally as a member of an organization.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// Organization to join (by name).
        #[arg(long, requires = "role")]
        org: Option<String>,
        /// legal-representative, admin, user or external
        #[arg(long, requires = "org", value_parser = parse_role)]
        role: Option<Role>,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    s.parse().map_err(|e: identity::RoleError| e.to_string())
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(&args.common, None, None)?;
    let services = settings::build(&settings).await?;
    let identity = &services.identity;
    let result = match args.command {
        AdminCommand::Drive(DriveCommand::Create { org, name, quota }) => {
            let found = identity
                .organization_named(&org)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no organization is named '{org}'"))?;
            let drive = services.drives.create(None, &found.id, &name, quota).await?;
            println!("drive created");
            println!("id: {}", drive.id);
            println!("name: {}", drive.name);
            println!("organization: {}", drive.org_name);
            println!("quota_bytes: {}", drive.quota_bytes);
            Ok(())
        }
        AdminCommand::Org(OrgCommand::Create { name }) => {
            let org = identity.create_organization(&name).await?;
            println!("organization created");
            println!("id: {}", org.id);
            println!("name: {}", org.name);
            Ok(())
        }
        AdminCommand::User(UserCommand::Create {
            email,
            name,
            org,
            role,
            password_stdin: _,
        }) => {
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("cannot read the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']);
            let membership = org.as_deref().zip(role);
            let (account, org) = identity.create_account(&email, &name, password, membership).await?;
            println!("account created");
            println!("id: {}", account.id);
            println!("email: {}", account.email);
            println!("name: {}", account.name);
            println!("sync_user_id: {}", account.sync_user_id);
            if let (Some(org), Some(role)) = (org, role) {
                println!("organization_id: {}", org.id);
                println!("organization: {}", org.name);
                println!("role: {role}");
            }
            Ok(())
        }
    };
    services.store.close().await;
    result
}
