//! The live streams open right now, by kind and by token, for
//! `GET /webchat/status`. Each stream holds a [`LiveGuard`]; the count goes
//! down when the stream's state is dropped, whatever ended it (the window
//! closed, a missed pong, a write failure, a revoked token, shutdown).

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use loopchat_proto::{ConnectionKinds, LiveConnections};

use crate::credentials::Caller;

/// How a stream reaches its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `/webchat/events` or a streaming rpc.
    Sse,
    WebSocket,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sse,
    WebSocket,
    Shell,
    Cli,
}

/// The User-Agent product tokens of loopchat's own clients. A browser
/// cannot forge a different kind for anything but its own count, and the
/// counts carry no authority, so a header is enough.
const SHELL_AGENT: &str = "loopchat-shell/";
const CLI_AGENT: &str = "loopchat/";

fn kind(headers: &HeaderMap, transport: Transport) -> Kind {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if agent.starts_with(SHELL_AGENT) {
        Kind::Shell
    } else if agent.starts_with(CLI_AGENT) {
        Kind::Cli
    } else {
        match transport {
            Transport::Sse => Kind::Sse,
            Transport::WebSocket => Kind::WebSocket,
        }
    }
}

fn token_name(caller: &Caller) -> String {
    match caller {
        Caller::Main => "main".to_owned(),
        Caller::Scoped { id, .. } => id.clone(),
    }
}

/// The counts; shared by every stream.
#[derive(Debug, Default)]
pub struct LiveStreams {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    kinds: ConnectionKinds,
    tokens: BTreeMap<String, u64>,
}

impl Counts {
    fn slot(&mut self, kind: Kind) -> &mut u64 {
        match kind {
            Kind::Sse => &mut self.kinds.sse,
            Kind::WebSocket => &mut self.kinds.websocket,
            Kind::Shell => &mut self.kinds.shell,
            Kind::Cli => &mut self.kinds.cli,
        }
    }
}

impl LiveStreams {
    /// Counts a stream in until the guard is dropped.
    pub fn open(
        self: &Arc<Self>,
        headers: &HeaderMap,
        transport: Transport,
        caller: &Caller,
    ) -> LiveGuard {
        let guard = LiveGuard {
            live: self.clone(),
            kind: kind(headers, transport),
            token: token_name(caller),
        };
        let mut c = self.lock();
        *c.slot(guard.kind) += 1;
        *c.tokens.entry(guard.token.clone()).or_default() += 1;
        guard
    }

    pub fn snapshot(&self) -> LiveConnections {
        let c = self.lock();
        let k = &c.kinds;
        LiveConnections {
            total: k.sse + k.websocket + k.shell + k.cli,
            by_kind: k.clone(),
            by_token: c.tokens.clone(),
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Counts> {
        // Counters only: a panic elsewhere leaves them consistent.
        self.counts.lock()
    }
}

/// One open stream, counted in while it lives.
#[derive(Debug)]
pub struct LiveGuard {
    live: Arc<LiveStreams>,
    kind: Kind,
    token: String,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut c = self.live.lock();
        let slot = c.slot(self.kind);
        *slot = slot.saturating_sub(1);
        if let Some(n) = c.tokens.get_mut(&self.token) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.tokens.remove(&self.token);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_guards_and_user_agents() {
        let live = Arc::new(LiveStreams::default());
        let mut shell = HeaderMap::new();
        shell.insert(header::USER_AGENT, "loopchat-shell/0.1".parse().unwrap());
        let a = live.open(&HeaderMap::new(), Transport::Sse, &Caller::Main);
        let b = live.open(&shell, Transport::WebSocket, &Caller::Main);
        let s = live.snapshot();
        assert_eq!((s.total, s.by_kind.sse, s.by_kind.shell), (2, 1, 1));
        assert_eq!(s.by_token.get("main"), Some(&2));
        drop(a);
        drop(b);
        let s = live.snapshot();
        assert_eq!(s.total, 0);
        assert!(s.by_token.is_empty());
    }
}
