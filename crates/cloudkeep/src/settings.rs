//! Settings, layered: built-in defaults < `cloudkeep.toml` (or `--config`)
//! < `CLOUDKEEP_*` environment variables < command-line flags.
//!
//! Flags and their variables are read by clap (`--listen` /
//! `CLOUDKEEP_LISTEN`, …), so a value from either beats the file. Settings
//! without a flag are read from the environment here.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::Deserialize;

/// The options `serve` and `admin` share; they are accepted before or after
/// the subcommand (`admin drive create … --data DIR`).
#[derive(Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// Settings file [default: ./cloudkeep.toml when present]
    #[arg(long, global = true, env = "CLOUDKEEP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data folder: SQLite database, blobs, server key [default: ./cloudkeep-data]
    #[arg(long, global = true, env = "CLOUDKEEP_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Use PostgreSQL instead of the embedded SQLite, e.g. postgres://user@host/db
    #[arg(long, global = true, env = "CLOUDKEEP_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    data: Option<PathBuf>,
    database_url: Option<String>,
    public_url: Option<String>,
    log_format: Option<String>,
    trust_forwarded_for: Option<bool>,
    dav_domain: Option<String>,
    server_key_file: Option<PathBuf>,
    issuer: Option<String>,
    metrics_listen: Option<String>,
    metrics_token: Option<String>,
    #[serde(default)]
    argon2: Argon2File,
    #[serde(default)]
    session: SessionFile,
    #[serde(default)]
    sms: SmsFile,
    #[serde(default)]
    push: PushFile,
    #[serde(default)]
    mail: MailFile,
    #[serde(default)]
    import: ImportFile,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct ImportFile {
    allow_networks: Option<Vec<String>>,
    deadline_hours: Option<u64>,
    max_files: Option<u64>,
    max_depth: Option<usize>,
    max_gib: Option<u64>,
    jobs: Option<usize>,
    jobs_per_org: Option<u32>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct MailFile {
    transport: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    tls: Option<String>,
    username: Option<String>,
    password: Option<String>,
    from: Option<String>,
}

/// Where email goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailTransportSetting {
    /// `.eml` files in `<data>/outbox/`.
    Outbox,
    Smtp {
        host: String,
        port: u16,
        tls: notify::mail::SmtpTls,
        credentials: Option<(String, String)>,
    },
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct PushFile {
    webhook: Option<String>,
    token: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct SmsFile {
    gateway: Option<String>,
    url: Option<String>,
    token: Option<String>,
    allowed_countries: Option<Vec<String>>,
}

/// Where SMS codes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsGatewaySetting {
    /// The server log and `<data>/outbox/sms.log`.
    Log,
    /// `POST url` with `{"to","message"}` and a bearer token.
    Http { url: String, token: String },
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct Argon2File {
    memory_kib: Option<u32>,
    iterations: Option<u32>,
    parallelism: Option<u32>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct SessionFile {
    idle_minutes: Option<i64>,
    remembered_idle_days: Option<i64>,
    lifetime_days: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: String,
    pub data: PathBuf,
    pub database_url: Option<String>,
    pub public_url: Option<String>,
    pub log_format: LogFormat,
    pub trust_forwarded_for: bool,
    /// Drives answer WebDAV at `<drive id>.connect.<dav_domain>`.
    pub dav_domain: String,
    pub server_key_file: Option<PathBuf>,
    /// A second address that serves only `/metrics` (for a scraper on an
    /// internal network); `None`: no second listener.
    pub metrics_listen: Option<String>,
    /// The bearer token `/metrics` asks for wherever it is served; on the
    /// main address, `/metrics` exists only with one.
    pub metrics_token: Option<String>,
    /// The name authenticator apps show next to the account.
    pub issuer: String,
    pub argon2: (u32, u32, u32),
    pub session: identity::SessionPolicy,
    pub sms_gateway: SmsGatewaySetting,
    pub sms_regions: Vec<String>,
    /// A UnifiedPush/ntfy-style URL (with `{device}`) that wakes phones
    /// when an approval request waits; `None`: only the app's long poll.
    pub push_webhook: Option<(String, String)>,
    pub mail_transport: MailTransportSetting,
    /// The sender of every email.
    pub mail_from: String,
    /// Networks imports may reach although they are not public (a NAS
    /// on the LAN).
    pub import_allow_networks: Vec<import::outbound::IpNet>,
    pub import_limits: import::Limits,
}

/// A metrics token shorter than this could be guessed.
const MIN_METRICS_TOKEN: usize = 16;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_parsed<T: std::str::FromStr>(name: &str) -> anyhow::Result<Option<T>> {
    env(name)
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| anyhow::anyhow!("{name}={v} is not a valid value"))
        })
        .transpose()
}

fn read_file(path: Option<&Path>) -> anyhow::Result<File> {
    let (path, required) = match path {
        Some(p) => (p.to_owned(), true),
        None => (PathBuf::from("cloudkeep.toml"), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("invalid settings in {}", path.display())),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

impl Settings {
    /// `listen` and `log_format` are `serve`'s flags (already merged with
    /// their environment variables by clap).
    pub fn resolve(common: &CommonArgs, listen: Option<String>, log_format: Option<String>) -> anyhow::Result<Self> {
        let file = read_file(common.config.as_deref())?;
        const MINUTE: i64 = 60_000;
        const DAY: i64 = 1_440 * MINUTE;
        let defaults = identity::SessionPolicy::default();
        let session = identity::SessionPolicy {
            idle: env_parsed::<i64>("CLOUDKEEP_SESSION_IDLE_MINUTES")?
                .or(file.session.idle_minutes)
                .map_or(defaults.idle, |m| m * MINUTE),
            remembered_idle: env_parsed::<i64>("CLOUDKEEP_SESSION_REMEMBERED_IDLE_DAYS")?
                .or(file.session.remembered_idle_days)
                .map_or(defaults.remembered_idle, |d| d * DAY),
            absolute: env_parsed::<i64>("CLOUDKEEP_SESSION_LIFETIME_DAYS")?
                .or(file.session.lifetime_days)
                .map_or(defaults.absolute, |d| d * DAY),
            ..defaults
        };
        if session.idle <= 0 || session.remembered_idle <= 0 || session.absolute <= 0 {
            anyhow::bail!("session times must be positive");
        }
        let log_format = match log_format.or(file.log_format).as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => anyhow::bail!("log format '{other}' is not 'text' or 'json'"),
        };
        let public_url = env("CLOUDKEEP_PUBLIC_URL")
            .or(file.public_url)
            .map(|u| u.trim_end_matches('/').to_owned());
        if let Some(url) = &public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            anyhow::bail!("public_url must start with http:// or https://");
        }
        let dav_domain = env("CLOUDKEEP_DAV_DOMAIN")
            .or(file.dav_domain)
            .unwrap_or_else(|| "localhost".into())
            .trim_matches('.')
            .to_ascii_lowercase();
        if dav_domain.is_empty()
            || !dav_domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            anyhow::bail!("dav_domain must be a host name, e.g. example.org");
        }
        let sms_gateway = match env("CLOUDKEEP_SMS_GATEWAY").or(file.sms.gateway).as_deref() {
            None | Some("log") => SmsGatewaySetting::Log,
            Some("http") => SmsGatewaySetting::Http {
                url: env("CLOUDKEEP_SMS_URL")
                    .or(file.sms.url)
                    .ok_or_else(|| anyhow::anyhow!("the http SMS gateway needs sms.url (CLOUDKEEP_SMS_URL)"))?,
                token: env("CLOUDKEEP_SMS_TOKEN").or(file.sms.token).unwrap_or_default(),
            },
            Some(other) => anyhow::bail!("SMS gateway '{other}' is not 'log' or 'http'"),
        };
        let sms_regions: Vec<String> = match env("CLOUDKEEP_SMS_ALLOWED_COUNTRIES") {
            Some(list) => list
                .split(',')
                .map(|c| c.trim().to_uppercase())
                .filter(|c| !c.is_empty())
                .collect(),
            None => file
                .sms
                .allowed_countries
                .map(|l| l.iter().map(|c| c.trim().to_uppercase()).collect())
                .unwrap_or_else(|| identity::credential::sms::DEFAULT_REGIONS.map(str::to_owned).to_vec()),
        };
        if sms_regions
            .iter()
            .any(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            anyhow::bail!("sms.allowed_countries takes two-letter country codes, e.g. [\"CH\", \"FR\"]");
        }
        let push_webhook = env("CLOUDKEEP_PUSH_WEBHOOK").or(file.push.webhook).map(|url| {
            let token = env("CLOUDKEEP_PUSH_TOKEN").or(file.push.token).unwrap_or_default();
            (url, token)
        });
        let mail_transport = match env("CLOUDKEEP_MAIL_TRANSPORT").or(file.mail.transport).as_deref() {
            None | Some("outbox") => MailTransportSetting::Outbox,
            Some("smtp") => {
                let tls = match env("CLOUDKEEP_MAIL_TLS").or(file.mail.tls).as_deref() {
                    None | Some("starttls") => notify::mail::SmtpTls::StartTls,
                    Some("tls") => notify::mail::SmtpTls::Tls,
                    Some("none") => notify::mail::SmtpTls::None,
                    Some(other) => anyhow::bail!("mail.tls is none, starttls or tls, not '{other}'"),
                };
                let default_port = match tls {
                    notify::mail::SmtpTls::None => 25,
                    notify::mail::SmtpTls::StartTls => 587,
                    notify::mail::SmtpTls::Tls => 465,
                };
                let username = env("CLOUDKEEP_MAIL_USERNAME").or(file.mail.username);
                let password = env("CLOUDKEEP_MAIL_PASSWORD").or(file.mail.password);
                MailTransportSetting::Smtp {
                    host: env("CLOUDKEEP_MAIL_HOST").or(file.mail.host).ok_or_else(|| {
                        anyhow::anyhow!("the smtp mail transport needs mail.host (CLOUDKEEP_MAIL_HOST)")
                    })?,
                    port: env_parsed("CLOUDKEEP_MAIL_PORT")?
                        .or(file.mail.port)
                        .unwrap_or(default_port),
                    tls,
                    credentials: username.map(|u| (u, password.unwrap_or_default())),
                }
            }
            Some(other) => anyhow::bail!("mail.transport is outbox or smtp, not '{other}'"),
        };
        let metrics_token = env("CLOUDKEEP_METRICS_TOKEN").or(file.metrics_token);
        if let Some(token) = &metrics_token
            && (token.len() < MIN_METRICS_TOKEN || token.bytes().any(|b| !b.is_ascii_graphic()))
        {
            anyhow::bail!(
                "metrics_token must have at least {MIN_METRICS_TOKEN} characters, without spaces (e.g. from `openssl rand -hex 32`)"
            );
        }
        let mail_from = env("CLOUDKEEP_MAIL_FROM")
            .or(file.mail.from)
            .unwrap_or_else(|| "cloudkeep <noreply@localhost>".to_owned());
        if !notify::mail::valid_sender(&mail_from) {
            anyhow::bail!("mail.from must be an address like \"cloudkeep <noreply@example.org>\", not '{mail_from}'");
        }
        let import_allow_networks = match env("CLOUDKEEP_IMPORT_ALLOW_NETWORKS") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
            None => file.import.allow_networks.unwrap_or_default(),
        }
        .iter()
        .map(|text| {
            import::outbound::parse_network(text).ok_or_else(|| {
                anyhow::anyhow!("import.allow_networks takes networks like \"192.168.1.0/24\", not '{text}'")
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
        let defaults = import::Limits::default();
        let import_limits = import::Limits {
            deadline: env_parsed::<u64>("CLOUDKEEP_IMPORT_DEADLINE_HOURS")?
                .or(file.import.deadline_hours)
                .map_or(defaults.deadline, |h| std::time::Duration::from_secs(h * 3600)),
            max_files: env_parsed("CLOUDKEEP_IMPORT_MAX_FILES")?
                .or(file.import.max_files)
                .unwrap_or(defaults.max_files),
            max_depth: env_parsed("CLOUDKEEP_IMPORT_MAX_DEPTH")?
                .or(file.import.max_depth)
                .unwrap_or(defaults.max_depth),
            max_bytes: env_parsed::<u64>("CLOUDKEEP_IMPORT_MAX_GIB")?
                .or(file.import.max_gib)
                .map_or(defaults.max_bytes, |g| g.saturating_mul(1 << 30)),
            jobs: env_parsed("CLOUDKEEP_IMPORT_JOBS")?
                .or(file.import.jobs)
                .unwrap_or(defaults.jobs),
            jobs_per_org: env_parsed("CLOUDKEEP_IMPORT_JOBS_PER_ORG")?
                .or(file.import.jobs_per_org)
                .unwrap_or(defaults.jobs_per_org),
        };
        if import_limits.deadline.is_zero()
            || import_limits.max_files == 0
            || import_limits.max_bytes == 0
            || import_limits.jobs == 0
            || import_limits.jobs_per_org == 0
        {
            anyhow::bail!(
                "the import limits (deadline_hours, max_files, max_gib, jobs, jobs_per_org) must be positive"
            );
        }
        Ok(Settings {
            import_allow_networks,
            import_limits,
            mail_transport,
            mail_from,
            push_webhook,
            sms_gateway,
            sms_regions,
            listen: listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".to_owned()),
            data: common
                .data
                .clone()
                .or(file.data)
                .unwrap_or_else(|| PathBuf::from("cloudkeep-data")),
            database_url: common.database_url.clone().or(file.database_url),
            public_url,
            log_format,
            trust_forwarded_for: env_parsed("CLOUDKEEP_TRUST_FORWARDED_FOR")?
                .or(file.trust_forwarded_for)
                .unwrap_or(false),
            dav_domain,
            metrics_listen: env("CLOUDKEEP_METRICS_LISTEN").or(file.metrics_listen),
            metrics_token,
            server_key_file: env("CLOUDKEEP_SERVER_KEY_FILE")
                .map(PathBuf::from)
                .or(file.server_key_file),
            issuer: env("CLOUDKEEP_ISSUER")
                .or(file.issuer)
                .map(|i| i.trim().to_owned())
                .filter(|i| !i.is_empty() && i.len() <= 60)
                .unwrap_or_else(|| "cloudkeep".to_owned()),
            argon2: (
                env_parsed("CLOUDKEEP_ARGON2_MEMORY_KIB")?
                    .or(file.argon2.memory_kib)
                    .unwrap_or(19 * 1024),
                env_parsed("CLOUDKEEP_ARGON2_ITERATIONS")?
                    .or(file.argon2.iterations)
                    .unwrap_or(2),
                env_parsed("CLOUDKEEP_ARGON2_PARALLELISM")?
                    .or(file.argon2.parallelism)
                    .unwrap_or(1),
            ),
            session,
        })
    }
}

/// The services every command needs, built from the settings.
pub struct Services {
    pub identity: identity::Identity,
    pub drives: drive::Drives,
    pub store: store::SqlStore,
    pub engine_label: &'static str,
}

pub async fn build(settings: &Settings) -> anyhow::Result<Services> {
    let data = store::DataDir::open(&settings.data)?;
    let url = settings.database_url.clone().unwrap_or_else(|| data.sqlite_url());
    let store = store::SqlStore::open(&url).await?;
    let key = match &settings.server_key_file {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("cannot read server key {}", path.display()))?;
            let bytes: [u8; 32] = bytes
                .try_into()
                .map_err(|_| anyhow::anyhow!("{} must hold exactly 32 bytes", path.display()))?;
            bytes
        }
        None => data.server_key()?,
    };
    let hasher = identity::PasswordHasher::new(settings.argon2.0, settings.argon2.1, settings.argon2.2)
        .map_err(anyhow::Error::msg)?;
    let identity = identity::Identity::new(
        std::sync::Arc::new(store.clone()),
        std::sync::Arc::new(identity::SystemClock),
        hasher,
        identity::ServerKey::from_bytes(key),
        identity::IdentityConfig {
            session: settings.session,
            issuer: settings.issuer.clone(),
            sms_regions: settings.sms_regions.clone(),
            public_origin: settings
                .public_url
                .clone()
                .unwrap_or_else(|| "http://localhost".to_owned()),
            ..identity::IdentityConfig::default()
        },
    );
    let gateway: std::sync::Arc<dyn identity::SmsGateway> = match &settings.sms_gateway {
        SmsGatewaySetting::Log => std::sync::Arc::new(notify::LogSmsGateway::new(data.root().join("outbox"))),
        SmsGatewaySetting::Http { url, token } => {
            std::sync::Arc::new(notify::HttpSmsGateway::new(url.clone(), token.clone()).map_err(anyhow::Error::msg)?)
        }
    };
    let mut identity = identity.with_sms_gateway(gateway);
    if let Some((url, token)) = &settings.push_webhook {
        let push = notify::WebhookPush::new(url.clone(), token.clone()).map_err(anyhow::Error::msg)?;
        identity = identity.with_push_notifier(std::sync::Arc::new(push));
    }
    let engine_label = match store.engine() {
        store::Engine::Sqlite => "sqlite",
        store::Engine::Postgres => "postgres",
    };
    let blobs = std::sync::Arc::new(blobs::LocalBlobs::new(data.root().join("blobs")));
    let drives = drive::Drives::new(
        std::sync::Arc::new(store.clone()),
        std::sync::Arc::new(store.clone()),
        blobs,
        identity.clone(),
    );
    Ok(Services {
        drives,
        identity,
        store,
        engine_label,
    })
}
