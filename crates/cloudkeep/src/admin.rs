//! `cloudkeep admin`: scripted setup. Talks to the same database as the
//! server (safe while it runs) and prints what it created.

use std::io::BufRead;

use anyhow::Context;
use clap::{Args, Subcommand};
use drive::{Access, Grant};
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
    /// Show or change who may use a drive. Without options, lists every
    /// member of its organization with what they may do on it.
    Access {
        /// The drive's numeric id.
        #[arg(long)]
        drive: u64,
        /// What members without a rule of their own may do:
        /// read-write, read or none.
        #[arg(long, value_parser = parse_grant)]
        members: Option<Grant>,
        /// A member (by email) to give a rule of their own.
        #[arg(long, requires = "access")]
        member: Option<String>,
        /// The member's rule: read-write, read, none, or default (like the
        /// other members).
        #[arg(long, requires = "member")]
        access: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum OrgCommand {
    /// Create an organization.
    Create {
        #[arg(long)]
        name: String,
    },
    /// List an organization's pending invitations, or withdraw one.
    Invitations {
        /// The organization (by name).
        #[arg(long)]
        org: String,
        /// Withdraw the invitation with this id (from the list): its link
        /// stops working.
        #[arg(long)]
        revoke: Option<String>,
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

fn parse_grant(s: &str) -> Result<Grant, String> {
    s.parse().map_err(|e: drive::UnknownGrant| e.to_string())
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
        AdminCommand::Drive(DriveCommand::Access {
            drive,
            members,
            member,
            access,
        }) => {
            drive_access(
                &services.drives,
                drive::DriveId::new(drive),
                members,
                member.zip(access),
            )
            .await
        }
        AdminCommand::Org(OrgCommand::Invitations { org, revoke }) => {
            let found = identity
                .organization_named(&org)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no organization is named '{org}'"))?;
            if let Some(id) = revoke {
                if !identity.operator_revoke_invitation(&found.id, &id).await? {
                    anyhow::bail!("'{}' has no pending invitation with id {id}", found.name);
                }
                println!("invitation withdrawn");
            }
            let now = identity.now();
            for i in identity.operator_invitations(&found.id).await? {
                let hours = (i.expires_at - now).max(0) / 3_600_000;
                println!(
                    "{}  {}  {}  invited by {}  link valid {hours} more hours",
                    i.id, i.email, i.role, i.invited_by
                );
            }
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

/// `admin drive access`: applies the changes asked for, then prints who
/// may use the drive.
async fn drive_access(
    drives: &drive::Drives,
    id: drive::DriveId,
    members: Option<Grant>,
    rule: Option<(String, String)>,
) -> anyhow::Result<()> {
    if let Some(grant) = members {
        drives.set_member_access(None, id, grant).await?;
        println!("member access set to {grant}");
    }
    if let Some((email, access)) = rule {
        let grant = match access.as_str() {
            "default" => None,
            other => Some(parse_grant(other).map_err(anyhow::Error::msg)?),
        };
        let (_, listed) = drives.members(None, id).await?;
        let found = listed
            .iter()
            .find(|m| m.member.email.eq_ignore_ascii_case(email.trim()))
            .ok_or_else(|| anyhow::anyhow!("{email} is not a member of the drive's organization"))?;
        drives.set_grant(None, id, &found.member.account_id, grant).await?;
        println!(
            "rule for {} set to {}",
            found.member.email,
            grant.map_or("default", Grant::as_str)
        );
    }
    let (found, listed) = drives.members(None, id).await?;
    println!("drive: {} ({})", found.id, found.name);
    println!("member_access: {}", found.member_access);
    for m in listed {
        println!(
            "member: {} role={} rule={} access={}",
            m.member.email,
            m.member.role,
            m.grant.map_or("default", Grant::as_str),
            m.access.map_or("none", Access::as_str)
        );
    }
    Ok(())
}
