//! The accept loop: how many connections are served at once, how long a
//! client may dawdle over its headers, and the graceful drain on shutdown.
//!
//! `axum::serve` has neither a header-read timeout nor a connection limit,
//! so a handful of slow clients (slowloris) could hold connections open for
//! ever. Here every connection holds a semaphore permit, hyper's timer closes
//! a connection whose headers do not arrive in time (which also bounds idle
//! keep-alive connections), and body reads are bounded by
//! [`super::router`]'s body timeout.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// Largest request head (request line plus headers), bytes; bigger
    /// heads get `431` and the connection closes.
    pub max_header_bytes: usize,
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops
/// accepting and waits for the open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let connections = TaskTracker::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes);
    loop {
        // Waiting for a slot before accepting leaves the rest in the
        // kernel's backlog: back-pressure instead of unbounded tasks.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => tcp,
                Err(e) => {
                    // EMFILE and friends: the condition passes when other
                    // connections close; spinning on it would not help.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Responses with a streamed body (SSE, chunked JSON) go out in more
        // than one write; with Nagle on, the second waits for the client's
        // delayed ACK and every such request costs milliseconds.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let service = TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(TokioIo::new(tcp), service);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection.with_upgrades());
            let result = tokio::select! {
                r = connection.as_mut() => r,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                // Timeouts, resets and garbage from clients land here; they
                // are the client's problem, not the relay's.
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}
