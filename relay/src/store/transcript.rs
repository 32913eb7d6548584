//! One session's append-only transcript (`<sessionId>.jsonl`).
//!
//! Reads go backwards from the end of the file so that the cost of showing
//! the latest messages does not depend on the transcript's length. The most
//! recent messages are also kept decoded in memory (`recent`), filled on first
//! use and extended by appends, so `/webchat/info` is served without I/O.
//! That window is bounded by bytes (`window_bytes`, its share of
//! `session_memory_bytes`), not only by count: older messages are read from
//! the file again when asked for. What idempotency and paging need about the
//! last [`RECENT_CAP`] messages (ids, offsets, `clientId`, `replyTo`) is kept
//! for all of them, however large they are.
//!
//! Other programs may append to the same file (the store is shared with
//! pi-format tools). Before each append, and when polled, the relay looks at
//! the file's size and identity: lines someone else appended are read, added
//! to the window and reported through the [`ForeignHook`]; a line someone
//! else left unfinished is terminated before the relay writes its own; a file
//! replaced (or cut shorter) is reopened and read again.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::StoreError;
use super::line::{
    Entry, Kind, NewMessage, Parent, Setting, StoredMessage, header_line, new_entry_id,
    parse_entry, parse_synthetic_id,
};
use crate::durable::{FlushKind, GroupCommit, note_slow_io};
use crate::memory::message_bytes;

/// Messages kept track of per open transcript (decoded as far as the byte
/// budget allows).
const RECENT_CAP: usize = 512;
/// Bytes of decoded messages kept per open transcript unless configured
/// otherwise.
pub const DEFAULT_WINDOW_BYTES: usize = 4 * 1024 * 1024;
/// Bytes read per step of a scan.
const CHUNK: u64 = 64 * 1024;
/// Largest step of a backward scan through one long line.
const MAX_STEP: u64 = 16 * 1024 * 1024;
/// Page boundaries remembered per transcript for `before=` paging.
const PAGE_MARKS_CAP: usize = 1024;
/// A read looks at the file's size (one `fstat`) at most this often, so
/// that lines another program appended show up in reads of a session nobody
/// is subscribed to, without a system call per read.
const READ_CHECK_MS: u64 = 200;
/// Longest id kept in the window's heads; a foreign line may carry any.
const HEAD_FIELD_MAX: usize = 1024;
/// Entries whose place in the file is remembered per open transcript (the
/// id → offset index); when full it starts over, filled again by the next
/// walks.
const INDEX_CAP: usize = 32 * 1024;
/// How far back from the end the newest `session_info` (the session's name)
/// is looked for when a transcript is first asked for its name; later ones
/// are seen as they are appended.
const NAME_SCAN_BYTES: u64 = 4 * 1024 * 1024;

/// Turns a raw stored message into what clients see (e.g. adds rendered
/// HTML). Supplied by the owner of the store so the store stays ignorant of
/// presentation.
pub type Decorate = Arc<dyn Fn(&mut StoredMessage) + Send + Sync>;

/// What another program did to a transcript, as the relay found it.
#[derive(Debug)]
pub enum Foreign<'a> {
    /// It appended this message (a complete line).
    Message(&'a Arc<StoredMessage>),
    /// It replaced the file or cut it shorter: what was read before may be
    /// gone, and readers should start over.
    Replaced,
}

/// Told of every [`Foreign`] change, with the transcript's sessionId. Called
/// while the transcript's writer lock is held, so that reports come in file
/// order: it must be quick and must not call back into the transcript.
pub type ForeignHook = Arc<dyn Fn(&str, Foreign<'_>) + Send + Sync>;

/// Told, with the transcript's sessionId, that its file has new lines (the
/// relay's or another program's) or was replaced: what the search index
/// follows. Called under the writer lock, so it must only take note.
pub type ChangeHook = Arc<dyn Fn(&str) + Send + Sync>;

/// The bytes of a stored attachment, by id: what an old transcript's image
/// parts are given as pi's `data` when the transcript is upgraded.
pub type AttachmentBytes = Arc<dyn Fn(&str) -> Option<Vec<u8>> + Send + Sync>;

/// What every transcript of a store shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) decorate: Decorate,
    pub(crate) window_bytes: usize,
    pub(crate) foreign: Arc<OnceLock<ForeignHook>>,
    pub(crate) changed: Arc<OnceLock<ChangeHook>>,
    pub(crate) attachment_bytes: Arc<OnceLock<AttachmentBytes>>,
    /// The `cwd` of the header of a transcript loopchat starts.
    pub(crate) cwd: String,
    /// The files belong to another tool (`--store pi|openclaw`): a torn
    /// last line may be its write in progress and is left to it, and an old
    /// format is read as it is, never rewritten.
    pub(crate) foreign_store: bool,
}

impl Shared {
    pub(crate) fn new(decorate: Decorate) -> Self {
        Self {
            decorate,
            window_bytes: DEFAULT_WINDOW_BYTES,
            foreign: Arc::default(),
            changed: Arc::default(),
            attachment_bytes: Arc::default(),
            cwd: std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "/".into()),
            foreign_store: false,
        }
    }
}

struct Writer {
    file: Arc<File>,
    /// Bytes of complete lines in the file, the relay's and others' that it
    /// has read: where the next line starts.
    len: u64,
    /// A failed write left part of a line after `len` and cutting it failed
    /// too: it must be cut before anything else is appended.
    fragment: bool,
    /// Device and inode of `file`, to notice that the path names another
    /// file now.
    identity: (u64, u64),
    /// The id of the last entry in the file, whatever its type: the leaf,
    /// whose path to the root is the conversation. `None` before the first.
    leaf: Option<String>,
}

impl Writer {
    /// Cuts the file back to its complete lines.
    fn cut_fragment(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.len)?;
        self.fragment = false;
        Ok(())
    }
}

/// How much of the file to look at before a read, a poll or an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Its size only (`fstat`).
    Size,
    /// Also whether the path still names the open file (`stat`).
    Poll,
    /// As `Poll`, and an unfinished last line is terminated: the relay is
    /// about to write.
    Append,
}

/// Where one of the last [`RECENT_CAP`] messages is and which turn it
/// belongs to: enough for [`Transcript::find_turn`] and paging without
/// keeping the message decoded.
struct Head {
    offset: u64,
    /// Bytes of the line without its newline.
    len: u64,
    id: String,
    client_id: Option<String>,
    reply_to: Option<String>,
}

impl Head {
    fn of(m: &StoredMessage, len: u64) -> Self {
        let short = |s: &Option<String>| s.clone().filter(|s| s.len() <= HEAD_FIELD_MAX);
        Self {
            offset: m.offset,
            len,
            id: m.message.id.clone(),
            client_id: short(&m.client_id),
            reply_to: short(&m.reply_to),
        }
    }
}

#[derive(Default)]
struct Recent {
    loaded: bool,
    /// The newest messages, decoded, oldest first: a suffix of `heads`,
    /// within the byte budget.
    messages: VecDeque<Arc<StoredMessage>>,
    /// Sum of [`message_bytes`] over `messages`.
    bytes: usize,
    /// True when `messages` begins at the first message of the file.
    complete: bool,
    /// The last [`RECENT_CAP`] messages, oldest first.
    heads: VecDeque<Head>,
    /// A `compaction` is among `messages`: an agent's context cannot be
    /// taken from the window as it is.
    compacted: bool,
    /// The newest model and thinking level set on the path, as far back as
    /// the window reaches.
    model: Option<Setting>,
    thinking: Option<Setting>,
}

impl Recent {
    /// A message now at the end of the file (no-op until loaded).
    fn push(&mut self, m: &Arc<StoredMessage>, line_len: u64, budget: usize) {
        if !self.loaded {
            return;
        }
        self.heads.push_back(Head::of(m, line_len));
        if self.heads.len() > RECENT_CAP {
            self.heads.pop_front();
        }
        self.compacted |= m.message.kind.as_deref() == Some("compaction");
        self.messages.push_back(m.clone());
        self.bytes += message_bytes(&m.message);
        while self.bytes > budget || self.messages.len() > RECENT_CAP {
            let Some(old) = self.messages.pop_front() else {
                break;
            };
            self.bytes -= message_bytes(&old.message);
            self.complete = false;
        }
    }

    /// The decoded message at `offset`, if the window holds it.
    fn decoded(&self, offset: u64) -> Option<Arc<StoredMessage>> {
        let i = self.messages.partition_point(|m| m.offset < offset);
        self.messages.get(i).filter(|m| m.offset == offset).cloned()
    }
}

/// The shape of a transcript's tree: see [`Transcript::tree`].
#[derive(Debug, Clone)]
pub struct TreeSkeleton {
    /// The last entry of the file.
    pub leaf: Option<String>,
    /// (id, parent id, role if it is a message), in file order.
    pub entries: Vec<(String, Option<String>, Option<loopchat_proto::Role>)>,
}

/// A stored user message and, if it was answered, the reply.
pub type StoredTurn = (Arc<StoredMessage>, Option<Arc<StoredMessage>>);

/// A page of messages, oldest first.
#[derive(Debug)]
pub struct Page {
    pub messages: Vec<Arc<StoredMessage>>,
    pub has_more: bool,
}

/// Where entries are in the file, by id, so that a walk to a parent far
/// back jumps there instead of parsing every line in between. Bounded by
/// [`INDEX_CAP`]; forgotten entries are found again by scanning.
#[derive(Default)]
struct IdIndex {
    /// Offset and length (without the newline) of each entry's line.
    lines: HashMap<String, (u64, u64)>,
}

impl IdIndex {
    fn note(&mut self, id: &str, offset: u64, len: u64) {
        if id.len() > HEAD_FIELD_MAX {
            return;
        }
        if self.lines.len() >= INDEX_CAP && !self.lines.contains_key(id) {
            self.lines.clear();
        }
        self.lines.insert(id.to_owned(), (offset, len));
    }

    /// Where a backward scan must start to see the entry `id` first.
    fn end_of(&self, id: &str) -> Option<u64> {
        self.lines.get(id).map(|(offset, len)| offset + len + 1)
    }
}

/// Which entry a walk up the tree takes next.
#[derive(Debug, Clone)]
enum Want {
    /// The next one back in the file (the leaf, or a child without a
    /// `parentId`).
    First,
    Id(String),
}

impl Want {
    /// What comes after an entry with `parent` on its path; `None` at the
    /// root.
    fn after(parent: &Parent) -> Option<Self> {
        match parent {
            Parent::Root => None,
            Parent::Previous => Some(Self::First),
            Parent::Id(p) => Some(Self::Id(p.clone())),
        }
    }
}

/// Where a page stands by the message it is asked for (see
/// [`Transcript::around`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The message itself and the ones beside it.
    Around,
    /// The ones after it, for paging forward.
    After,
}

/// What a scan does after one line.
enum Step {
    Next,
    Stop,
    /// Go on from this offset back (the end of a line before this one).
    Jump(u64),
}

pub struct Transcript {
    path: PathBuf,
    session_id: String,
    writer: Mutex<Writer>,
    /// The writer's file, for reads and flushes without its lock.
    file: Mutex<Arc<File>>,
    commit: GroupCommit,
    recent: Mutex<Recent>,
    marks: Mutex<PageMarks>,
    index: Mutex<IdIndex>,
    /// The name of the newest `session_info` entry: `None` until looked
    /// for, then `Some(None)` when there is none (or an empty one).
    name: Mutex<Option<Option<String>>>,
    /// Held across a conditional rename's look and write, so a user's
    /// rename is never overwritten by a title computed before it.
    naming: Mutex<()>,
    shared: Shared,
    opened: Instant,
    /// Milliseconds after `opened` when the file was last looked at.
    checked_ms: AtomicU64,
}

/// Where the oldest message of each recently served page starts, so that
/// asking for the page before it (`before=<its id>`, what a client scrolling
/// back sends next) needs no scan. Only page boundaries are remembered, and
/// only the last [`PAGE_MARKS_CAP`] of them: remembering every message a
/// scan passed over grew without bound on a busy session, a hundred bytes
/// for each message ever paged over.
#[derive(Default)]
struct PageMarks {
    offsets: HashMap<String, u64>,
    order: VecDeque<String>,
}

impl PageMarks {
    fn get(&self, id: &str) -> Option<u64> {
        self.offsets.get(id).copied()
    }

    fn remember(&mut self, id: &str, offset: u64) {
        if self.offsets.insert(id.to_owned(), offset).is_some() {
            return;
        }
        self.order.push_back(id.to_owned());
        if self.order.len() > PAGE_MARKS_CAP
            && let Some(old) = self.order.pop_front()
        {
            self.offsets.remove(&old);
        }
    }
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

fn open_file(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .create(create)
        .append(true)
        .read(true)
        .mode(0o600)
        .open(path)
}

impl Transcript {
    /// Opens (creating if needed) with the defaults, for tests and tools.
    #[cfg(test)]
    pub(crate) fn open(path: &Path, decorate: Decorate) -> Result<Self, StoreError> {
        Self::open_shared(path, "test", Shared::new(decorate))
    }

    /// Opens (creating if needed) and repairs a torn last line. Bytes after
    /// the last newline that are not a JSON value are part of a line whose
    /// write never finished: never acknowledged (an ack follows a flush of a
    /// whole line), so cutting them loses nothing and keeps later appends on a
    /// line of their own. A tail that is a whole JSON value only lacks its
    /// newline (another program's line, or the relay's own cut short by one
    /// byte) and is terminated instead, so nothing readable is thrown away.
    pub(crate) fn open_shared(
        path: &Path,
        session_id: &str,
        shared: Shared,
    ) -> Result<Self, StoreError> {
        let file = open_file(path, true)?;
        let meta = file.metadata()?;
        let mut len = meta.len();
        let complete = last_newline_end(&file, len)?;
        if complete != len && shared.foreign_store {
            // Treated as any unfinished line of another program: read once
            // finished, terminated before the relay appends (see
            // `sync_with_file`).
            len = complete;
        } else if complete != len {
            let mut tail = vec![0u8; (len - complete) as usize];
            file.read_exact_at(&mut tail, complete)?;
            if serde_json::from_slice::<serde::de::IgnoredAny>(&tail).is_ok() {
                tracing::warn!(
                    path = %path.display(),
                    "terminating a last line that lacked its newline"
                );
                (&file).write_all(b"\n")?;
                len += 1;
            } else {
                tracing::warn!(
                    path = %path.display(),
                    torn_bytes = len - complete,
                    "cutting a torn last line left by a crash"
                );
                file.set_len(complete)?;
                len = complete;
            }
            file.sync_data()?;
        }
        let (file, meta) = if !shared.foreign_store
            && super::upgrade::upgrade_if_needed(path, session_id, &file, len, &shared)?
        {
            let file = open_file(path, false)?;
            let meta = file.metadata()?;
            len = meta.len();
            (file, meta)
        } else {
            (file, meta)
        };
        let file = Arc::new(file);
        let t = Self {
            path: path.to_owned(),
            session_id: session_id.to_owned(),
            writer: Mutex::new(Writer {
                file: file.clone(),
                len,
                fragment: false,
                identity: identity(&meta),
                leaf: None,
            }),
            file: Mutex::new(file),
            commit: GroupCommit::new(FlushKind::Appended),
            recent: Mutex::new(Recent::default()),
            marks: Mutex::new(PageMarks::default()),
            index: Mutex::new(IdIndex::default()),
            name: Mutex::new(None),
            naming: Mutex::new(()),
            shared,
            opened: Instant::now(),
            checked_ms: AtomicU64::new(0),
        };
        let leaf = t.last_entry(len)?;
        t.writer.lock().leaf = leaf;
        Ok(t)
    }

    /// The id of the last entry before `end`.
    fn last_entry(&self, end: u64) -> Result<Option<String>, StoreError> {
        let mut leaf = None;
        self.scan_backwards(end, |e, _| {
            leaf = Some(e.id);
            Step::Stop
        })?;
        Ok(leaf)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> u64 {
        self.writer.lock().len
    }

    fn reader(&self) -> Arc<File> {
        self.file.lock().clone()
    }

    fn decorated(&self, mut m: StoredMessage) -> StoredMessage {
        (self.shared.decorate)(&mut m);
        m
    }

    /// Bytes of decoded messages the recent window holds now.
    pub fn window_bytes(&self) -> usize {
        self.recent.lock().bytes
    }

    /// Appends one message (written, not yet durable) and returns it decoded
    /// together with the generation to pass to [`Transcript::durable`].
    pub fn append(&self, new: &NewMessage) -> Result<(Arc<StoredMessage>, u64), StoreError> {
        self.append_then(new, |_| {})
    }

    /// [`Transcript::append`], calling `written` with the stored message
    /// while appends are still held off, so that whatever it publishes comes
    /// in file order with the lines other programs append.
    pub fn append_then(
        &self,
        new: &NewMessage,
        written: impl FnOnce(&Arc<StoredMessage>),
    ) -> Result<(Arc<StoredMessage>, u64), StoreError> {
        // Decorate outside the lock: rendering can take a while. The id and
        // parent are known only under it.
        let mut stored = self.decorated(StoredMessage {
            offset: 0,
            message: new.to_message("", None),
            client_id: new.client_id.clone(),
            reply_to: new.reply_to.clone(),
            parent: Parent::Root,
        });
        self.ensure_recent()?;
        let mut w = self.writer.lock();
        self.sync_with_file(&mut w, Check::Append)?;
        let id = if new.id.is_empty() {
            self.fresh_id()
        } else {
            new.id.clone()
        };
        let parent = new.parent_id.clone().or_else(|| w.leaf.clone());
        let line = new.to_line(&id, parent.as_deref());
        stored.message.id = id;
        stored.message.parent_id = parent.clone();
        stored.parent = parent.map_or(Parent::Root, Parent::Id);
        stored.offset = self.write_entry(&mut w, &line)?;
        let generation = self.commit.bump();
        let stored = Arc::new(stored);
        // Still under the writer lock so `recent` stays in file order.
        let len = line.len() as u64 - 1;
        let id = stored.message.id.clone();
        self.note_entry(
            &mut w,
            &id,
            &stored.parent,
            stored.offset,
            len,
            Some(&stored),
            None,
        );
        written(&stored);
        Ok((stored, generation))
    }

    /// Appends pi's `model_change` / `thinking_level_change` entries for
    /// what differs from the newest ones on the conversation's path (as far
    /// back as the recent window reaches), as pi does when either changes,
    /// under the leaf. Made durable with the next append's flush.
    pub fn note_settings(
        &self,
        model: Option<(&str, &str)>,
        thinking: Option<&str>,
    ) -> Result<(), StoreError> {
        self.ensure_recent()?;
        let mut w = self.writer.lock();
        self.sync_with_file(&mut w, Check::Append)?;
        let wanted = [
            model.map(|(provider, model)| Setting::Model {
                provider: provider.to_owned(),
                model: model.to_owned(),
            }),
            thinking.map(|t| Setting::Thinking(t.to_owned())),
        ];
        for setting in wanted.into_iter().flatten() {
            let known = {
                let recent = self.recent.lock();
                match &setting {
                    Setting::Model { .. } => recent.model.clone(),
                    Setting::Thinking(_) => recent.thinking.clone(),
                }
            };
            if known.as_ref() == Some(&setting) {
                continue;
            }
            let leaf = w.leaf.clone();
            self.write_setting(&mut w, setting, leaf)?;
        }
        Ok(())
    }

    /// Writes one setting entry under `parent` (the root when `None`);
    /// returns its id. Durable with the next append's flush.
    fn write_setting(
        &self,
        w: &mut Writer,
        setting: Setting,
        parent: Option<String>,
    ) -> Result<String, StoreError> {
        let id = self.fresh_id();
        let line = setting.to_line(&id, parent.as_deref(), crate::clock::now_millis());
        let offset = self.write_entry(w, &line)?;
        self.commit.bump();
        let parent = parent.map_or(Parent::Root, Parent::Id);
        let len = line.len() as u64 - 1;
        self.note_entry(w, &id, &parent, offset, len, None, Some(setting));
        Ok(id)
    }

    /// Appends a `model_change` entry whose parent is `parent` (a fork:
    /// the reply that answers a message again under another model hangs
    /// under it, so that the model shows on that branch's path and no
    /// other). Returns the entry's id. Durable with the next append's flush.
    pub fn note_model_under(
        &self,
        parent: &str,
        provider: &str,
        model: &str,
    ) -> Result<String, StoreError> {
        self.ensure_recent()?;
        let mut w = self.writer.lock();
        self.sync_with_file(&mut w, Check::Append)?;
        let setting = Setting::Model {
            provider: provider.to_owned(),
            model: model.to_owned(),
        };
        self.write_setting(&mut w, setting, Some(parent.to_owned()))
    }

    /// The newest `model_change` on the conversation's path (as far back as
    /// the recent window reaches): `(provider, model)`.
    pub fn model(&self) -> Result<Option<(String, String)>, StoreError> {
        self.ensure_recent()?;
        let recent = self.recent.lock();
        Ok(match &recent.model {
            Some(Setting::Model { provider, model }) => Some((provider.clone(), model.clone())),
            _ => None,
        })
    }

    /// The message (or marker) with id `id`, read from the file if it is
    /// not in the window; `None` if the session has no such entry.
    pub fn message(&self, id: &str) -> Result<Option<Arc<StoredMessage>>, StoreError> {
        self.check_before_read()?;
        let Some(offset) = self.offset_of(id)? else {
            return Ok(None);
        };
        Ok(self
            .entry_at(offset)?
            .filter(|e| e.id == id)
            .and_then(Entry::into_message)
            .map(Arc::new))
    }

    /// The session's name: the newest `session_info` entry in the file (as
    /// pi's `getSessionName`), looked for in its last [`NAME_SCAN_BYTES`].
    pub fn name(&self) -> Result<Option<String>, StoreError> {
        self.check_before_read()?;
        if let Some(known) = self.name.lock().clone() {
            return Ok(known);
        }
        let end = self.len();
        let floor = end.saturating_sub(NAME_SCAN_BYTES);
        let mut found = None;
        self.scan_backwards(end, |e, _| {
            if e.offset < floor {
                return Step::Stop;
            }
            match e.name {
                Some(n) => {
                    found = Some(n);
                    Step::Stop
                }
                None => Step::Next,
            }
        })?;
        let name = found.filter(|n| !n.is_empty());
        let mut known = self.name.lock();
        // An append may have named it meanwhile: that one is newer.
        Ok(known.get_or_insert(name).clone())
    }

    fn set_name(&self, name: String) {
        *self.name.lock() = Some(Some(name).filter(|n| !n.is_empty()));
    }

    /// Names the session: appends pi's `session_info` entry under the leaf
    /// (an empty name clears it, as in pi). Returns the generation to wait
    /// for with [`Transcript::durable`].
    pub fn rename(&self, name: &str) -> Result<u64, StoreError> {
        let _naming = self.naming.lock();
        self.rename_locked(name)
    }

    /// [`Transcript::rename`], only while the session's name is still
    /// `expected` (`None`: unnamed). `Ok(None)` when it was not.
    pub fn rename_if(&self, expected: Option<&str>, name: &str) -> Result<Option<u64>, StoreError> {
        let _naming = self.naming.lock();
        if self.name()?.as_deref() != expected {
            return Ok(None);
        }
        self.rename_locked(name).map(Some)
    }

    fn rename_locked(&self, name: &str) -> Result<u64, StoreError> {
        let name = name.trim();
        self.ensure_recent()?;
        let mut w = self.writer.lock();
        self.sync_with_file(&mut w, Check::Append)?;
        let id = self.fresh_id();
        let parent = w.leaf.clone();
        let line = super::line::session_info_line(
            &id,
            parent.as_deref(),
            crate::clock::now_millis(),
            name,
        );
        let offset = self.write_entry(&mut w, &line)?;
        let generation = self.commit.bump();
        let parent = parent.map_or(Parent::Root, Parent::Id);
        let len = line.len() as u64 - 1;
        self.note_entry(&mut w, &id, &parent, offset, len, None, None);
        self.set_name(name.to_owned());
        Ok(generation)
    }

    /// An entry id not in use, as far as the index and the window know.
    fn fresh_id(&self) -> String {
        let index = self.index.lock();
        let recent = self.recent.lock();
        for _ in 0..100 {
            let id = new_entry_id();
            if !index.lines.contains_key(&id) && !recent.heads.iter().any(|h| h.id == id) {
                return id;
            }
        }
        // As pi does when its short ids keep colliding.
        uuid::Uuid::new_v4().to_string()
    }

    /// Writes one entry's line (after the header, if the file has nothing
    /// yet), coping with another program's writes; returns where the line
    /// starts and moves `w.len` past it.
    fn write_entry(&self, w: &mut Writer, line: &[u8]) -> Result<u64, StoreError> {
        if w.len == 0 {
            let header = header_line(
                &self.session_id,
                &self.shared.cwd,
                crate::clock::now_millis(),
            );
            let start = self.write_line(w, &header)?;
            if start == 0 {
                w.len = header.len() as u64;
            }
        }
        let started = Instant::now();
        let mut start = self.write_line(w, line)?;
        note_slow_io("a transcript write", started);
        if start != w.len {
            // Another program wrote between the check and the write.
            tracing::warn!(
                path = %self.path.display(),
                "another program wrote to the transcript during an append"
            );
            if start < w.len {
                self.reload(w, start + line.len() as u64)?;
            } else if self.ingest(w, start)? {
                // Our line was glued to its unfinished one: write it again,
                // on a line of its own now (ours ended with a newline).
                start = self.write_line(w, line)?;
            }
        }
        w.len = start + line.len() as u64;
        self.tell_changed();
        Ok(start)
    }

    fn tell_changed(&self) {
        if let Some(hook) = self.shared.changed.get() {
            hook(&self.session_id);
        }
    }

    /// Records an entry now at the end of the file: it is the leaf, and it
    /// either continues the conversation's path (its message joins the
    /// window) or starts another branch (the window is read again when next
    /// needed). True when it continued the path.
    #[allow(clippy::too_many_arguments)]
    fn note_entry(
        &self,
        w: &mut Writer,
        id: &str,
        parent: &Parent,
        offset: u64,
        len: u64,
        message: Option<&Arc<StoredMessage>>,
        setting: Option<Setting>,
    ) -> bool {
        let continues = match parent {
            Parent::Previous => true,
            Parent::Root => w.leaf.is_none(),
            Parent::Id(p) => w.leaf.as_deref() == Some(p.as_str()),
        };
        w.leaf = Some(id.to_owned());
        self.index.lock().note(id, offset, len);
        let mut recent = self.recent.lock();
        if !continues {
            *recent = Recent::default();
            return false;
        }
        if let Some(m) = message {
            recent.push(m, len, self.shared.window_bytes);
        }
        if recent.loaded {
            match setting {
                Some(s @ Setting::Model { .. }) => recent.model = Some(s),
                Some(s @ Setting::Thinking(_)) => recent.thinking = Some(s),
                None => {}
            }
        }
        true
    }

    /// Writes `line` at the end of the file; returns where it starts.
    fn write_line(&self, w: &mut Writer, line: &[u8]) -> Result<u64, StoreError> {
        let written = (&*w.file).write_all(line);
        if let Err(e) = written {
            w.fragment = true;
            if let Err(cut) = w.cut_fragment() {
                tracing::error!(
                    path = %self.path.display(),
                    error = %cut,
                    "cannot cut the fragment of a failed write; appends wait until it is cut"
                );
            }
            return Err(e.into());
        }
        // In append mode the offset is the file's end after the write.
        let end = (&*w.file).stream_position()?;
        Ok(end.saturating_sub(line.len() as u64))
    }

    /// Brings what the relay knows of the file up to date with the file
    /// itself (see [`Check`]).
    fn sync_with_file(&self, w: &mut Writer, check: Check) -> Result<(), StoreError> {
        self.checked_ms
            .store(self.opened.elapsed().as_millis() as u64, Ordering::Relaxed);
        if w.fragment {
            if check != Check::Append {
                // The bytes after `len` are the relay's own fragment.
                return Ok(());
            }
            w.cut_fragment()?;
            tracing::info!(path = %self.path.display(), "cut the fragment of a failed write");
        }
        if check != Check::Size {
            match std::fs::metadata(&self.path) {
                Ok(meta) if identity(&meta) != w.identity => {
                    tracing::info!(path = %self.path.display(), "the transcript was replaced; reopening it");
                    self.reopen(w, false)?;
                }
                Ok(_) => {}
                // Deleted: nothing to read. An append creates it again
                // rather than write to a file no name leads to.
                Err(e) if e.kind() == io::ErrorKind::NotFound && check == Check::Append => {
                    tracing::info!(path = %self.path.display(), "the transcript was removed; creating it again");
                    self.reopen(w, true)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        let size = w.file.metadata()?.len();
        if size < w.len {
            tracing::info!(path = %self.path.display(), "the transcript was cut shorter; reading it again");
            self.reload(w, size)?;
        }
        if size > w.len && self.ingest(w, size)? && check == Check::Append {
            tracing::info!(
                path = %self.path.display(),
                "terminating a line another program left unfinished"
            );
            (&*w.file).write_all(b"\n")?;
            let end = (&*w.file).stream_position()?;
            self.ingest(w, end)?;
        }
        Ok(())
    }

    /// Opens the path again: it names another file than the one open.
    fn reopen(&self, w: &mut Writer, create: bool) -> Result<(), StoreError> {
        let file = Arc::new(open_file(&self.path, create)?);
        let meta = file.metadata()?;
        w.identity = identity(&meta);
        w.file = file.clone();
        w.fragment = false;
        *self.file.lock() = file;
        self.reload(w, meta.len())
    }

    /// Forgets what was read of the file, whose first `size` bytes are now
    /// to be read afresh, and tells the hook.
    fn reload(&self, w: &mut Writer, size: u64) -> Result<(), StoreError> {
        w.len = last_newline_end(&w.file, size)?;
        *self.recent.lock() = Recent::default();
        *self.marks.lock() = PageMarks::default();
        *self.index.lock() = IdIndex::default();
        *self.name.lock() = None;
        w.leaf = self.last_entry(w.len)?;
        if let Some(hook) = self.shared.foreign.get() {
            hook(&self.session_id, Foreign::Replaced);
        }
        self.tell_changed();
        Ok(())
    }

    /// Reads the lines between `w.len` and `to` that another program wrote,
    /// adding their messages to the window and reporting them, and moves
    /// `w.len` past the last complete one. True if an unfinished line is
    /// left after it.
    fn ingest(&self, w: &mut Writer, to: u64) -> Result<bool, StoreError> {
        let mut pos = w.len;
        let mut line_start = w.len;
        let mut line = Vec::new();
        let mut chunk = vec![0u8; CHUNK as usize];
        let mut count = 0usize;
        while pos < to {
            let n = (to - pos).min(CHUNK) as usize;
            w.file.read_exact_at(&mut chunk[..n], pos)?;
            let mut rest = &chunk[..n];
            while let Some(i) = rest.iter().position(|b| *b == b'\n') {
                line.extend_from_slice(&rest[..i]);
                if let Some(entry) = parse_entry(&line, line_start) {
                    let Entry {
                        id,
                        parent,
                        kind,
                        name,
                        ..
                    } = entry;
                    if let Some(name) = name {
                        self.set_name(name);
                    }
                    let (message, setting) = match kind {
                        Kind::Message(m) | Kind::Compaction { marker: m, .. } => {
                            (Some(Arc::new(self.decorated(m))), None)
                        }
                        Kind::ModelChange { provider, model } => {
                            (None, Some(Setting::Model { provider, model }))
                        }
                        Kind::ThinkingChange(level) => (None, Some(Setting::Thinking(level))),
                        Kind::Other => (None, None),
                    };
                    let len = line.len() as u64;
                    let continued = self.note_entry(
                        w,
                        &id,
                        &parent,
                        line_start,
                        len,
                        message.as_ref(),
                        setting,
                    );
                    if let Some(hook) = self.shared.foreign.get() {
                        match (&message, continued) {
                            (Some(m), true) => hook(&self.session_id, Foreign::Message(m)),
                            (_, false) => hook(&self.session_id, Foreign::Replaced),
                            (None, true) => {}
                        }
                    }
                    count += 1;
                }
                line_start += line.len() as u64 + 1;
                line.clear();
                rest = &rest[i + 1..];
            }
            line.extend_from_slice(rest);
            pos += n as u64;
        }
        w.len = line_start;
        if count > 0 {
            self.tell_changed();
            tracing::debug!(path = %self.path.display(), messages = count, "read messages another program appended");
        }
        Ok(!line.is_empty())
    }

    /// Looks for lines another program appended (or a replaced file), as
    /// the relay's periodic check of the sessions someone is watching does.
    pub fn check_foreign(&self) -> Result<(), StoreError> {
        let mut w = self.writer.lock();
        self.sync_with_file(&mut w, Check::Poll)
    }

    /// Before a read: the file's size, at most every [`READ_CHECK_MS`], and
    /// never waiting behind an append (which checks by itself).
    fn check_before_read(&self) -> Result<(), StoreError> {
        let now = self.opened.elapsed().as_millis() as u64;
        if now.saturating_sub(self.checked_ms.load(Ordering::Relaxed)) < READ_CHECK_MS {
            return Ok(());
        }
        let Some(mut w) = self.writer.try_lock() else {
            return Ok(());
        };
        self.sync_with_file(&mut w, Check::Size)
    }

    /// A generation covering every append so far, for a caller that must
    /// not acknowledge what it read from the file until it is on disk.
    pub fn barrier(&self) -> u64 {
        let _w = self.writer.lock();
        self.commit.bump()
    }

    /// Waits until every append up to `generation` is on disk.
    pub async fn durable(&self, generation: u64) -> Result<(), StoreError> {
        let file = self.reader();
        self.commit
            .wait(generation, move || file.sync_data())
            .await
            .map_err(StoreError::from)
    }

    /// The last `limit` messages of the conversation (the leaf's path),
    /// compaction markers included.
    pub fn latest(&self, limit: usize) -> Result<Page, StoreError> {
        self.check_before_read()?;
        self.ensure_recent()?;
        let recent = self.recent.lock();
        if limit <= recent.messages.len() || recent.complete {
            let skip = recent.messages.len().saturating_sub(limit);
            return Ok(Page {
                messages: recent.messages.iter().skip(skip).cloned().collect(),
                has_more: skip > 0 || !recent.complete,
            });
        }
        drop(recent);
        let end = self.len();
        self.read_path(end, Want::First, limit, true)
    }

    /// Every message of the conversation (the leaf's path), oldest first,
    /// not decorated: what an export writes. Reads the whole path.
    pub fn conversation(&self) -> Result<Vec<Arc<StoredMessage>>, StoreError> {
        self.check_before_read()?;
        let end = self.len();
        Ok(self
            .read_path(end, Want::First, usize::MAX, false)?
            .messages)
    }

    /// The file's complete lines as stored, byte for byte (what another
    /// program has appended included).
    pub fn bytes(&self) -> Result<Vec<u8>, StoreError> {
        self.check_before_read()?;
        let end = self.len();
        let mut buf = vec![0u8; end as usize];
        self.reader().read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }

    /// The last `limit` messages an agent is given: the leaf's path after
    /// its newest compaction (whose summary comes first, as pi sends it),
    /// without decorating what is read from the file (rendering would be
    /// wasted on an agent).
    pub fn latest_plain(&self, limit: usize) -> Result<Page, StoreError> {
        self.check_before_read()?;
        self.ensure_recent()?;
        let recent = self.recent.lock();
        if !recent.compacted && (limit <= recent.messages.len() || recent.complete) {
            let skip = recent.messages.len().saturating_sub(limit);
            return Ok(Page {
                messages: recent
                    .messages
                    .iter()
                    .skip(skip)
                    .map(|m| for_agent(m.clone()))
                    .collect(),
                has_more: skip > 0 || !recent.complete,
            });
        }
        drop(recent);
        let end = self.len();
        self.read_context(end, Some(Want::First), limit)
    }

    /// Up to `limit` messages before the message `before_id` on its path.
    /// `None` when that message is unknown.
    pub fn before(&self, before_id: &str, limit: usize) -> Result<Option<Page>, StoreError> {
        self.check_before_read()?;
        let Some(offset) = self.offset_of(before_id)? else {
            return Ok(None);
        };
        let Some(entry) = self.entry_at(offset)? else {
            return Ok(None);
        };
        let page = match Want::after(&entry.parent) {
            Some(want) => self.read_path(offset, want, limit, true)?,
            None => Page {
                messages: Vec::new(),
                has_more: false,
            },
        };
        Ok(Some(page))
    }

    /// The last `limit` messages of the path that ends with the entry
    /// `leaf` (another branch than the conversation, to look at it); `None`
    /// when the session has no such entry.
    pub fn path_to(&self, leaf: &str, limit: usize) -> Result<Option<Page>, StoreError> {
        self.check_before_read()?;
        let Some(offset) = self.offset_of(leaf)? else {
            return Ok(None);
        };
        // The walk starts just after the leaf's line, which it takes first.
        let end = self.line_end(offset)?;
        Ok(Some(self.read_path(
            end,
            Want::Id(leaf.to_owned()),
            limit,
            true,
        )?))
    }

    /// A page of the path to `leaf` (the conversation's leaf when `None`)
    /// placed by the message `anchor`: with [`Placement::Around`], the
    /// anchor and up to `limit - 1` messages beside it (at most half of them
    /// after it, more before when fewer come after); with
    /// [`Placement::After`], up to `limit` messages after it, the anchor left
    /// out. Also says whether newer messages than the page's last are on the
    /// path. `None` when the anchor (or the leaf) is not on that path.
    ///
    /// The walk starts from the path's end, so its cost grows with how far
    /// back the anchor is, not with the page.
    pub fn around(
        &self,
        anchor: &str,
        leaf: Option<&str>,
        limit: usize,
        placement: Placement,
    ) -> Result<Option<(Page, bool)>, StoreError> {
        self.check_before_read()?;
        let (end, want) = match leaf {
            None => (self.len(), Want::First),
            Some(leaf) => {
                let Some(offset) = self.offset_of(leaf)? else {
                    return Ok(None);
                };
                (self.line_end(offset)?, Want::Id(leaf.to_owned()))
            }
        };
        let (newer_cap, with_anchor) = match placement {
            Placement::Around => (limit.saturating_sub(1) / 2, true),
            Placement::After => (limit, false),
        };
        // Newest first while walking: the messages after the anchor, the
        // ones nearest to it last.
        let mut newer: VecDeque<StoredMessage> = VecDeque::new();
        let mut has_newer = false;
        let mut older: Vec<StoredMessage> = Vec::new();
        let mut older_cap = 0;
        let mut found = false;
        let mut has_more = false;
        self.walk(end, want, |e, _| {
            let Some(m) = e.into_message() else {
                return true;
            };
            if !found {
                if m.message.id == anchor {
                    found = true;
                    older_cap = match placement {
                        Placement::Around => limit.saturating_sub(1 + newer.len()),
                        Placement::After => 0,
                    };
                    if with_anchor {
                        older.push(m);
                    } else {
                        has_more = true;
                        return false;
                    }
                    return true;
                }
                newer.push_back(m);
                if newer.len() > newer_cap {
                    newer.pop_front();
                    has_newer = true;
                }
                return true;
            }
            if older.len() > older_cap {
                has_more = true;
                return false;
            }
            older.push(m);
            true
        })?;
        if !found {
            return Ok(None);
        }
        let messages = older
            .into_iter()
            .rev()
            .chain(newer.into_iter().rev())
            .map(|m| Arc::new(self.decorated(m)))
            .collect();
        Ok(Some((Page { messages, has_more }, has_newer)))
    }

    /// Every entry of the tree, in file order, as (id, parent id, role of
    /// a message): what a client needs to show and switch branches. `None`
    /// when the file has more than `cap` entries (the whole file is read).
    pub fn tree(&self, cap: usize) -> Result<Option<TreeSkeleton>, StoreError> {
        self.check_before_read()?;
        let end = self.len();
        let mut newest_first = Vec::new();
        let mut too_many = false;
        self.scan_backwards(end, |e, _| {
            if newest_first.len() == cap {
                too_many = true;
                return Step::Stop;
            }
            let role = e.message().map(|m| m.message.role);
            newest_first.push((e.id, e.parent, role));
            Step::Next
        })?;
        if too_many {
            return Ok(None);
        }
        newest_first.reverse();
        let mut entries = Vec::with_capacity(newest_first.len());
        let mut previous: Option<String> = None;
        for (id, parent, role) in newest_first {
            let parent = match parent {
                Parent::Root => None,
                Parent::Previous => previous.clone(),
                Parent::Id(p) => Some(p),
            };
            previous = Some(id.clone());
            entries.push((id, parent, role));
        }
        let leaf = self.writer.lock().leaf.clone();
        Ok(Some(TreeSkeleton { leaf, entries }))
    }

    /// The offset just past the newline of the line that starts at `offset`.
    fn line_end(&self, offset: u64) -> Result<u64, StoreError> {
        let reader = self.reader();
        let end = self.len();
        let mut pos = offset;
        while pos < end {
            let n = (end - pos).min(CHUNK) as usize;
            let mut buf = vec![0u8; n];
            reader.read_exact_at(&mut buf, pos)?;
            if let Some(i) = buf.iter().position(|b| *b == b'\n') {
                return Ok(pos + i as u64 + 1);
            }
            pos += n as u64;
        }
        Ok(end)
    }

    /// The last `limit` messages up to and including `last`: the context
    /// the turn that wrote `last` had (as [`Transcript::latest_plain`]).
    pub fn through(&self, last: &Arc<StoredMessage>, limit: usize) -> Result<Page, StoreError> {
        if limit == 0 {
            return Ok(Page {
                messages: Vec::new(),
                has_more: true,
            });
        }
        let mut page = self.read_context(last.offset, Want::after(&last.parent), limit - 1)?;
        page.messages.push(for_agent(last.clone()));
        Ok(page)
    }

    /// Gives back the memory of the recent-message window, the page marks
    /// and the id index; the next read loads them from the file again.
    pub fn release_recent(&self) {
        let _w = self.writer.lock();
        *self.recent.lock() = Recent::default();
        *self.marks.lock() = PageMarks::default();
        *self.index.lock() = IdIndex::default();
    }

    /// The message written for idempotency key `client_id`, and the reply
    /// to it if one was stored — looked up among the last [`RECENT_CAP`]
    /// messages of the conversation, which is where a retry finds its first
    /// attempt. Messages the byte budget keeps out of the window are read
    /// from the file.
    ///
    /// A turn found after a flush of this file failed is an error instead:
    /// the failure may have lost any of it on disk, so nothing may be built
    /// on it until a restart reads the file again.
    pub fn find_turn(&self, client_id: &str) -> Result<Option<StoredTurn>, StoreError> {
        let (user, reply) = loop {
            self.ensure_recent()?;
            let recent = self.recent.lock();
            // Released in between: a miss in an empty window would run the
            // turn a second time.
            if !recent.loaded {
                continue;
            }
            let Some(pos) = recent
                .heads
                .iter()
                .rposition(|h| h.client_id.as_deref() == Some(client_id))
            else {
                return Ok(None);
            };
            let user = &recent.heads[pos];
            let reply = recent
                .heads
                .iter()
                .skip(pos + 1)
                .find(|h| h.reply_to.as_deref() == Some(user.id.as_str()));
            let fetch = |h: &Head| (h.offset, h.len, recent.decoded(h.offset));
            break (fetch(user), reply.map(fetch));
        };
        let load = |(offset, len, decoded): (u64, u64, Option<Arc<StoredMessage>>)| match decoded {
            Some(m) => Ok(Some(m)),
            None => self.read_at(offset, len),
        };
        let Some(user) = load(user)? else {
            return Ok(None);
        };
        let reply = match reply {
            Some(r) => load(r)?,
            None => None,
        };
        if let Some(e) = self.commit.first_failure() {
            return Err(e.into());
        }
        Ok(Some((user, reply)))
    }

    /// The message on the line at `offset` (`len` bytes), decorated.
    fn read_at(&self, offset: u64, len: u64) -> Result<Option<Arc<StoredMessage>>, StoreError> {
        let mut line = vec![0u8; len as usize];
        self.reader().read_exact_at(&mut line, offset)?;
        Ok(parse_entry(&line, offset)
            .and_then(Entry::into_message)
            .map(|m| Arc::new(self.decorated(m))))
    }

    /// The entry on the line that starts at `offset`.
    fn entry_at(&self, offset: u64) -> Result<Option<Entry>, StoreError> {
        let reader = self.reader();
        let end = self.len();
        let mut line = Vec::new();
        let mut pos = offset;
        let mut step = CHUNK;
        while pos < end {
            let n = (end - pos).min(step) as usize;
            let mut buf = vec![0u8; n];
            reader.read_exact_at(&mut buf, pos)?;
            if let Some(i) = buf.iter().position(|b| *b == b'\n') {
                line.extend_from_slice(&buf[..i]);
                return Ok(parse_entry(&line, offset));
            }
            line.extend_from_slice(&buf);
            pos += n as u64;
            step = (step * 2).min(MAX_STEP);
        }
        Ok(parse_entry(&line, offset))
    }

    fn offset_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        if let Some(off) = parse_synthetic_id(id) {
            return Ok((off < self.len()).then_some(off));
        }
        {
            self.ensure_recent()?;
            let recent = self.recent.lock();
            if let Some(h) = recent.heads.iter().rev().find(|h| h.id == id) {
                return Ok(Some(h.offset));
            }
        }
        if let Some(off) = self.marks.lock().get(id) {
            return Ok(Some(off));
        }
        if let Some(&(off, _)) = self.index.lock().lines.get(id) {
            return Ok(Some(off));
        }
        // Unknown: a backward scan until it is found.
        let mut found = None;
        self.scan_backwards(self.len(), |e, len| {
            self.index.lock().note(&e.id, e.offset, len);
            if e.id == id {
                found = Some(e.offset);
                Step::Stop
            } else {
                Step::Next
            }
        })?;
        Ok(found)
    }

    fn ensure_recent(&self) -> Result<(), StoreError> {
        if self.recent.lock().loaded {
            return Ok(());
        }
        // Hold the writer lock so no append lands between the scan and the
        // moment `recent` starts tracking appends.
        let w = self.writer.lock();
        let mut recent = self.recent.lock();
        if recent.loaded {
            return Ok(());
        }
        let budget = self.shared.window_bytes;
        let mut loaded = Recent {
            loaded: true,
            ..Recent::default()
        };
        // Decoded from the newest back while they fit; heads for all.
        let mut decoding = true;
        let mut more = false;
        self.walk(w.len, Want::First, |e, len| {
            let m = match e.kind {
                Kind::ModelChange { provider, model } => {
                    loaded
                        .model
                        .get_or_insert(Setting::Model { provider, model });
                    return true;
                }
                Kind::ThinkingChange(level) => {
                    loaded.thinking.get_or_insert(Setting::Thinking(level));
                    return true;
                }
                Kind::Other => return true,
                Kind::Message(m) | Kind::Compaction { marker: m, .. } => m,
            };
            if loaded.heads.len() == RECENT_CAP {
                more = true;
                return false;
            }
            loaded.heads.push_front(Head::of(&m, len));
            if decoding && loaded.bytes + message_bytes(&m.message) <= budget {
                let m = self.decorated(m);
                let size = message_bytes(&m.message);
                if loaded.bytes + size <= budget {
                    loaded.compacted |= m.message.kind.as_deref() == Some("compaction");
                    loaded.bytes += size;
                    loaded.messages.push_front(Arc::new(m));
                    return true;
                }
            }
            decoding = false;
            true
        })?;
        loaded.complete = decoding && !more;
        *recent = loaded;
        Ok(())
    }

    /// Up to `limit` messages of the path that goes on with `want` from
    /// `end` back, oldest first.
    fn read_path(
        &self,
        end: u64,
        want: Want,
        limit: usize,
        decorate: bool,
    ) -> Result<Page, StoreError> {
        let mut newest_first = Vec::with_capacity(limit.min(1024));
        let mut has_more = false;
        self.walk(end, want, |e, _| {
            let Some(m) = e.into_message() else {
                return true;
            };
            if newest_first.len() == limit {
                has_more = true;
                return false;
            }
            let m = if decorate { self.decorated(m) } else { m };
            newest_first.push(Arc::new(m));
            true
        })?;
        if has_more && let Some(oldest) = newest_first.last() {
            self.marks
                .lock()
                .remember(&oldest.message.id, oldest.offset);
        }
        newest_first.reverse();
        Ok(Page {
            messages: newest_first,
            has_more,
        })
    }

    /// What an agent is given of the path that goes on with `want` from
    /// `end` back, as pi builds its context: after the newest compaction,
    /// its summary, then the entries from its `firstKeptEntryId` on (none if
    /// that entry is not on the path); summaries as user messages.
    fn read_context(&self, end: u64, want: Option<Want>, limit: usize) -> Result<Page, StoreError> {
        let mut newest_first: Vec<Arc<StoredMessage>> = Vec::new();
        // After a compaction: the messages before it, kept only if its
        // first kept entry turns up.
        let mut kept: Vec<Arc<StoredMessage>> = Vec::new();
        let mut compaction: Option<(StoredMessage, Option<String>)> = None;
        let mut has_more = false;
        let mut found_first_kept = false;
        if let Some(want) = want {
            self.walk(end, want, |e, _| {
                let is_first_kept = matches!(&compaction, Some((_, Some(k))) if *k == e.id);
                match e.kind {
                    Kind::Compaction { marker, first_kept } if compaction.is_none() => {
                        let none_kept = first_kept.is_none();
                        compaction = Some((marker, first_kept));
                        if none_kept {
                            return false;
                        }
                    }
                    Kind::Message(m) => {
                        if newest_first.len() + kept.len() == limit {
                            has_more = true;
                            found_first_kept = compaction.is_some();
                            return false;
                        }
                        let m = for_agent(Arc::new(m));
                        if compaction.is_some() {
                            kept.push(m);
                        } else {
                            newest_first.push(m);
                        }
                    }
                    _ => {}
                }
                if is_first_kept {
                    found_first_kept = true;
                    return false;
                }
                true
            })?;
        }
        if let Some((summary, _)) = compaction {
            if found_first_kept {
                newest_first.append(&mut kept);
            }
            newest_first.push(for_agent(Arc::new(summary)));
            has_more = false;
        }
        newest_first.reverse();
        Ok(Page {
            messages: newest_first,
            has_more,
        })
    }

    /// Visits the entries on a path up the tree, newest first, with the
    /// length of each one's line: from `end` back, the entry `want` names,
    /// then its parent, and so on to the root, until `visit` returns false.
    /// Entries passed over (other branches) are remembered in the index, so
    /// that the next walk past them jumps.
    fn walk(
        &self,
        end: u64,
        want: Want,
        mut visit: impl FnMut(Entry, u64) -> bool,
    ) -> Result<(), StoreError> {
        let index_end = |id: &str| self.index.lock().end_of(id);
        let mut end = end;
        if let Want::Id(id) = &want
            && let Some(to) = index_end(id)
            && to < end
        {
            end = to;
        }
        let mut want = want;
        self.scan_backwards(end, |e, len| {
            self.index.lock().note(&e.id, e.offset, len);
            let on_path = match &want {
                Want::First => true,
                Want::Id(id) => *id == e.id,
            };
            if !on_path {
                return match &want {
                    Want::Id(id) => match index_end(id) {
                        Some(to) if to < e.offset => Step::Jump(to),
                        _ => Step::Next,
                    },
                    Want::First => Step::Next,
                };
            }
            let offset = e.offset;
            let next = Want::after(&e.parent);
            if !visit(e, len) {
                return Step::Stop;
            }
            match next {
                None => Step::Stop,
                Some(next) => {
                    let jump = match &next {
                        Want::Id(id) => index_end(id).filter(|to| *to < offset),
                        Want::First => None,
                    };
                    want = next;
                    jump.map_or(Step::Next, Step::Jump)
                }
            }
        })
    }

    /// Visits entries from `end` towards the start of the file, newest
    /// first, with the length of each one's line, as `visit` steps. The
    /// messages are not decorated.
    fn scan_backwards(
        &self,
        end: u64,
        mut visit: impl FnMut(Entry, u64) -> Step,
    ) -> Result<(), StoreError> {
        let reader = self.reader();
        let mut pos = end;
        // Bytes of a line that started before the chunk just read.
        let mut tail: Vec<u8> = Vec::new();
        // Doubled while no newline turns up, so a line of n bytes costs
        // O(n) to assemble rather than n²/CHUNK (a 900 KB message was
        // copied fourteen times over).
        let mut step = CHUNK;
        'chunks: while pos > 0 {
            let start = pos.saturating_sub(step);
            let mut buf = vec![0u8; (pos - start) as usize];
            reader.read_exact_at(&mut buf, start)?;
            buf.extend_from_slice(&tail);
            // Lines wholly inside buf: after the first newline, unless the
            // chunk starts at the file's beginning.
            let mut line_end = buf.len();
            let mut i = buf.len();
            let first_complete = if start == 0 {
                0
            } else {
                match buf.iter().position(|b| *b == b'\n') {
                    Some(p) => p + 1,
                    None => {
                        tail = buf;
                        pos = start;
                        step = (step * 2).min(MAX_STEP);
                        continue;
                    }
                }
            };
            while i > first_complete {
                i -= 1;
                let is_line_start = i == first_complete || buf[i - 1] == b'\n';
                if !is_line_start {
                    continue;
                }
                let mut line = &buf[i..line_end];
                if line.last() == Some(&b'\n') {
                    line = &line[..line.len() - 1];
                }
                let offset = start + i as u64;
                if let Some(e) = parse_entry(line, offset) {
                    match visit(e, line.len() as u64) {
                        Step::Next => {}
                        Step::Stop => return Ok(()),
                        Step::Jump(to) if to < offset => {
                            pos = to;
                            tail.clear();
                            step = CHUNK;
                            continue 'chunks;
                        }
                        Step::Jump(_) => {}
                    }
                }
                line_end = i;
            }
            tail = buf[..first_complete].to_vec();
            pos = start;
            step = CHUNK;
        }
        Ok(())
    }
}

/// A message as an agent is given it: a summary pi sends as the user's, with
/// pi's framing (`COMPACTION_SUMMARY_PREFIX` / `BRANCH_SUMMARY_PREFIX` in
/// pi's messages.ts).
fn for_agent(m: Arc<StoredMessage>) -> Arc<StoredMessage> {
    let (prefix, suffix) = match m.message.kind.as_deref() {
        Some("compaction") => (
            "The conversation history before this point was compacted into the following summary:\n\n<summary>\n",
            "\n</summary>",
        ),
        Some("branch_summary") => (
            "The following is a summary of a branch that this conversation came back from:\n\n<summary>\n",
            "</summary>",
        ),
        _ => return m,
    };
    let mut agent = (*m).clone();
    agent.message.role = loopchat_proto::Role::User;
    agent.message.content =
        loopchat_proto::Content::Text(format!("{prefix}{}{suffix}", m.message.content.text()));
    Arc::new(agent)
}

/// Length of the prefix of the file that ends with a newline (0 if none).
fn last_newline_end(file: &File, len: u64) -> io::Result<u64> {
    let mut pos = len;
    while pos > 0 {
        let start = pos.saturating_sub(CHUNK);
        let mut buf = vec![0u8; (pos - start) as usize];
        file.read_exact_at(&mut buf, start)?;
        if let Some(p) = buf.iter().rposition(|b| *b == b'\n') {
            return Ok(start + p as u64 + 1);
        }
        pos = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use loopchat_proto::Role;

    use super::*;
    use crate::store::tests::msg;

    /// Paging back remembers one boundary per page, never every message
    /// passed over, and at most `PAGE_MARKS_CAP` of them.
    #[test]
    fn paging_back_remembers_only_bounded_page_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let t = Transcript::open(&dir.path().join("t.jsonl"), Arc::new(|_| {})).unwrap();
        let n = RECENT_CAP + 3 * PAGE_MARKS_CAP;
        for i in 0..n {
            t.append(&msg(i, Role::User)).unwrap();
        }
        // Every page is read from disk once it leaves the recent window, and
        // the next one starts from the mark the previous one left.
        let mut before = format!("m{}", n - 1);
        let mut seen = 1;
        loop {
            let page = t.before(&before, 2).unwrap().expect("known id");
            let first: usize = page.messages[0].message.id[1..].parse().unwrap();
            assert_eq!(first, n - 1 - seen - (page.messages.len() - 1));
            seen += page.messages.len();
            if !page.has_more {
                break;
            }
            before = page.messages[0].message.id.clone();
            let marks = t.marks.lock();
            assert!(marks.order.len() <= PAGE_MARKS_CAP);
            assert_eq!(marks.order.len(), marks.offsets.len());
        }
        assert_eq!(seen, n);
        // An id that fell out of the marks is still found, by a scan.
        let page = t.before("m10", 3).unwrap().unwrap();
        let ids: Vec<_> = page
            .messages
            .iter()
            .map(|m| m.message.id.as_str())
            .collect();
        assert_eq!(ids, ["m7", "m8", "m9"]);
        assert!(t.before("nope", 3).unwrap().is_none());
    }
}
