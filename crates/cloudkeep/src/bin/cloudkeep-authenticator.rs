//! `cloudkeep-authenticator`: the companion app, as a command line. Links
//! this device to accounts, approves sign-ins (push with number matching)
//! and shows offline codes; the logic is in the `authenticator` crate.
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
    /// Link this device: with the link (or QR code) from the console, or
    /// with --server and --email, signing in from here.
    Link {
        /// The link from the console
        #[arg(required_unless_present = "server", conflicts_with_all = ["server", "email"])]
        link: Option<String>,
        /// The server's address, e.g. https://cloud.example.org
        #[arg(long, requires = "email")]
        server: Option<String>,
        /// The account's email
        #[arg(long, requires = "server")]
        email: Option<String>,
        /// Read the password (and then, if asked, the second-step code)
        /// from standard input, one per line
        #[arg(long)]
        password_stdin: bool,
        /// Do not ask to authorize the link
        #[arg(long)]
        yes: bool,
        /// The name the console shows for this device [default: the host name]
        #[arg(long)]
        name: Option<String>,
    },
    /// Wait for sign-in requests and answer them (interactive).
    Watch,
    /// Wait for the next sign-in request and answer it (for scripts).
    Answer {
        /// The number the sign-in page shows
        #[arg(long, required_unless_present = "deny")]
        number: Option<u8>,
        /// Approve the sign-in
        #[arg(long, conflicts_with = "deny", required_unless_present = "deny")]
        approve: bool,
        /// Refuse the sign-in
        #[arg(long)]
        deny: bool,
        /// Only this account (number or email)
        #[arg(long)]
        account: Option<String>,
        /// Give up after this many seconds without a request
        #[arg(long, default_value_t = 60)]
        wait: u64,
    },
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

use authenticator::{ApprovalRequest, CallError, LinkedAccount, now_ms};
use tokio::sync::mpsc;

/// What the account pollers report.
enum Polled {
    Request(usize, ApprovalRequest),
    Revoked(usize),
}

/// One long-poll loop per account, reporting into one channel.
fn spawn_pollers(accounts: Vec<(usize, LinkedAccount)>) -> mpsc::Receiver<Polled> {
    let (tx, rx) = mpsc::channel(16);
    let client = reqwest::Client::new();
    for (i, account) in accounts {
        let tx = tx.clone();
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                match authenticator::poll(&client, &account, 50).await {
                    Ok(requests) => {
                        for r in requests {
                            if tx.send(Polled::Request(i, r)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(CallError::Revoked(_)) => {
                        let _ = tx.send(Polled::Revoked(i)).await;
                        return;
                    }
                    Err(e) => {
                        eprintln!("warning: {e}; retrying in 5 s");
                        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    }
                }
            }
        });
    }
    rx
}

/// `14:03:12 UTC`
fn clock_time(ms: i64) -> String {
    let s = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s / 60 % 60, s % 60)
}

fn describe(account: &LinkedAccount, r: &ApprovalRequest) -> String {
    let place = r.place.as_deref().unwrap_or("place unknown");
    format!(
        "Sign-in to {} at {} from {} ({place}), {}",
        account.label(),
        clock_time(r.created_at),
        r.ip,
        r.browser
    )
}

fn revoked(state: &mut authenticator::State, i: usize) -> anyhow::Result<()> {
    let account = state.accounts[i].clone();
    authenticator::mark_revoked(state, &account)?;
    eprintln!(
        "{} was removed from this device's server (the method was removed in the console); 'remove {}' forgets it here",
        account.label(),
        i + 1
    );
    Ok(())
}

fn read_line(prompt: &str) -> anyhow::Result<String> {
    use std::io::Write;
    print!("{prompt}");
    std::io::stdout().flush()?;
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line)? == 0 {
        anyhow::bail!("no answer (end of input)");
    }
    Ok(line.trim().to_owned())
}

fn active_accounts(
    state: &authenticator::State,
    selector: Option<&str>,
) -> anyhow::Result<Vec<(usize, LinkedAccount)>> {
    let chosen: Vec<usize> = match selector {
        Some(s) => vec![state.find(s)?],
        None => (0..state.accounts.len())
            .filter(|i| !state.accounts[*i].revoked)
            .collect(),
    };
    if chosen.is_empty() {
        anyhow::bail!("no linked accounts: link one first");
    }
    if let Some(i) = chosen.iter().find(|i| state.accounts[**i].revoked) {
        anyhow::bail!(
            "{} was removed on its server; link it again",
            state.accounts[*i].label()
        );
    }
    Ok(chosen.into_iter().map(|i| (i, state.accounts[i].clone())).collect())
}

async fn watch(state: &mut authenticator::State) -> anyhow::Result<()> {
    let accounts = active_accounts(state, None)?;
    println!(
        "Waiting for sign-in requests for {} account(s); Ctrl-C to stop.",
        accounts.len()
    );
    let mut rx = spawn_pollers(accounts);
    let client = reqwest::Client::new();
    let mut seen = std::collections::HashSet::new();
    let mut left = state.accounts.iter().filter(|a| !a.revoked).count();
    while let Some(event) = rx.recv().await {
        let (i, request) = match event {
            Polled::Request(i, r) => (i, r),
            Polled::Revoked(i) => {
                revoked(state, i)?;
                left -= 1;
                if left == 0 {
                    anyhow::bail!("no linked account is left on this device");
                }
                continue;
            }
        };
        if !seen.insert(request.id.clone()) || request.expires_at <= now_ms() {
            continue;
        }
        let account = state.accounts[i].clone();
        println!("\n{}", describe(&account, &request));
        let [a, b, c] = request.numbers;
        let prompt =
            format!("Which number does the sign-in page show: {a}, {b} or {c}? Type it to approve, or n to refuse: ");
        let typed = tokio::task::spawn_blocking(move || read_line(&prompt)).await??;
        let (number, approve) = match typed.parse::<u8>() {
            Ok(n) => (n, true),
            Err(_) if typed.eq_ignore_ascii_case("n") || typed.eq_ignore_ascii_case("no") => (a, false),
            Err(_) => {
                println!("Not answered: type one of the numbers, or n.");
                seen.remove(&request.id);
                continue;
            }
        };
        match authenticator::answer(&client, &account, &request.id, number, approve).await {
            Ok(verdict) => println!("{}", verdict_text(&verdict)),
            Err(CallError::Revoked(_)) => revoked(state, i)?,
            Err(e) => println!("{e}"),
        }
    }
    Ok(())
}

fn verdict_text(verdict: &str) -> &'static str {
    match verdict {
        "approved" => "Approved: the sign-in continues.",
        "wrong_number" => {
            "Refused: that is not the number the sign-in page shows, so that sign-in was stopped. If you mistapped, sign in again and choose the number the page shows."
        }
        "denied" => "Refused: the attempt was stopped and recorded.",
        _ => "The server answered something unexpected.",
    }
}

async fn answer_next(
    state: &mut authenticator::State,
    number: Option<u8>,
    approve: bool,
    selector: Option<&str>,
    wait: u64,
) -> anyhow::Result<()> {
    let accounts = active_accounts(state, selector)?;
    let mut rx = spawn_pollers(accounts);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(wait);
    loop {
        let event = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .map_err(|_| anyhow::anyhow!("no sign-in request arrived within {wait} s"))?;
        let Some(event) = event else {
            anyhow::bail!("no linked account is left to wait on");
        };
        let (i, request) = match event {
            Polled::Request(i, r) if r.expires_at > now_ms() => (i, r),
            Polled::Request(..) => continue,
            Polled::Revoked(i) => {
                revoked(state, i)?;
                anyhow::bail!("this device was removed from {}", state.accounts[i].label());
            }
        };
        let account = state.accounts[i].clone();
        println!("{}", describe(&account, &request));
        let number = number.unwrap_or(request.numbers[0]);
        let client = reqwest::Client::new();
        match authenticator::answer(&client, &account, &request.id, number, approve).await {
            Ok(verdict) => {
                println!("{}", verdict_text(&verdict));
                return Ok(());
            }
            Err(CallError::Revoked(_)) => {
                revoked(state, i)?;
                anyhow::bail!("this device was removed from {}", account.label());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "cloudkeep-authenticator".to_owned())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut state = authenticator::State::open(cli.state.unwrap_or_else(default_state))?;
    match cli.command {
        Command::Link {
            link,
            server,
            email,
            password_stdin,
            yes,
            name,
        } => {
            let linked = match (link, server, email) {
                (Some(link), _, _) => authenticator::link(&mut state, &link).await?,
                (None, Some(server), Some(email)) => {
                    // With --password-stdin, standard input holds the
                    // password, then (when asked) the second-step code and
                    // the answer to "link this device?", one per line.
                    let lines = if password_stdin {
                        let mut all = String::new();
                        std::io::Read::read_to_string(&mut std::io::stdin(), &mut all)?;
                        let mut lines: Vec<String> = all.lines().map(str::to_owned).collect();
                        lines.reverse();
                        Some(std::sync::Arc::new(std::sync::Mutex::new(lines)))
                    } else {
                        None
                    };
                    let next_line = |lines: &std::sync::Arc<std::sync::Mutex<Vec<String>>>| {
                        lines.lock().unwrap_or_else(|e| e.into_inner()).pop()
                    };
                    let password = match &lines {
                        Some(l) => next_line(l).unwrap_or_default(),
                        None => rpassword::prompt_password(format!("Password for {email}: "))?,
                    };
                    let second_factor: authenticator::Ask = match lines.clone() {
                        Some(l) => Box::new(move || {
                            next_line(&l)
                                .ok_or_else(|| anyhow::anyhow!("the second-step code is missing from standard input"))
                        }),
                        None => {
                            Box::new(|| read_line("Second-step code (from your authenticator, or a backup code): "))
                        }
                    };
                    let authorize: authenticator::Confirm = match (yes, lines) {
                        (true, _) => Box::new(|_| Ok(true)),
                        (false, Some(l)) => Box::new(move |_| {
                            let typed = next_line(&l).unwrap_or_default();
                            Ok(typed.eq_ignore_ascii_case("y") || typed.eq_ignore_ascii_case("yes"))
                        }),
                        (false, None) => Box::new(|question| {
                            let typed = read_line(&format!("{question} [y/N] "))?;
                            Ok(typed.eq_ignore_ascii_case("y") || typed.eq_ignore_ascii_case("yes"))
                        }),
                    };
                    let credentials = authenticator::Credentials {
                        email,
                        password,
                        second_factor,
                        authorize,
                        device_name: name.unwrap_or_else(host_name),
                    };
                    authenticator::link_from_device(&mut state, &server, credentials).await?
                }
                _ => anyhow::bail!("give a link, or --server and --email"),
            };
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
                let note = if account.revoked {
                    "  (removed on the server)"
                } else {
                    ""
                };
                println!("{}. {}{note}", i + 1, account.label());
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
        Command::Watch => watch(&mut state).await?,
        Command::Answer {
            number,
            approve,
            deny,
            account,
            wait,
        } => answer_next(&mut state, number, approve && !deny, account.as_deref(), wait).await?,
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
