//! The local end of the tunnel: a listener on 127.0.0.1 (ephemeral port,
//! bound once for the life of the tunnel so the page's URL never changes),
//! each accepted connection carried in a `direct-tcpip` channel to the
//! relay's port on the remote side.
//!
//! A connection that arrives while the link is down waits for it (the page
//! reconnecting after sleep should just work), but only for a bounded time:
//! a browser must not hang forever on a tunnel that is not coming back.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::supervisor::{LinkState, shutdown_requested};

/// How long a connection waits for the link (or for the relay to come back)
/// before it is closed.
pub(crate) const LINK_WAIT: Duration = Duration::from_secs(20);
/// How long to wait for a rediscovery after the relay's port refused.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Copy buffers: large enough that bulk transfers are not syscall-bound.
const BUFFER: usize = 256 * 1024;

pub(crate) async fn serve(
    listener: TcpListener,
    state: watch::Receiver<LinkState>,
    rediscover: mpsc::Sender<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown_requested(&mut shutdown) => return,
        };
        match accepted {
            Ok((socket, peer)) => {
                tokio::spawn(carry(socket, peer, state.clone(), rediscover.clone()));
            }
            Err(e) => {
                // EMFILE and friends: pause rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Carries one local connection to the remote relay.
async fn carry(
    mut socket: TcpStream,
    peer: SocketAddr,
    mut state: watch::Receiver<LinkState>,
    rediscover: mpsc::Sender<u64>,
) {
    let _ = socket.set_nodelay(true);
    let deadline = Instant::now() + LINK_WAIT;
    let channel = loop {
        let current = state.borrow_and_update().clone();
        match current {
            LinkState::Up(active) => {
                // Bounded too: on a link that died silently (sleep) the
                // open would hang until keepalives notice.
                let open = active.link.target().channel_open_direct_tcpip(
                    "127.0.0.1",
                    u32::from(active.relay.port),
                    peer.ip().to_string(),
                    u32::from(peer.port()),
                );
                match tokio::time::timeout_at(deadline, open).await {
                    Err(_) => {
                        tracing::info!(%peer, "closing a connection that waited {LINK_WAIT:?} for the tunnel");
                        return;
                    }
                    Ok(Ok(channel)) => break channel,
                    Ok(Err(e)) => {
                        // The relay may have restarted elsewhere: ask for
                        // the discovery file to be read again, then retry.
                        tracing::debug!(port = active.relay.port, error = %e, "relay port refused; asking for rediscovery");
                        let _ = rediscover.try_send(active.generation);
                        let until = (Instant::now() + RETRY_PAUSE).min(deadline);
                        let _ = tokio::time::timeout_at(until, state.changed()).await;
                    }
                }
            }
            LinkState::Down { .. } => {
                if tokio::time::timeout_at(deadline, state.changed())
                    .await
                    .is_ok_and(|r| r.is_err())
                {
                    return;
                }
            }
            LinkState::Failed(_) | LinkState::Closed => return,
        }
        if Instant::now() >= deadline {
            tracing::info!(%peer, "closing a connection that waited {LINK_WAIT:?} for the tunnel");
            return;
        }
    };
    let mut stream = channel.into_stream();
    match tokio::io::copy_bidirectional_with_sizes(&mut socket, &mut stream, BUFFER, BUFFER).await {
        Ok((up, down)) => tracing::trace!(%peer, up, down, "connection closed"),
        Err(e) => tracing::debug!(%peer, error = %e, "connection ended"),
    }
}
