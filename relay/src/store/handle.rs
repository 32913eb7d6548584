//! One session as a turn uses it.

use std::sync::Arc;

use loopchat_proto::ThinkingLevel;

use super::{SessionEntry, Store, StoreError, Transcript};

/// A session's entry and open transcript, taken from the store once per
/// turn: the turn's steps neither look its key up again nor derive its
/// entry again from the raw index.
pub struct SessionHandle {
    store: Store,
    entry: SessionEntry,
    transcript: Arc<Transcript>,
}

impl Store {
    /// The session for `key`, created (and durable in the index) if missing
    /// as by [`Store::get_or_create`], with its transcript open.
    pub async fn session_handle(&self, key: &str) -> Result<SessionHandle, StoreError> {
        let entry = self.get_or_create(key).await?;
        let transcript = self.transcript(&entry.session_id)?;
        Ok(SessionHandle {
            store: self.clone(),
            entry,
            transcript,
        })
    }
}

impl SessionHandle {
    pub fn session_id(&self) -> &str {
        &self.entry.session_id
    }

    pub fn transcript(&self) -> &Arc<Transcript> {
        &self.transcript
    }

    /// The level a turn uses: the one it asks for, else the session's.
    pub fn thinking(&self, asked: Option<ThinkingLevel>) -> ThinkingLevel {
        asked.unwrap_or_else(|| self.entry.thinking())
    }

    /// Records the turn's activity, and the level it asked for, in the index
    /// (see [`Store::touch`]).
    pub fn touch(&self, updated_at: i64, thinking_level: Option<&str>) {
        self.store
            .touch(&self.entry.key, updated_at, thinking_level);
    }
}
