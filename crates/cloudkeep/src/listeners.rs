//! The server's listeners, started and stopped in one place.
//!
//! Each listener (HTTP and the metrics address today; IMAP, LMTP and SMTP
//! later) is bound by `serve`, then handed here with the future that
//! serves it. They share one shutdown: on SIGTERM or Ctrl-C every listener
//! stops accepting at once and finishes the connections it has in flight;
//! the process exits when all have. They also share one readiness: the
//! server reports ready (a log line, and [`web::Readiness`] for `/readyz`)
//! once every listener serves, and not ready from the moment it starts
//! stopping. A listener that fails stops the others: a server without one
//! of its listeners is not the server the operator configured.
//!
//! Adding a protocol is one call: `listeners.spawn("imap", |stop| imap::serve(listener, state, stop))`.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Resolves when the server is asked to stop. A listener then stops
/// accepting and returns once what it has in flight is done.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    pub async fn requested(mut self) {
        // An error means the sender is gone: stopping too.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

pub struct Listeners {
    stop: watch::Sender<bool>,
    running: JoinSet<(&'static str, anyhow::Result<()>)>,
    readiness: web::Readiness,
}

impl Listeners {
    pub fn new(readiness: web::Readiness) -> Self {
        Self {
            stop: watch::Sender::new(false),
            running: JoinSet::new(),
            readiness,
        }
    }

    /// Runs the listener `name`: `serve` gets the shared [`Shutdown`] and
    /// returns when it has finished after it.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, serve: F)
    where
        F: FnOnce(Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let served = serve(Shutdown(self.stop.subscribe()));
        self.running.spawn(async move { (name, served.await) });
    }

    /// Serves `app` over HTTP on `listener`, with each client's address.
    pub fn http(&mut self, name: &'static str, listener: tokio::net::TcpListener, app: axum::Router) {
        // Small writes (an event on a waiting sign-in's stream, the end
        // of a response) go out at once instead of waiting for the peer's
        // delayed acknowledgement.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        self.spawn(name, move |shutdown| async move {
            axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(shutdown.requested())
                .await
                .with_context(|| format!("the {name} listener failed"))
        });
    }

    /// Reports ready, serves until `signal` (or until a listener fails),
    /// then stops every listener and waits for what is in flight.
    pub async fn run(mut self, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
        self.readiness.ready();
        tracing::info!(listeners = self.running.len(), "ready");
        let mut failure = tokio::select! {
            () = signal => None,
            Some(ended) = self.running.join_next() => Some(match clean(ended) {
                Ok(name) => anyhow::anyhow!("the {name} listener stopped by itself"),
                Err(e) => e,
            }),
        };
        self.readiness.stopping();
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        self.stop.send_replace(true);
        while let Some(ended) = self.running.join_next().await {
            if let Err(error) = clean(ended) {
                tracing::error!(error = %format!("{error:#}"), "a listener failed while stopping");
                failure.get_or_insert(error);
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// The name of a listener that returned without error, or what went wrong.
fn clean(ended: Result<(&'static str, anyhow::Result<()>), tokio::task::JoinError>) -> anyhow::Result<&'static str> {
    let (name, served) = ended.context("a listener panicked")?;
    served.map(|()| name)
}

/// SIGTERM or Ctrl-C.
pub async fn stop_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
