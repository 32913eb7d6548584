//! The session store: the index (`sessions.json`) and one append-only
//! transcript per session, in the Clawdis/pi layout.
//!
//! The store knows nothing of HTTP, events or agents. It guarantees:
//! an append returns a generation that [`Transcript::durable`] turns into
//! "on disk"; a session created here is durable in the index before any
//! message of it can be acknowledged; a missing key always gets a fresh
//! sessionId (never another session's).
//!
//! Other programs may write the same files while the relay runs. The index
//! is read again whenever its stamp on disk changed (before each rewrite, on
//! [`Store::refresh_index`] and before a new session is created), and their
//! changes are merged into the relay's ([`index::merge`]). Transcripts follow
//! the rules in [`transcript`].

mod archive;
mod handle;
mod index;
mod line;
mod source;
mod transcript;
mod upgrade;

use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) use crate::durable::{FlushKind, GroupCommit};
pub use archive::ArchivedEntry;
pub use handle::SessionHandle;
pub(crate) use index::is_safe_session_id;
pub use index::{SessionEntry, index_bytes, parse_index};
pub use line::{
    Entry, Kind, NewMessage, Origin, Parent, SESSION_VERSION, StoredMessage, ToolResultMeta,
    new_entry_id, parse_entry, parse_line, session_info_line, usage_value,
};
pub use source::{Source, SourceError};
pub use transcript::{
    AttachmentBytes, ChangeHook, DEFAULT_WINDOW_BYTES, Decorate, Foreign, ForeignHook, Page,
    Placement, Transcript, TreeSkeleton,
};
pub use upgrade::backup_path;

use index::{Entries, Stamp, read_index, write_atomically_stamped};
use transcript::Shared;

/// The store's errors are the disk's (full, or failed otherwise).
pub use crate::durable::DiskError as StoreError;

/// Why a session could not be archived, restored, purged or pinned.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{0}")]
    NotFound(String),
    /// A restore onto a key that is in use again, and the like.
    #[error("{0}")]
    Conflict(String),
    /// pi's and OpenClaw's folders belong to their tools, which have no
    /// archive or pins: moving their files would make them lose sessions.
    #[error(
        "sessions in a foreign store (--store pi or openclaw) are not archived, restored or pinned by loopchat; use its own tool"
    )]
    Foreign,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Which archived sessions [`Store::purge`] deletes for good.
#[derive(Debug, Clone)]
pub enum Purge {
    One(String),
    All,
    /// Archived before this time (epoch ms).
    ArchivedBefore(i64),
}

/// The index file as the relay last saw it.
struct OnDisk {
    /// `None`: there was no file.
    stamp: Option<Stamp>,
    /// What it held then: the common ancestor for [`index::merge`].
    base: Entries,
}

struct Inner {
    dir: PathBuf,
    index_path: PathBuf,
    /// Held across a whole re-read or rewrite of the index; taken before
    /// `entries`.
    on_disk: Mutex<OnDisk>,
    entries: Mutex<Entries>,
    index_commit: GroupCommit,
    transcripts: Mutex<HashMap<String, Arc<Transcript>>>,
    shared: Shared,
    /// A delayed index write is pending (see [`Store::touch`]).
    flush_scheduled: std::sync::atomic::AtomicBool,
    /// Set for `--store pi`: there is no index, the folder is listed instead.
    pi: Option<Mutex<source::PiFolder>>,
    /// Sessions this run created in a foreign store: the only ones whose
    /// missing transcript the relay may create there.
    created: Mutex<std::collections::HashSet<String>>,
    /// Where deleted sessions go; `None` for a foreign store.
    archive: Option<archive::Paths>,
    /// One archive, restore, purge or pin at a time.
    archive_lock: tokio::sync::Mutex<()>,
}

/// Shared handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl Store {
    /// Opens the store in `dir` (created 0700 if missing).
    pub fn open(dir: &Path, decorate: Decorate) -> Result<Self, StoreError> {
        Self::open_with(dir, decorate, DEFAULT_WINDOW_BYTES)
    }

    /// [`Store::open`], each open transcript keeping at most `window_bytes`
    /// of decoded messages in memory.
    pub fn open_with(
        dir: &Path,
        decorate: Decorate,
        window_bytes: usize,
    ) -> Result<Self, StoreError> {
        crate::home::create_private_dir(dir)?;
        let index_path = dir.join("sessions.json");
        let (mut entries, mut stamp) = read_index(&index_path)?;
        let archive = archive::Paths::new(
            dir.parent()
                .unwrap_or(dir)
                .join(loopchat_proto::home::ARCHIVE_DIR),
        );
        if archive.index.exists() {
            let mut archived = archive.read()?;
            let done = archive::reconcile(&archive, dir, &mut entries, &mut archived);
            // The index first: until the archive's entry is gone, a second
            // crash comes back to the same decision.
            if done.live_changed {
                stamp = Some(write_atomically_stamped(
                    &index_path,
                    &index_bytes(&entries)?,
                )?);
            }
            if done.archive_changed {
                archive.write(&archived)?;
            }
        }
        let mut shared = Shared::new(decorate);
        shared.window_bytes = window_bytes;
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                index_path,
                on_disk: Mutex::new(OnDisk {
                    stamp,
                    base: entries.clone(),
                }),
                entries: Mutex::new(entries),
                index_commit: GroupCommit::new(FlushKind::Rewritten),
                transcripts: Mutex::new(HashMap::new()),
                shared,
                flush_scheduled: Default::default(),
                pi: None,
                created: Default::default(),
                archive: Some(archive),
                archive_lock: Default::default(),
            }),
        })
    }

    /// Opens the sessions of `source`; `home_sessions` is the loopchat
    /// home's, used for [`Source::Home`]. A foreign store is opened where it
    /// is and nothing is written on opening it: its folder must exist and,
    /// for OpenClaw, its `sessions.json` must parse.
    pub fn open_source(
        source: &Source,
        home_sessions: &Path,
        decorate: Decorate,
        window_bytes: usize,
    ) -> Result<Self, StoreError> {
        let (dir, pi) = match source {
            Source::Home => return Self::open_with(home_sessions, decorate, window_bytes),
            Source::Pi(dir) => (dir, true),
            Source::OpenClaw(dir) => (dir, false),
        };
        source::check_foreign_dir(dir)?;
        let index_path = dir.join("sessions.json");
        let mut folder = source::PiFolder::default();
        let (entries, stamp) = if pi {
            (folder.scan(dir)?, None)
        } else {
            match read_index(&index_path)? {
                (_, None) => {
                    return Err(StoreError::Io(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!(
                            "{} has no sessions.json: not an OpenClaw sessions folder",
                            dir.display()
                        ),
                    )));
                }
                read => read,
            }
        };
        let mut shared = Shared::new(decorate);
        shared.window_bytes = window_bytes;
        shared.foreign_store = true;
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                index_path,
                on_disk: Mutex::new(OnDisk {
                    stamp,
                    base: entries.clone(),
                }),
                entries: Mutex::new(entries),
                index_commit: GroupCommit::new(FlushKind::Rewritten),
                transcripts: Mutex::new(HashMap::new()),
                shared,
                flush_scheduled: Default::default(),
                pi: pi.then(|| Mutex::new(folder)),
                created: Default::default(),
                archive: None,
                archive_lock: Default::default(),
            }),
        })
    }

    /// The folder the sessions are in.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The `cwd` of a session as its owning tool shows it: its transcript
    /// header's. Blocking (reads the file's first line).
    pub fn cwd(&self, entry: &SessionEntry) -> Option<String> {
        if let Some(cwd) = self
            .inner
            .entries
            .lock()
            .get(&entry.key)
            .and_then(|raw| raw.get("cwd"))
            .and_then(serde_json::Value::as_str)
        {
            return Some(cwd.to_owned());
        }
        source::read_header(&self.inner.transcript_path(&entry.session_id)).and_then(|h| h.cwd)
    }

    /// Sets who is told of what other programs do to transcripts (once;
    /// later calls are ignored).
    pub fn on_foreign(&self, hook: ForeignHook) {
        let _ = self.inner.shared.foreign.set(hook);
    }

    /// Sets who is told that a transcript's file has new lines or was
    /// replaced (once; later calls are ignored).
    pub fn on_change(&self, hook: ChangeHook) {
        let _ = self.inner.shared.changed.set(hook);
    }

    /// Where the transcript of `session_id` is (or would be), for readers
    /// that follow the file on their own (the search index).
    pub fn transcript_path(&self, session_id: &str) -> Option<PathBuf> {
        index::is_safe_session_id(session_id).then(|| self.inner.transcript_path(session_id))
    }

    /// Sets where an old transcript's images are read from when it is
    /// upgraded to pi's format (once; later calls are ignored).
    pub fn on_attachment_bytes(&self, read: AttachmentBytes) {
        let _ = self.inner.shared.attachment_bytes.set(read);
    }

    /// The keys whose entry names `session_id`.
    pub fn keys_of(&self, session_id: &str) -> Vec<String> {
        let entries = self.inner.entries.lock();
        entries
            .iter()
            .filter(|(_, raw)| {
                raw.get("sessionId").and_then(serde_json::Value::as_str) == Some(session_id)
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Reads the index again if another program changed it on disk, merging
    /// its changes into the relay's. Blocking (file I/O). True when it had
    /// changed.
    pub fn refresh_index(&self) -> Result<bool, StoreError> {
        let mut on_disk = self.inner.on_disk.lock();
        Ok(self.inner.refresh_index_locked(&mut on_disk)?)
    }

    pub fn index_path(&self) -> &Path {
        &self.inner.index_path
    }

    pub fn session(&self, key: &str) -> Option<SessionEntry> {
        let entries = self.inner.entries.lock();
        entries
            .get(key)
            .and_then(|raw| SessionEntry::from_raw(key, raw))
    }

    /// Every readable session, newest first.
    pub fn sessions(&self) -> Vec<SessionEntry> {
        let entries = self.inner.entries.lock();
        let mut list: Vec<_> = entries
            .iter()
            .filter_map(|(k, raw)| SessionEntry::from_raw(k, raw))
            .collect();
        list.sort_by(|a, b| {
            b.pinned
                .cmp(&a.pinned)
                .then(b.updated_at.cmp(&a.updated_at))
                .then(a.key.cmp(&b.key))
        });
        list
    }

    /// Pins `key` to the top of the list (or unpins it), durably.
    pub async fn set_pinned(&self, key: &str, pinned: bool) -> Result<SessionEntry, ArchiveError> {
        if self.inner.archive.is_none() {
            return Err(ArchiveError::Foreign);
        }
        let _one = self.inner.archive_lock.lock().await;
        let generation = {
            let mut entries = self.inner.entries.lock();
            let raw = entries
                .get_mut(key)
                .filter(|raw| SessionEntry::from_raw(key, raw).is_some())
                .ok_or_else(|| ArchiveError::NotFound(format!("no session {key:?}")))?;
            if pinned {
                raw.insert("pinned".into(), true.into());
            } else {
                raw.remove("pinned");
            }
            self.inner.index_commit.bump()
        };
        self.persist_index(generation).await?;
        self.session(key)
            .ok_or_else(|| ArchiveError::NotFound(format!("no session {key:?}")))
    }

    /// Moves `key` to the archive (see [`archive`] for the order of the
    /// steps). The caller makes sure no turn of it runs meanwhile.
    pub async fn archive(&self, key: &str) -> Result<(String, ArchivedEntry), ArchiveError> {
        if self.inner.archive.is_none() {
            return Err(ArchiveError::Foreign);
        }
        let _one = self.inner.archive_lock.lock().await;
        let (entry, raw) = {
            let entries = self.inner.entries.lock();
            let raw = entries.get(key).cloned();
            match raw.and_then(|raw| Some((SessionEntry::from_raw(key, &raw)?, raw))) {
                Some(found) => found,
                None => return Err(ArchiveError::NotFound(format!("no session {key:?}"))),
            }
        };
        let store = self.clone();
        let session_id = entry.session_id.clone();
        let key_owned = key.to_owned();
        let archived = tokio::task::spawn_blocking(move || -> Result<_, ArchiveError> {
            let paths = store.inner.archive.as_ref().ok_or(ArchiveError::Foreign)?;
            let from = store.inner.transcript_path(&session_id);
            let file = from.exists();
            let title = if file {
                store
                    .transcript(&session_id)
                    .and_then(|t| t.name())
                    .ok()
                    .flatten()
            } else {
                None
            };
            let mut archive = paths.read().map_err(StoreError::from)?;
            let archived = ArchivedEntry {
                key: key_owned,
                archived_at: crate::clock::now_millis(),
                title,
                file,
                entry: raw,
            };
            archive.insert(session_id.clone(), archived.clone());
            paths.write(&archive).map_err(StoreError::from)?;
            // Later reads open the file where it is then.
            store.inner.transcripts.lock().remove(&session_id);
            if file {
                archive::move_durably(&from, &paths.transcript(&session_id))
                    .map_err(StoreError::from)?;
            }
            Ok(archived)
        })
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e)))??;
        let generation = {
            let mut entries = self.inner.entries.lock();
            if entries
                .get(key)
                .and_then(|raw| raw.get("sessionId"))
                .and_then(serde_json::Value::as_str)
                == Some(entry.session_id.as_str())
            {
                entries.remove(key);
            }
            self.inner.index_commit.bump()
        };
        // Failing here leaves the entry on disk: the next start sees the
        // transcript in the archive and removes it (archive::reconcile).
        self.persist_index(generation).await?;
        Ok((entry.session_id, archived))
    }

    /// The archived sessions, most recently archived first, by sessionId.
    pub fn archived(&self) -> Result<Vec<(String, ArchivedEntry)>, ArchiveError> {
        let paths = self.inner.archive.as_ref().ok_or(ArchiveError::Foreign)?;
        let mut list: Vec<_> = paths
            .read()
            .map_err(StoreError::from)?
            .into_iter()
            .collect();
        list.sort_by(|a, b| b.1.archived_at.cmp(&a.1.archived_at).then(a.0.cmp(&b.0)));
        Ok(list)
    }

    /// Puts an archived session back under its key, its transcript
    /// byte for byte as it was.
    pub async fn restore(&self, session_id: &str) -> Result<SessionEntry, ArchiveError> {
        if self.inner.archive.is_none() {
            return Err(ArchiveError::Foreign);
        }
        let _one = self.inner.archive_lock.lock().await;
        let store = self.clone();
        let id = session_id.to_owned();
        let archived = tokio::task::spawn_blocking(move || -> Result<_, ArchiveError> {
            let paths = store.inner.archive.as_ref().ok_or(ArchiveError::Foreign)?;
            let archive = paths.read().map_err(StoreError::from)?;
            let archived = archive
                .get(&id)
                .cloned()
                .ok_or_else(|| ArchiveError::NotFound(format!("no archived session {id:?}")))?;
            if store.session(&archived.key).is_some() {
                return Err(ArchiveError::Conflict(format!(
                    "session {:?} exists again: archive or rename that one first",
                    archived.key
                )));
            }
            let to = store.inner.dir.join(format!("{id}.jsonl"));
            if archived.file {
                if to.exists() {
                    return Err(ArchiveError::Conflict(format!(
                        "{} exists: not overwritten",
                        to.display()
                    )));
                }
                archive::move_durably(&paths.transcript(&id), &to).map_err(StoreError::from)?;
            }
            Ok(archived)
        })
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e)))??;
        let generation = {
            let mut entries = self.inner.entries.lock();
            entries.insert(archived.key.clone(), archived.entry.clone());
            self.inner.index_commit.bump()
        };
        // Failing here leaves the archive's entry: the next start sees the
        // transcript back in the sessions folder and finishes the restore.
        self.persist_index(generation).await?;
        let store = self.clone();
        let id = session_id.to_owned();
        tokio::task::spawn_blocking(move || -> Result<(), ArchiveError> {
            let paths = store.inner.archive.as_ref().ok_or(ArchiveError::Foreign)?;
            let mut archive = paths.read().map_err(StoreError::from)?;
            archive.remove(&id);
            paths.write(&archive).map_err(StoreError::from)?;
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e)))??;
        self.session(&archived.key)
            .ok_or_else(|| ArchiveError::NotFound(format!("no session {:?}", archived.key)))
    }

    /// Deletes archived sessions for good: each transcript, then its entry.
    /// Returns how many went.
    pub async fn purge(&self, which: Purge) -> Result<usize, ArchiveError> {
        if self.inner.archive.is_none() {
            return Err(ArchiveError::Foreign);
        }
        let _one = self.inner.archive_lock.lock().await;
        let store = self.clone();
        tokio::task::spawn_blocking(move || -> Result<usize, ArchiveError> {
            let paths = store.inner.archive.as_ref().ok_or(ArchiveError::Foreign)?;
            let mut archive = paths.read().map_err(StoreError::from)?;
            let doomed: Vec<String> = match &which {
                Purge::One(id) => {
                    if !archive.contains_key(id) {
                        return Err(ArchiveError::NotFound(format!(
                            "no archived session {id:?}"
                        )));
                    }
                    vec![id.clone()]
                }
                Purge::All => archive.keys().cloned().collect(),
                Purge::ArchivedBefore(t) => archive
                    .iter()
                    .filter(|(_, e)| e.archived_at < *t)
                    .map(|(id, _)| id.clone())
                    .collect(),
            };
            if doomed.is_empty() {
                return Ok(0);
            }
            for id in &doomed {
                match std::fs::remove_file(paths.transcript(id)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(StoreError::from(e).into());
                    }
                    _ => {}
                }
            }
            std::fs::File::open(&paths.dir)
                .and_then(|d| d.sync_all())
                .map_err(StoreError::from)?;
            for id in &doomed {
                archive.remove(id);
            }
            paths.write(&archive).map_err(StoreError::from)?;
            Ok(doomed.len())
        })
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e)))?
    }

    /// The session for `key`, created (and durable in the index) if missing.
    ///
    /// When the index cannot be written (a full disk), the new entry is
    /// taken back out of memory. Otherwise the next turn would find it there,
    /// skip the write and be acknowledged for a session that a crash forgets.
    pub async fn get_or_create(&self, key: &str) -> Result<SessionEntry, StoreError> {
        if let Some(entry) = self.session(key) {
            return Ok(entry);
        }
        // Another program may have just created this key: use its session
        // rather than mint a second one.
        let store = self.clone();
        match tokio::task::spawn_blocking(move || store.refresh_index()).await {
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot read the session index again"),
            Err(e) => tracing::warn!(error = %e, "cannot read the session index again"),
            Ok(Ok(_)) => {}
        }
        let session_id = uuid::Uuid::new_v4().to_string();
        if self.inner.pi.is_some() {
            // pi may have started this very session since the last listing.
            if let Some(entry) = self.session(key) {
                return Ok(entry);
            }
            let store = self.clone();
            let key = key.to_owned();
            return tokio::task::spawn_blocking(move || store.create_pi_session(&key, &session_id))
                .await
                .map_err(|e| StoreError::Io(io::Error::other(e)))?;
        }
        let (generation, previous) = {
            let mut entries = self.inner.entries.lock();
            let previous = entries.get(key).cloned();
            if let Some(entry) = previous
                .as_ref()
                .and_then(|raw| SessionEntry::from_raw(key, raw))
            {
                return Ok(entry);
            }
            let now = crate::clock::now_millis();
            // Keep whatever another tool stored for this key, but a raw
            // entry without a usable sessionId gets a fresh one.
            let raw = entries.entry(key.to_owned()).or_default();
            raw.insert("sessionId".into(), session_id.clone().into());
            raw.insert("updatedAt".into(), now.into());
            raw.entry("thinkingLevel").or_insert_with(|| "off".into());
            (self.inner.index_commit.bump(), previous)
        };
        self.inner.created.lock().insert(session_id.clone());
        if let Err(e) = self.persist_index(generation).await {
            let mut entries = self.inner.entries.lock();
            let ours = entries
                .get(key)
                .and_then(|raw| raw.get("sessionId"))
                .and_then(|id| id.as_str())
                == Some(session_id.as_str());
            if ours {
                match previous {
                    Some(raw) => entries.insert(key.to_owned(), raw),
                    None => entries.remove(key),
                };
            }
            return Err(e);
        }
        self.session(key)
            .ok_or_else(|| StoreError::Io(io::Error::other("session vanished after creation")))
    }

    /// Records activity (and optionally a new thinking level) for `key`.
    ///
    /// Written within a second rather than before the turn is acknowledged:
    /// rewriting the index per turn would double the flushes, and what a
    /// crash can lose here is only list order and a just-changed setting,
    /// never a message. Must be called inside a tokio runtime.
    pub fn touch(&self, key: &str, updated_at: i64, thinking_level: Option<&str>) {
        {
            let mut entries = self.inner.entries.lock();
            if let Some(raw) = entries.get_mut(key) {
                raw.insert("updatedAt".into(), updated_at.into());
                if let Some(level) = thinking_level {
                    raw.insert("thinkingLevel".into(), level.into());
                }
            }
            self.inner.index_commit.bump();
        }
        if !self
            .inner
            .flush_scheduled
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            let store = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                store
                    .inner
                    .flush_scheduled
                    .store(false, std::sync::atomic::Ordering::SeqCst);
                if let Err(e) = store.flush().await {
                    tracing::error!(error = %e, "could not write the session index");
                }
            });
        }
    }

    /// Makes every index change so far durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let generation = self.inner.index_commit.bump();
        self.persist_index(generation).await
    }

    /// True when the sessions are another tool's (`--store pi|openclaw`).
    pub fn is_foreign(&self) -> bool {
        self.inner.shared.foreign_store
    }

    /// A transcript of any version the store reads, as the lines of format
    /// v3 its upgrade would write for `session_id` (see [`upgrade`]).
    pub fn as_v3(&self, old: &[u8], session_id: &str) -> Vec<u8> {
        upgrade::upgraded(old, session_id, &self.inner.shared)
    }

    /// The header line of a new transcript for `session_id`, as the store
    /// starts its own (with this relay's cwd).
    pub fn header_line(&self, session_id: &str, timestamp_ms: i64) -> Vec<u8> {
        line::header_line(session_id, &self.inner.shared.cwd, timestamp_ms)
    }

    /// Sessions made from whole transcripts (an import), under new keys.
    /// Each file is written and synced under its fresh session id, then all
    /// entries reach the index in one durable write. Nothing stays if any
    /// step fails: the files written so far are removed and the entries
    /// taken back out. Only the home's store takes them.
    pub async fn add_sessions(
        &self,
        new: Vec<NewSession>,
    ) -> Result<Vec<SessionEntry>, StoreError> {
        if self.inner.shared.foreign_store {
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "sessions are imported into the loopchat home's store only",
            )));
        }
        let paths: Vec<PathBuf> = new
            .iter()
            .map(|s| self.inner.dir.join(format!("{}.jsonl", s.session_id)))
            .collect();
        let written = {
            let paths = paths.clone();
            let files: Vec<Vec<u8>> = new.iter().map(|s| s.bytes.clone()).collect();
            let dir = self.inner.dir.clone();
            tokio::task::spawn_blocking(move || write_new_files(&dir, &paths, &files))
                .await
                .map_err(|e| StoreError::Io(io::Error::other(e)))?
        };
        written?;
        let generation = {
            let mut entries = self.inner.entries.lock();
            for s in &new {
                let raw = entries.entry(s.key.clone()).or_default();
                raw.insert("sessionId".into(), s.session_id.clone().into());
                raw.insert("updatedAt".into(), s.updated_at.into());
                raw.insert("thinkingLevel".into(), "off".into());
            }
            self.inner.index_commit.bump()
        };
        if let Err(e) = self.persist_index(generation).await {
            let mut entries = self.inner.entries.lock();
            for s in &new {
                entries.remove(&s.key);
            }
            drop(entries);
            for p in &paths {
                let _ = std::fs::remove_file(p);
            }
            return Err(e);
        }
        Ok(new.iter().filter_map(|s| self.session(&s.key)).collect())
    }

    /// A new session in pi's folder, named as pi names it, under `key` for
    /// this run (pi itself knows it by its id, which is its key after a
    /// restart). The file and its header are durable, directory entry
    /// included, before the session is used: pi has no index to make it so.
    fn create_pi_session(&self, key: &str, session_id: &str) -> Result<SessionEntry, StoreError> {
        let cwd = self.inner.shared.cwd.clone();
        let folder = if source::pi_per_cwd(&self.inner.dir) {
            self.inner.dir.join(source::pi_cwd_folder(&cwd))
        } else {
            self.inner.dir.clone()
        };
        // pi's folder for this cwd, if it exists, is left as pi made it.
        match std::fs::DirBuilder::new().mode(0o700).create(&folder) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e.into()),
            _ => {}
        }
        let now = crate::clock::now_millis();
        let path = folder.join(source::pi_file_name(now, session_id));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.write_all(&line::header_line(session_id, &cwd, now))?;
        file.sync_all()?;
        std::fs::File::open(&folder)?.sync_all()?;
        std::fs::File::open(&self.inner.dir)?.sync_all()?;
        if let Some(pi) = &self.inner.pi {
            let mut pi = pi.lock();
            pi.files.insert(session_id.to_owned(), path);
        }
        let mut entries = self.inner.entries.lock();
        let raw = entries.entry(key.to_owned()).or_default();
        raw.insert("sessionId".into(), session_id.into());
        raw.insert("updatedAt".into(), now.into());
        raw.insert("cwd".into(), cwd.into());
        raw.entry("thinkingLevel").or_insert_with(|| "off".into());
        SessionEntry::from_raw(key, raw)
            .ok_or_else(|| StoreError::Io(io::Error::other("session vanished after creation")))
    }

    async fn persist_index(&self, generation: u64) -> Result<(), StoreError> {
        if self.inner.pi.is_some() {
            // No index: each session is its file, durable when created.
            return Ok(());
        }
        let inner = self.inner.clone();
        self.inner
            .index_commit
            .wait(generation, move || {
                let mut on_disk = inner.on_disk.lock();
                // Whatever another program wrote since is merged first, so the
                // rewrite keeps it. Not being able to read it must not stop
                // the relay from making its own sessions durable.
                if let Err(e) = inner.refresh_index_locked(&mut on_disk) {
                    tracing::warn!(error = %e, "cannot read the session index before rewriting it");
                }
                let (bytes, snapshot) = {
                    let entries = inner.entries.lock();
                    (index_bytes(&entries)?, entries.clone())
                };
                let stamp = write_atomically_stamped(&inner.index_path, &bytes)?;
                *on_disk = OnDisk {
                    stamp: Some(stamp),
                    base: snapshot,
                };
                Ok(())
            })
            .await
            .map_err(StoreError::from)
    }

    /// The transcript of `session_id` if it is open already.
    pub fn open_transcript(&self, session_id: &str) -> Option<Arc<Transcript>> {
        self.inner.transcripts.lock().get(session_id).cloned()
    }

    /// The transcript of `session_id`, opened on first use.
    pub fn transcript(&self, session_id: &str) -> Result<Arc<Transcript>, StoreError> {
        let mut open = self.inner.transcripts.lock();
        if let Some(t) = open.get(session_id) {
            return Ok(t.clone());
        }
        if !index::is_safe_session_id(session_id) {
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                "unsafe sessionId",
            )));
        }
        let path = self.inner.transcript_path(session_id);
        if self.inner.shared.foreign_store
            && !path.exists()
            && !self.inner.created.lock().contains(session_id)
        {
            // Reading a foreign index must not leave empty files in it.
            return Err(StoreError::Io(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no transcript {}", path.display()),
            )));
        }
        let t = Arc::new(Transcript::open_shared(
            &path,
            session_id,
            self.inner.shared.clone(),
        )?);
        open.insert(session_id.to_owned(), t.clone());
        Ok(t)
    }
}

/// A session [`Store::add_sessions`] makes: a key and session id of its
/// own (unused), and the whole transcript, header included.
pub struct NewSession {
    pub key: String,
    pub session_id: String,
    pub bytes: Vec<u8>,
    pub updated_at: i64,
}

/// Writes each file (new, 0600, synced), then syncs the folder; on any
/// failure removes the ones written and answers the error.
fn write_new_files(dir: &Path, paths: &[PathBuf], files: &[Vec<u8>]) -> Result<(), StoreError> {
    let mut done: Vec<&PathBuf> = Vec::new();
    let result = (|| {
        for (path, bytes) in paths.iter().zip(files) {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            done.push(path);
            file.write_all(bytes)?;
            file.sync_all()?;
        }
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = result {
        for p in done {
            let _ = std::fs::remove_file(p);
        }
        return Err(e.into());
    }
    Ok(())
}

impl Inner {
    /// Where the transcript of `session_id` (a safe id) is: pi's file for
    /// it, the file an OpenClaw entry names (`sessionFile`, only by its name
    /// inside this folder, so a foreign index cannot point elsewhere), or
    /// `<sessionId>.jsonl`.
    fn transcript_path(&self, session_id: &str) -> PathBuf {
        if let Some(pi) = &self.pi
            && let Some(path) = pi.lock().files.get(session_id)
        {
            return path.clone();
        }
        let named = self
            .entries
            .lock()
            .values()
            .filter(|raw| {
                raw.get("sessionId").and_then(serde_json::Value::as_str) == Some(session_id)
            })
            .find_map(|raw| {
                let file = raw.get("sessionFile")?.as_str()?;
                let name = Path::new(file).file_name()?.to_str()?;
                name.ends_with(".jsonl").then(|| name.to_owned())
            });
        self.dir
            .join(named.unwrap_or_else(|| format!("{session_id}.jsonl")))
    }

    /// pi's folder listed again, merged into the relay's entries: the keys
    /// this run created for new sessions stay, the relay's thinking level
    /// and a later `updatedAt` win.
    fn rescan_pi(&self, pi: &Mutex<source::PiFolder>) -> std::io::Result<bool> {
        let scanned = pi.lock().scan(&self.dir)?;
        let mut entries = self.entries.lock();
        let aliased: std::collections::HashSet<String> = entries
            .iter()
            .filter(|(k, raw)| {
                let id = raw.get("sessionId").and_then(serde_json::Value::as_str);
                id.is_some_and(|id| id != k.as_str())
            })
            .filter_map(|(_, raw)| raw.get("sessionId")?.as_str().map(str::to_owned))
            .collect();
        let mut merged = index::Entries::new();
        for (key, mut raw) in scanned.clone() {
            let target = if aliased.contains(&key) {
                match entries
                    .iter()
                    .find(|(k, r)| {
                        k.as_str() != key
                            && r.get("sessionId").and_then(serde_json::Value::as_str)
                                == Some(key.as_str())
                    })
                    .map(|(k, _)| k.clone())
                {
                    Some(k) => k,
                    None => key,
                }
            } else {
                key
            };
            if let Some(ours) = entries.get(&target) {
                let theirs = raw.get("updatedAt").and_then(serde_json::Value::as_i64);
                let mine = ours.get("updatedAt").and_then(serde_json::Value::as_i64);
                if mine > theirs
                    && let Some(m) = mine
                {
                    raw.insert("updatedAt".into(), m.into());
                }
                if let Some(level) = ours.get("thinkingLevel") {
                    raw.insert("thinkingLevel".into(), level.clone());
                }
            }
            merged.insert(target, raw);
        }
        let changed = merged != *entries;
        *entries = merged;
        Ok(changed)
    }

    fn refresh_index_locked(&self, on_disk: &mut OnDisk) -> std::io::Result<bool> {
        if let Some(pi) = &self.pi {
            return self.rescan_pi(pi);
        }
        let now = index::stamp(&self.index_path)?;
        // A missing file is not "every session removed": the next write
        // puts the relay's entries back.
        if now.is_none() || now == on_disk.stamp {
            return Ok(false);
        }
        let (theirs, stamp) = match read_index(&self.index_path) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                // Perhaps half-written by a program that does not write
                // atomically: look again next time.
                tracing::warn!(error = %e, "the session index changed on disk but does not parse; keeping the relay's entries");
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        let mut entries = self.entries.lock();
        index::merge(&on_disk.base, &mut entries, &theirs);
        tracing::info!(
            sessions = entries.len(),
            "merged the session index another program rewrote"
        );
        *on_disk = OnDisk {
            stamp,
            base: theirs,
        };
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
