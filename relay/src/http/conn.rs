//! The accept loop: how many connections are served at once, how long a
//! client may dawdle over its headers, and the graceful drain on shutdown.
//!
//! `axum::serve` has neither a header-read timeout nor a connection limit,
//! so a handful of slow clients (slowloris) could hold connections open for
//! ever. Here every connection holds a semaphore permit, hyper's timer closes
//! a connection whose headers do not arrive in time (which also bounds idle
//! keep-alive connections), and body reads are bounded by
//! [`super::router`]'s body timeout.
//!
//! A timeout alone still lets anyone on the machine, without a token, keep
//! every slot busy: open more connections than there are slots, send a
//! header byte now and then, reconnect when cut. The owner's request then
//! waits in the backlog for up to a whole header timeout. So each
//! connection says whether it is serving a request or waiting for one
//! (its next request's headers), and when a connection arrives to find
//! every slot taken, one that is waiting is closed to make room: the one
//! that has waited longest for its first request's headers, else the one
//! idle longest between requests. A connection that is serving a request
//! (an event stream, a turn, a body upload) is never closed this way. Once
//! more than three quarters of the slots are taken, new connections also
//! get a shorter header deadline ([`PRESSURE_HEADER_TIMEOUT`]).

use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, TryAcquireError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    /// Largest request head (request line plus headers), bytes; bigger
    /// heads get `431` and the connection closes.
    pub max_header_bytes: usize,
    /// Longest time data the relay sent may stay unacknowledged (or the
    /// peer's window closed) before the kernel drops the connection
    /// (`TCP_USER_TIMEOUT`): a peer that vanished, or stopped reading, on a
    /// live stream is gone within this plus one keep-alive interval.
    pub tcp_user_timeout: Duration,
}

/// The header deadline of connections accepted while more than three
/// quarters of the slots are taken (or the configured one, if shorter).
/// Request heads are a few KiB, sent at once by every real client, even
/// through an SSH tunnel on a slow link.
pub const PRESSURE_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown` is cancelled, then stops
/// accepting and waits for the open connections to finish their requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
) {
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let waiting = Arc::new(Registry::default());
    let connections = TaskTracker::new();
    let mut relaxed = http1::Builder::new();
    relaxed
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes);
    let mut pressed = relaxed.clone();
    pressed.header_read_timeout(limits.header_read_timeout.min(PRESSURE_HEADER_TIMEOUT));
    loop {
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
        // Accepting before a slot is free holds one connection beyond the
        // limit; the rest stay in the kernel's backlog, and only a
        // connection that is actually there makes another one give way.
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(TryAcquireError::Closed) => break,
            Err(TryAcquireError::NoPermits) => {
                if waiting.evict_longest_waiting() {
                    tracing::debug!("all connection slots taken: closed the longest-waiting one");
                }
                // With every slot serving a request, this waits for one to
                // finish, as before.
                tokio::select! {
                    permit = slots.clone().acquire_owned() => match permit {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = shutdown.cancelled() => break,
                }
            }
        };
        // Responses with a streamed body (SSE, chunked JSON) go out in more
        // than one write; with Nagle on, the second waits for the client's
        // delayed ACK and every such request costs milliseconds.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        set_user_timeout(&tcp, limits.tcp_user_timeout);
        let http = if slots.available_permits() < max / 4 {
            &pressed
        } else {
            &relaxed
        };
        let conn = waiting.register();
        let service = {
            let app = TowerToHyperService::new(app.clone());
            let conn = conn.clone();
            hyper::service::service_fn(move |req| call_tracked(app.clone(), conn.clone(), req))
        };
        let connection = http.serve_connection(TokioIo::new(tcp), service);
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection.with_upgrades());
            let result = tokio::select! {
                r = connection.as_mut() => r,
                // Dropping the connection closes the socket; it was waiting
                // for headers, so no request is cut short.
                () = conn.evicted.cancelled() => Ok(()),
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
            conn.deregister();
            drop(permit);
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// The open connections and, for each, whether it is serving a request or
/// waiting for the next one's headers, and since when.
#[derive(Default)]
struct Registry {
    inner: Mutex<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    next_id: u64,
    /// Orders "waiting since": bumped whenever a connection starts waiting.
    clock: u64,
    conns: HashMap<u64, Entry>,
}

struct Entry {
    /// Requests being served (hyper serves one at a time per connection;
    /// a count keeps the bookkeeping right whatever the order of events).
    serving: u32,
    /// When it last started waiting for headers ([`RegistryInner::clock`]).
    waiting_since: u64,
    /// Whether it has ever sent a complete request head. A flood is made of
    /// connections that never do; the owner's idle keep-alive connections
    /// have, so they are closed only when no other one is waiting.
    served: bool,
    evicted: bool,
    close: CancellationToken,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, RegistryInner> {
        self.inner.lock()
    }

    fn register(self: &Arc<Self>) -> ConnHandle {
        let mut inner = self.lock();
        inner.next_id += 1;
        inner.clock += 1;
        let id = inner.next_id;
        let close = CancellationToken::new();
        let waiting_since = inner.clock;
        inner.conns.insert(
            id,
            Entry {
                serving: 0,
                waiting_since,
                served: false,
                evicted: false,
                close: close.clone(),
            },
        );
        ConnHandle {
            registry: self.clone(),
            id,
            evicted: close,
        }
    }

    /// Closes the connection that has waited longest for its first request's
    /// headers, else the one idle longest between requests, if any is
    /// waiting at all; true if one was closed. A scan of at most
    /// `max_connections` entries, only when every slot is taken.
    fn evict_longest_waiting(&self) -> bool {
        let mut inner = self.lock();
        let oldest = inner
            .conns
            .iter_mut()
            .filter(|(_, e)| e.serving == 0 && !e.evicted)
            .min_by_key(|(_, e)| (e.served, e.waiting_since))
            .map(|(_, e)| e);
        match oldest {
            Some(entry) => {
                entry.evicted = true;
                entry.close.cancel();
                true
            }
            None => false,
        }
    }
}

#[derive(Clone)]
struct ConnHandle {
    registry: Arc<Registry>,
    id: u64,
    evicted: CancellationToken,
}

impl ConnHandle {
    /// Marks the connection as serving a request, unless it has just been
    /// chosen to close: then the request is not run, since its answer could
    /// not be sent.
    fn begin_request(&self) -> Option<Serving> {
        let mut inner = self.registry.lock();
        let entry = inner.conns.get_mut(&self.id)?;
        if entry.evicted {
            return None;
        }
        entry.serving += 1;
        entry.served = true;
        Some(Serving(self.clone()))
    }

    fn deregister(&self) {
        self.registry.lock().conns.remove(&self.id);
    }
}

/// Held by a response's body: while it lives, the connection is serving.
struct Serving(ConnHandle);

impl Drop for Serving {
    fn drop(&mut self) {
        let mut inner = self.0.registry.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some(entry) = inner.conns.get_mut(&self.0.id) {
            entry.serving = entry.serving.saturating_sub(1);
            if entry.serving == 0 {
                entry.waiting_since = now;
            }
        }
    }
}

/// hyper calls the service once a request's headers are complete, which is
/// exactly when a connection stops waiting; it drops the response body once
/// the response is sent, which is when it starts waiting again.
async fn call_tracked(
    app: TowerToHyperService<Router>,
    conn: ConnHandle,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<TrackedBody>, std::convert::Infallible> {
    let Some(serving) = conn.begin_request() else {
        let mut closing = hyper::Response::new(TrackedBody::default());
        *closing.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
        closing.headers_mut().insert(
            hyper::header::CONNECTION,
            hyper::header::HeaderValue::from_static("close"),
        );
        return Ok(closing);
    };
    let response = app.call(req).await?;
    Ok(response.map(|inner| TrackedBody {
        inner,
        _serving: Some(serving),
    }))
}

/// A response body that marks its connection as serving until dropped.
pub struct TrackedBody {
    inner: Body,
    _serving: Option<Serving>,
}

impl Default for TrackedBody {
    fn default() -> Self {
        Self {
            inner: Body::empty(),
            _serving: None,
        }
    }
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `TCP_USER_TIMEOUT` on an accepted socket (Linux; elsewhere the kernel's
/// retransmission limits alone apply).
fn set_user_timeout(tcp: &tokio::net::TcpStream, timeout: Duration) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let ms = libc::c_uint::try_from(timeout.as_millis()).unwrap_or(libc::c_uint::MAX);
        // SAFETY: setsockopt reads `size_of::<c_uint>()` bytes from `&ms`,
        // a live local; the fd is the open socket `tcp` owns.
        let rc = unsafe {
            libc::setsockopt(
                tcp.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_USER_TIMEOUT,
                (&ms as *const libc::c_uint).cast(),
                std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot set TCP_USER_TIMEOUT");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (tcp, timeout);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_that_never_sent_a_head_go_first_and_serving_ones_never() {
        let registry = Arc::new(Registry::default());
        let a = registry.register();
        let b = registry.register();
        let c = registry.register();
        let serving_a = a.begin_request().expect("a serves");
        // b waited longest of those waiting.
        assert!(registry.evict_longest_waiting());
        assert!(b.evicted.is_cancelled() && !a.evicted.is_cancelled());
        assert!(
            b.begin_request().is_none(),
            "an evicted connection serves nothing"
        );
        // a is idle now, and has been for less time than c; c goes first
        // anyway, having never sent a request.
        drop(serving_a);
        let d = registry.register();
        assert!(registry.evict_longest_waiting());
        assert!(c.evicted.is_cancelled() && !a.evicted.is_cancelled());
        assert!(registry.evict_longest_waiting());
        assert!(d.evicted.is_cancelled() && !a.evicted.is_cancelled());
        // Only the idle keep-alive connection is left waiting.
        assert!(registry.evict_longest_waiting());
        assert!(a.evicted.is_cancelled());
        assert!(!registry.evict_longest_waiting(), "nobody is waiting");
        for h in [a, b, c, d] {
            h.deregister();
        }
        assert!(registry.lock().conns.is_empty());
    }
}
