//! Which UI windows show which session, and whether they have focus.
//!
//! Windows report it with `POST /webchat/presence`; the relay only reads it
//! to decide whether a finished run deserves a "reply ready" notification.
//! A report lapses after [`TTL`] without a refresh, and as soon as the last
//! event stream opened with the same `client=` id closes (a closed tab must
//! not keep suppressing notifications for 90 s).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a presence report holds without a refresh.
pub const TTL: Duration = Duration::from_secs(90);
/// Bound on tracked windows; beyond it, lapsed reports are swept.
const MAX_CLIENTS: usize = 4096;

#[derive(Default)]
struct Window {
    session: Option<String>,
    focused: bool,
    /// Last report; `None` while only a stream is open.
    reported: Option<Instant>,
    /// Open event streams with this client id.
    streams: usize,
}

pub struct Presence {
    ttl: Duration,
    windows: Mutex<HashMap<String, Window>>,
}

impl Default for Presence {
    fn default() -> Self {
        Self::new(TTL)
    }
}

impl Presence {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            windows: Mutex::new(HashMap::new()),
        }
    }

    fn windows(&self) -> parking_lot::MutexGuard<'_, HashMap<String, Window>> {
        self.windows.lock()
    }

    /// Records a window's report.
    pub fn report(&self, client: &str, session: Option<String>, focused: bool, now: Instant) {
        let mut windows = self.windows();
        if windows.len() >= MAX_CLIENTS && !windows.contains_key(client) {
            let ttl = self.ttl;
            windows.retain(|_, w| w.streams > 0 || w.reported.is_some_and(|t| now - t < ttl));
        }
        let w = windows.entry(client.to_owned()).or_default();
        w.session = session;
        w.focused = focused;
        w.reported = Some(now);
    }

    /// Is some window focused on `session` right now?
    pub fn is_focused(&self, session: &str, now: Instant) -> bool {
        self.windows().values().any(|w| {
            w.focused
                && w.session.as_deref() == Some(session)
                && w.reported
                    .is_some_and(|t| now.saturating_duration_since(t) < self.ttl)
        })
    }

    /// Ties the window `client` to an open stream: when the last of its
    /// streams closes (the lease is dropped), its report is forgotten.
    pub fn attach(self: &Arc<Self>, client: &str) -> PresenceLease {
        self.windows().entry(client.to_owned()).or_default().streams += 1;
        PresenceLease {
            presence: self.clone(),
            client: client.to_owned(),
        }
    }
}

/// Held by an event stream opened with `client=`; see [`Presence::attach`].
pub struct PresenceLease {
    presence: Arc<Presence>,
    client: String,
}

impl Drop for PresenceLease {
    fn drop(&mut self) {
        let mut windows = self.presence.windows();
        if let Some(w) = windows.get_mut(&self.client) {
            w.streams = w.streams.saturating_sub(1);
            if w.streams == 0 {
                windows.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn focus_lapses_after_the_ttl_and_when_streams_close() {
        let p = Arc::new(Presence::default());
        let t0 = Instant::now();
        assert!(!p.is_focused("a", t0));
        p.report("tab1", Some("a".into()), true, t0);
        assert!(p.is_focused("a", t0));
        assert!(!p.is_focused("b", t0));
        assert!(p.is_focused("a", t0 + Duration::from_secs(89)));
        assert!(!p.is_focused("a", t0 + Duration::from_secs(91)), "lapsed");
        p.report("tab1", Some("a".into()), false, t0);
        assert!(!p.is_focused("a", t0), "blurred");

        let first = p.attach("tab2");
        let second = p.attach("tab2");
        p.report("tab2", Some("a".into()), true, t0);
        drop(first);
        assert!(p.is_focused("a", t0), "one stream still open");
        drop(second);
        assert!(!p.is_focused("a", t0), "forgotten with its last stream");
    }
}
