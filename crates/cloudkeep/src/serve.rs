//! `cloudkeep serve`: the server: its storage and background workers, and
//! its listeners (started and stopped together in [`crate::listeners`]).

use std::net::SocketAddr;

use anyhow::Context;
use clap::Args;
use tracing_subscriber::EnvFilter;

use crate::listeners::{self, Listeners};
use crate::settings::{self, CommonArgs, LogFormat, Settings};

#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:8080]
    #[arg(long, env = "CLOUDKEEP_LISTEN", value_name = "ADDR")]
    listen: Option<String>,
    /// Log as text or as JSON lines [default: text]
    #[arg(long, env = "CLOUDKEEP_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,
}

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("CLOUDKEEP_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).init(),
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::resolve(&args.common, args.listen, args.log_format)?;
    init_logging(settings.log_format);
    let services = settings::build(&settings).await?;
    tracing::info!(data = %settings.data.display(), database = services.engine_label, "storage ready");

    // Bound (and announced) before the main address, so whoever waits for
    // "listening on" already knows where the metrics are.
    let metrics_listener = match &settings.metrics_listen {
        Some(metrics_listen) => {
            let listener = tokio::net::TcpListener::bind(metrics_listen)
                .await
                .with_context(|| format!("cannot listen on {metrics_listen} for metrics"))?;
            let address = listener.local_addr()?;
            tracing::info!(%address, "metrics served at http://{address}/metrics");
            Some(listener)
        }
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let address = listener.local_addr()?;
    tracing::info!(%address, "listening on http://{address}");

    if services.identity.needs_setup().await? {
        let token = services.identity.issue_setup_link().await?;
        let base = settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{address}"));
        // stdout, on purpose: the one line an operator needs, not a log.
        println!("setup: {base}/setup/{token}");
    }

    tokio::spawn(purge_periodically(services.identity.clone()));
    // Policies and memberships are cached; changes elsewhere drop them.
    let follower = services.identity.clone();
    tokio::spawn(async move { follower.follow_org_changes().await });
    let transport: std::sync::Arc<dyn notify::mail::MailTransport> = match &settings.mail_transport {
        settings::MailTransportSetting::Outbox => {
            let outbox = settings.data.join("outbox");
            tracing::info!(outbox = %outbox.display(), "email goes to the outbox folder (no SMTP configured)");
            std::sync::Arc::new(notify::mail::OutboxTransport::new(outbox))
        }
        settings::MailTransportSetting::Smtp {
            host,
            port,
            tls,
            credentials,
        } => std::sync::Arc::new(
            notify::mail::SmtpTransport::new(host, *port, *tls, credentials.clone()).map_err(anyhow::Error::msg)?,
        ),
    };
    let mail_settings = notify::mail::MailSettings {
        from: settings.mail_from.clone(),
        product: settings.issuer.clone(),
        address: settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{address}")),
    };
    tokio::spawn(notify::mail::deliver_forever(
        services.identity.clone(),
        transport,
        mail_settings,
    ));
    // Several processes on one PostgreSQL: approval requests created or
    // answered elsewhere wake this process's waiters.
    let _listener = services
        .store
        .spawn_signal_listener(services.identity.signals().clone());

    // "Import external data" jobs, claimed with a lease: one process runs
    // each, another takes over if it dies. Sources elsewhere go through
    // the outbound guard; our own drives are read in-process.
    let guard = std::sync::Arc::new(
        import::outbound::Guard::new(settings.import_allow_networks.clone()).with_own_address(address),
    );
    let drives = services.drives.clone().with_import_sources(drive::ImportSources {
        guard: Some(guard.clone()),
        own_origins: own_origins(address, settings.public_url.as_deref()),
        dav_domain: settings.dav_domain.clone(),
    });
    tokio::spawn(import::run_forever(import::Worker {
        drives: drives.clone(),
        guard,
        limits: settings.import_limits,
    }));

    let readiness = web::Readiness::default();
    let mut listeners = Listeners::new(readiness.clone());
    let config = web::WebConfig {
        public_url: settings.public_url.clone(),
        trust_forwarded_for: settings.trust_forwarded_for,
        dav_domain: settings.dav_domain.clone(),
        metrics_token: settings.metrics_token.clone(),
    };
    let state = web::AppState::new(services.identity, drives, config, readiness);
    if let Some(listener) = metrics_listener {
        listeners.http("metrics", listener, web::metrics_router(state.clone()));
    }
    listeners.http("HTTP", listener, web::router(state));
    let served = listeners.run(listeners::stop_signal()).await;
    services.store.close().await;
    tracing::info!("stopped");
    served
}

/// The origins under which this server's drives are reached: its listen
/// address (every loopback spelling when it listens on all addresses or
/// on loopback) and its public URL.
fn own_origins(address: SocketAddr, public_url: Option<&str>) -> Vec<String> {
    let port = address.port();
    let mut origins = vec![format!("http://{address}")];
    if address.ip().is_unspecified() || address.ip().is_loopback() {
        origins.extend([
            format!("http://127.0.0.1:{port}"),
            format!("http://[::1]:{port}"),
            format!("http://localhost:{port}"),
        ]);
    }
    origins.extend(public_url.map(str::to_owned));
    origins
}

/// Deletes expired sessions, setup links and throttle keys every five
/// minutes. Safe on several processes at once.
async fn purge_periodically(identity: identity::Identity) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(300));
    loop {
        every.tick().await;
        match identity.purge_expired().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "purged expired sessions and counters"),
            Err(e) => tracing::warn!(error = %e, "purge failed; will retry"),
        }
    }
}
