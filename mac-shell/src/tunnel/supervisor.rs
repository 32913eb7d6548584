//! Keeps the SSH link up: notices when it drops, rebuilds it with backoff
//! (1 s doubling to 30 s), re-reads the discovery file each time (the
//! remote relay may have restarted on another port), and re-reads it on
//! demand when a forwarded connection finds the relay's port closed.
//!
//! It publishes the link's state on a watch channel; forwarders read it.
//! Permanent failures (host key, auth) stop it: retrying those would hammer
//! the server or paper over an attack.

use std::sync::Arc;
use std::time::{Duration, Instant};

use loopchat_proto::Discovery;
use tokio::sync::{mpsc, oneshot, watch};

use super::TunnelError;
use super::discovery::locate_relay;
use super::link::{Connector, Link};

pub(crate) const BACKOFF_START: Duration = Duration::from_secs(1);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// One reconnect attempt (TCP, SSH, auth, discovery) may take this long.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Rediscovery requests closer together than this are coalesced.
const REDISCOVER_MIN_INTERVAL: Duration = Duration::from_millis(250);

/// A usable link and the relay found through it. A new generation is
/// published after every successful (re)discovery, so that connections
/// waiting on the old one try again at once.
pub(crate) struct ActiveLink {
    pub link: Arc<Link>,
    pub relay: Discovery,
    pub generation: u64,
}

#[derive(Clone)]
pub(crate) enum LinkState {
    Up(Arc<ActiveLink>),
    /// Reconnecting: `attempt` counts the tries since the link dropped.
    Down {
        attempt: u32,
        error: Option<Arc<str>>,
    },
    /// Stopped for good (host key, auth…).
    Failed(Arc<TunnelError>),
    Closed,
}

/// Builds a link and finds the relay behind it.
pub(crate) async fn establish(
    connector: &Connector,
    discovery_path: &str,
) -> Result<(Arc<Link>, Discovery, oneshot::Receiver<()>), TunnelError> {
    let (link, closed) = connector.connect().await?;
    match locate_relay(&link, discovery_path).await {
        Ok(relay) => Ok((Arc::new(link), relay, closed)),
        Err(e) => {
            link.close().await;
            Err(e)
        }
    }
}

pub(crate) struct Supervisor {
    pub connector: Connector,
    pub discovery_path: String,
    pub state: watch::Sender<LinkState>,
    pub rediscover: mpsc::Receiver<u64>,
    pub shutdown: watch::Receiver<bool>,
}

impl Supervisor {
    /// Runs until shutdown or a permanent failure. `current` is the link
    /// `Tunnel::open` built; its state is already published.
    pub async fn run(mut self, mut current: Arc<ActiveLink>, mut closed: oneshot::Receiver<()>) {
        let mut generation = current.generation;
        loop {
            // The link is up: serve rediscovery requests until it drops.
            let mut last_rediscovery: Option<Instant> = None;
            loop {
                tokio::select! {
                    _ = &mut closed => break,
                    _ = shutdown_requested(&mut self.shutdown) => {
                        current.link.close().await;
                        let _ = self.state.send(LinkState::Closed);
                        return;
                    }
                    Some(seen) = self.rediscover.recv() => {
                        if seen != current.generation
                            || last_rediscovery.is_some_and(|t| t.elapsed() < REDISCOVER_MIN_INTERVAL)
                        {
                            continue;
                        }
                        last_rediscovery = Some(Instant::now());
                        match locate_relay(&current.link, &self.discovery_path).await {
                            Ok(relay) => {
                                if relay.port != current.relay.port {
                                    tracing::info!(
                                        target = %current.link.label(),
                                        old_port = current.relay.port,
                                        new_port = relay.port,
                                        "remote relay moved; forwarding to its new port"
                                    );
                                }
                                generation += 1;
                                current = Arc::new(ActiveLink { link: current.link.clone(), relay, generation });
                                let _ = self.state.send(LinkState::Up(current.clone()));
                            }
                            Err(e) => tracing::debug!(error = %e, "remote relay not found (yet)"),
                        }
                    }
                }
            }
            let label = current.link.label().to_owned();
            tracing::warn!(target = %label, "SSH link lost; reconnecting");
            drop(current);

            // Down: rebuild with backoff.
            let mut delay = BACKOFF_START;
            let mut attempt = 0u32;
            let mut last_error: Option<Arc<str>> = None;
            let (link, relay, new_closed) = loop {
                attempt += 1;
                let _ = self.state.send(LinkState::Down {
                    attempt,
                    error: last_error.clone(),
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown_requested(&mut self.shutdown) => {
                        let _ = self.state.send(LinkState::Closed);
                        return;
                    }
                }
                // A server that accepts TCP and then says nothing must not
                // stall the reconnect loop.
                let attempt_result = tokio::time::timeout(
                    RECONNECT_TIMEOUT,
                    establish(&self.connector, &self.discovery_path),
                );
                let result = tokio::select! {
                    r = attempt_result => r.unwrap_or_else(|_| Err(TunnelError::Handshake {
                        target: label.clone(),
                        reason: format!("no answer within {RECONNECT_TIMEOUT:?}"),
                    })),
                    _ = shutdown_requested(&mut self.shutdown) => {
                        let _ = self.state.send(LinkState::Closed);
                        return;
                    }
                };
                match result {
                    Ok(up) => break up,
                    Err(e) if e.is_permanent() => {
                        tracing::error!(target = %label, step = %e.step(), error = %e, "tunnel stopped: this will not fix itself");
                        let _ = self.state.send(LinkState::Failed(Arc::new(e)));
                        return;
                    }
                    Err(e) => {
                        delay = (delay * 2).min(BACKOFF_MAX);
                        tracing::warn!(target = %label, step = %e.step(), error = %e, retry_in = ?delay, "reconnect failed");
                        last_error = Some(e.to_string().into());
                    }
                }
            };
            tracing::info!(target = %label, remote_port = relay.port, attempt, "SSH link re-established");
            generation += 1;
            current = Arc::new(ActiveLink {
                link,
                relay,
                generation,
            });
            closed = new_closed;
            let _ = self.state.send(LinkState::Up(current.clone()));
        }
    }
}

/// Completes when shutdown is asked for, or when the `Tunnel` is gone.
pub(crate) async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}
