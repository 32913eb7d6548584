//! The session list as windows see it: its rows ([`Pipeline::summary`]),
//! the `sessions` events that push each change to every stream, and the
//! titles a new session gets from its first exchange.

use std::sync::Arc;

use loopchat_proto::{Event, EventBody, SessionChange, SessionSummary};
use tokio::sync::broadcast;

use super::{Inner, Pipeline};
use crate::agent::{AgentEvent, AgentRequest, ChatTurn};
use crate::store::{SessionEntry, Transcript};

/// `sessions` events a slow stream may fall behind by before it is told to
/// fetch the list again (`resync`).
pub(super) const LIST_EVENTS: usize = 256;
/// Longest title taken from a first message or written by the agent.
pub const TITLE_CHARS: usize = 80;
const PREVIEW_CHARS: usize = 140;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// How often the archive is swept for sessions past their time.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60 * 60);
/// How long the agent may take to write a title.
const AUTO_TITLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// A receiver of `sessions` events; a lag becomes one `resync`.
pub struct ListSubscription {
    rx: broadcast::Receiver<Arc<Event>>,
}

impl ListSubscription {
    /// Cancel-safe.
    pub async fn next(&mut self) -> Option<Arc<Event>> {
        match self.rx.recv().await {
            Ok(e) => Some(e),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Arc::new(Event {
                seq: 0,
                body: EventBody::Sessions {
                    change: SessionChange::Resync,
                    key: None,
                    session: None,
                },
            })),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

/// A title from a message or the agent's answer: its first non-blank line,
/// without control characters or the quotes and marks a model wraps titles
/// in, cut at [`TITLE_CHARS`] on a char boundary. `None` when nothing is left.
pub fn title_from(text: &str) -> Option<String> {
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    let clean: String = line
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let clean = clean
        .trim_matches(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '*' | '#' | '`'))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if clean.is_empty() {
        return None;
    }
    Some(match clean.char_indices().nth(TITLE_CHARS) {
        Some((i, _)) => format!("{}…", clean[..i].trim_end()),
        None => clean,
    })
}

pub(super) fn preview(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(PREVIEW_CHARS) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

impl Pipeline {
    /// The list's row for `entry`. Blocking (reads the transcript's end
    /// and header).
    pub fn summary(&self, e: SessionEntry) -> SessionSummary {
        self.inner.summary(e)
    }

    /// Every session, pinned first, then most recently updated.
    pub fn session_list(&self) -> Vec<SessionSummary> {
        self.inner
            .store
            .sessions()
            .into_iter()
            .map(|e| self.inner.summary(e))
            .collect()
    }

    /// Follows the session list's changes from now on.
    pub fn subscribe_list(&self) -> ListSubscription {
        ListSubscription {
            rx: self.inner.list_events.subscribe(),
        }
    }

    /// Tells every stream that `key`'s row changed (or, for
    /// [`SessionChange::Archived`], is gone).
    pub fn list_changed(&self, key: &str, change: SessionChange) {
        self.inner.list_changed(key, change);
    }

    /// How long archived sessions are kept (days; 0: until purged by hand).
    pub fn set_archive_keep_days(&self, days: u64) {
        self.inner
            .archive_keep_days
            .store(days, std::sync::atomic::Ordering::Relaxed);
    }

    /// When an archived session archived at `archived_at` is purged.
    pub fn purge_at(&self, archived_at: i64) -> Option<i64> {
        let days = self
            .inner
            .archive_keep_days
            .load(std::sync::atomic::Ordering::Relaxed);
        (days > 0).then(|| archived_at.saturating_add((days as i64).saturating_mul(DAY_MS)))
    }

    /// The archived sessions as `GET /webchat/archived` lists them.
    pub fn archived_list(
        &self,
    ) -> Result<Vec<loopchat_proto::ArchivedSession>, crate::store::ArchiveError> {
        Ok(self
            .inner
            .store
            .archived()?
            .into_iter()
            .map(|(id, e)| self.archived_row(id, &e))
            .collect())
    }

    pub fn archived_row(
        &self,
        session_id: String,
        e: &crate::store::ArchivedEntry,
    ) -> loopchat_proto::ArchivedSession {
        loopchat_proto::ArchivedSession {
            key: e.key.clone(),
            session_id,
            updated_at: e.updated_at(),
            archived_at: e.archived_at,
            purge_at: self.purge_at(e.archived_at),
            title: e.title.clone(),
        }
    }

    /// Purges what was archived longer ago than the configured days.
    pub async fn sweep_archive_once(&self) {
        let Some(keep) = self.purge_at(0) else {
            return;
        };
        let cutoff = crate::clock::now_millis() - keep;
        match self
            .inner
            .store
            .purge(crate::store::Purge::ArchivedBefore(cutoff))
            .await
        {
            Ok(0) | Err(crate::store::ArchiveError::Foreign) => {}
            Ok(n) => tracing::info!(purged = n, "purged archived sessions past their time"),
            Err(e) => tracing::warn!(error = %e, "could not purge the archive"),
        }
    }

    /// [`Pipeline::sweep_archive_once`] every [`SWEEP_EVERY`] until `stop`
    /// (the start's sweep is the server's, before it listens).
    pub async fn sweep_archive(self, stop: tokio_util::sync::CancellationToken) {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.sweep_archive_once().await;
        }
    }

    /// Whether the agent writes a new session's title after its first reply.
    pub fn set_auto_title(&self, on: bool) {
        self.inner
            .auto_title
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Inner {
    pub(super) fn summary(&self, e: SessionEntry) -> SessionSummary {
        let transcript = self.store.transcript(&e.session_id).ok();
        let preview = transcript
            .as_ref()
            .and_then(|t| t.latest(1).ok())
            .and_then(|p| {
                p.messages
                    .last()
                    .map(|m| preview(&m.message.content.text()))
            });
        let title = transcript.and_then(|t| t.name().ok().flatten());
        let cwd = self.store.cwd(&e);
        let thinking_level = e.thinking();
        SessionSummary {
            key: e.key,
            session_id: e.session_id,
            updated_at: e.updated_at,
            thinking_level,
            preview,
            title,
            cwd,
            pinned: e.pinned,
        }
    }

    pub(super) fn list_changed(&self, key: &str, change: SessionChange) {
        // Nobody listening: no row to build.
        if self.list_events.receiver_count() == 0 {
            return;
        }
        let session = match change {
            SessionChange::Archived | SessionChange::Resync => None,
            _ => match self.store.session(key) {
                Some(e) => Some(self.summary(e)),
                None => return,
            },
        };
        let _ = self.list_events.send(Arc::new(Event {
            seq: 0,
            body: EventBody::Sessions {
                change,
                key: Some(key.to_owned()),
                session,
            },
        }));
    }

    /// After the first reply of a session titled from its first message:
    /// asks the agent for a short title in the background and writes it
    /// unless the session was renamed meanwhile. Failures are only logged.
    pub(super) fn auto_title(
        self: &Arc<Self>,
        key: &str,
        transcript: Arc<Transcript>,
        default_title: String,
        user: String,
        reply: String,
    ) {
        if !self.auto_title.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let inner = self.clone();
        let key = key.to_owned();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let prompt = format!(
                "Write a title of at most six words for the conversation below. Answer with the title only.\n\nUser: {user}\n\nAssistant: {reply}"
            );
            let mut stream = inner.agent.run(AgentRequest {
                session_key: key.clone(),
                run_id: uuid::Uuid::new_v4().to_string(),
                history: vec![ChatTurn {
                    role: loopchat_proto::Role::User,
                    text: prompt,
                    images: Vec::new(),
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                    data_images: Vec::new(),
                }],
                thinking: loopchat_proto::ThinkingLevel::Off,
                model: None,
                tools: Arc::from(Vec::new()),
                tools_ended_at: None,
                transcript: None,
                abort: inner.hard_stop.child_token(),
            });
            let mut text = String::new();
            let collected = tokio::time::timeout(AUTO_TITLE_TIMEOUT, async {
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(AgentEvent::Delta(d)) => text.push_str(&d),
                        Ok(_) => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
                Ok(())
            })
            .await;
            let title = match collected {
                Ok(Ok(())) => title_from(&text),
                Ok(Err(e)) => {
                    tracing::warn!(session = %key, error = %e, "the agent could not write a title");
                    return;
                }
                Err(_) => {
                    tracing::warn!(session = %key, "the agent took too long to write a title");
                    return;
                }
            };
            let Some(title) = title else { return };
            let written = {
                let transcript = transcript.clone();
                tokio::task::spawn_blocking(move || {
                    transcript.rename_if(Some(default_title.as_str()), &title)
                })
                .await
            };
            match written {
                Ok(Ok(Some(generation))) => {
                    if let Err(e) = transcript.durable(generation).await {
                        tracing::warn!(session = %key, error = %e, "the agent's title could not be made durable");
                    }
                    inner.list_changed(&key, SessionChange::Updated);
                }
                // Renamed meanwhile: the user's name wins.
                Ok(Ok(None)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(session = %key, error = %e, "the agent's title could not be written")
                }
                Err(e) => {
                    tracing::warn!(session = %key, error = %e, "the agent's title could not be written")
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_one_bounded_line() {
        assert_eq!(
            title_from("  \n  Hello   world \nmore").as_deref(),
            Some("Hello world")
        );
        assert_eq!(
            title_from("\"Rust lifetimes\"").as_deref(),
            Some("Rust lifetimes")
        );
        assert_eq!(title_from(" \n\t ").as_deref(), None);
        let long = "é".repeat(200);
        let t = title_from(&long).unwrap();
        assert_eq!(t.chars().count(), TITLE_CHARS + 1);
        assert!(t.ends_with('…'));
        assert_eq!(title_from("a\u{7}b").as_deref(), Some("a b"));
    }
}
