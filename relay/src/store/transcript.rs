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

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::StoreError;
use super::commit::{FlushKind, GroupCommit, note_slow_io};
use super::line::{NewMessage, StoredMessage, parse_line, parse_synthetic_id};
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

/// What every transcript of a store shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) decorate: Decorate,
    pub(crate) window_bytes: usize,
    pub(crate) foreign: Arc<OnceLock<ForeignHook>>,
}

impl Shared {
    pub(crate) fn new(decorate: Decorate) -> Self {
        Self {
            decorate,
            window_bytes: DEFAULT_WINDOW_BYTES,
            foreign: Arc::default(),
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

/// A stored user message and, if it was answered, the reply.
pub type StoredTurn = (Arc<StoredMessage>, Option<Arc<StoredMessage>>);

/// A page of messages, oldest first.
#[derive(Debug)]
pub struct Page {
    pub messages: Vec<Arc<StoredMessage>>,
    pub has_more: bool,
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
        if complete != len {
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
        let file = Arc::new(file);
        Ok(Self {
            path: path.to_owned(),
            session_id: session_id.to_owned(),
            writer: Mutex::new(Writer {
                file: file.clone(),
                len,
                fragment: false,
                identity: identity(&meta),
            }),
            file: Mutex::new(file),
            commit: GroupCommit::new(FlushKind::Appended),
            recent: Mutex::new(Recent::default()),
            marks: Mutex::new(PageMarks::default()),
            shared,
            opened: Instant::now(),
            checked_ms: AtomicU64::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> u64 {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).len
    }

    fn reader(&self) -> Arc<File> {
        self.file.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn decorated(&self, mut m: StoredMessage) -> StoredMessage {
        (self.shared.decorate)(&mut m);
        m
    }

    /// Bytes of decoded messages the recent window holds now.
    pub fn window_bytes(&self) -> usize {
        self.recent.lock().unwrap_or_else(|e| e.into_inner()).bytes
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
        let line = new.to_line();
        // Decorate outside the lock: rendering can take a while.
        let mut stored = self.decorated(StoredMessage {
            offset: 0,
            message: new.to_message(),
            client_id: new.client_id.clone(),
            reply_to: new.reply_to.clone(),
        });
        self.ensure_recent()?;
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        // The file is in append mode: a line written after a fragment, or
        // after another program's unfinished line, would join it, and both
        // would be lost as one unreadable line.
        self.sync_with_file(&mut w, Check::Append)?;
        let started = Instant::now();
        let mut start = self.write_line(&mut w, &line)?;
        note_slow_io("a transcript write", started);
        if start != w.len {
            // Another program wrote between the check and the write.
            tracing::warn!(
                path = %self.path.display(),
                "another program wrote to the transcript during an append"
            );
            if start < w.len {
                self.reload(&mut w, start + line.len() as u64)?;
            } else if self.ingest(&mut w, start)? {
                // Our line was glued to its unfinished one: write it again,
                // on a line of its own now (ours ended with a newline).
                start = self.write_line(&mut w, &line)?;
            }
        }
        stored.offset = start;
        w.len = start + line.len() as u64;
        let generation = self.commit.bump();
        let stored = Arc::new(stored);
        // Still under the writer lock so `recent` stays in file order.
        self.recent.lock().unwrap_or_else(|e| e.into_inner()).push(
            &stored,
            line.len() as u64 - 1,
            self.shared.window_bytes,
        );
        written(&stored);
        Ok((stored, generation))
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
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = file;
        self.reload(w, meta.len())
    }

    /// Forgets what was read of the file, whose first `size` bytes are now
    /// to be read afresh, and tells the hook.
    fn reload(&self, w: &mut Writer, size: u64) -> Result<(), StoreError> {
        w.len = last_newline_end(&w.file, size)?;
        *self.recent.lock().unwrap_or_else(|e| e.into_inner()) = Recent::default();
        *self.marks.lock().unwrap_or_else(|e| e.into_inner()) = PageMarks::default();
        if let Some(hook) = self.shared.foreign.get() {
            hook(&self.session_id, Foreign::Replaced);
        }
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
                if let Some(m) = parse_line(&line, line_start) {
                    let m = Arc::new(self.decorated(m));
                    self.recent.lock().unwrap_or_else(|e| e.into_inner()).push(
                        &m,
                        line.len() as u64,
                        self.shared.window_bytes,
                    );
                    if let Some(hook) = self.shared.foreign.get() {
                        hook(&self.session_id, Foreign::Message(&m));
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
            tracing::debug!(path = %self.path.display(), messages = count, "read messages another program appended");
        }
        Ok(!line.is_empty())
    }

    /// Looks for lines another program appended (or a replaced file), as
    /// the relay's periodic check of the sessions someone is watching does.
    pub fn check_foreign(&self) -> Result<(), StoreError> {
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.sync_with_file(&mut w, Check::Poll)
    }

    /// Before a read: the file's size, at most every [`READ_CHECK_MS`], and
    /// never waiting behind an append (which checks by itself).
    fn check_before_read(&self) -> Result<(), StoreError> {
        let now = self.opened.elapsed().as_millis() as u64;
        if now.saturating_sub(self.checked_ms.load(Ordering::Relaxed)) < READ_CHECK_MS {
            return Ok(());
        }
        let mut w = match self.writer.try_lock() {
            Ok(w) => w,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(()),
        };
        self.sync_with_file(&mut w, Check::Size)
    }

    /// A generation covering every append so far, for a caller that must
    /// not acknowledge what it read from the file until it is on disk.
    pub fn barrier(&self) -> u64 {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
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

    /// The last `limit` messages.
    pub fn latest(&self, limit: usize) -> Result<Page, StoreError> {
        self.latest_as(limit, true)
    }

    /// The last `limit` messages, without decorating those read from the
    /// file: for a reader that needs only their content (an agent's
    /// history), where rendering large messages again would be wasted.
    pub fn latest_plain(&self, limit: usize) -> Result<Page, StoreError> {
        self.latest_as(limit, false)
    }

    fn latest_as(&self, limit: usize, decorate: bool) -> Result<Page, StoreError> {
        self.check_before_read()?;
        self.ensure_recent()?;
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if limit <= recent.messages.len() || recent.complete {
            let skip = recent.messages.len().saturating_sub(limit);
            return Ok(Page {
                messages: recent.messages.iter().skip(skip).cloned().collect(),
                has_more: skip > 0 || !recent.complete,
            });
        }
        drop(recent);
        let end = self.len();
        self.read_before(end, limit, decorate)
    }

    /// Up to `limit` messages older than the message `before_id`.
    /// `None` when that message is unknown.
    pub fn before(&self, before_id: &str, limit: usize) -> Result<Option<Page>, StoreError> {
        self.check_before_read()?;
        let Some(offset) = self.offset_of(before_id)? else {
            return Ok(None);
        };
        Ok(Some(self.read_before(offset, limit, true)?))
    }

    /// The last `limit` messages up to and including `last`: the context
    /// the turn that wrote `last` had (undecorated, like
    /// [`Transcript::latest_plain`]).
    pub fn through(&self, last: &Arc<StoredMessage>, limit: usize) -> Result<Page, StoreError> {
        if limit == 0 {
            return Ok(Page {
                messages: Vec::new(),
                has_more: true,
            });
        }
        let mut page = self.read_before(last.offset, limit - 1, false)?;
        page.messages.push(last.clone());
        Ok(page)
    }

    /// Gives back the memory of the recent-message window and the page
    /// marks; the next read loads the window from the file again.
    pub fn release_recent(&self) {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        *self.recent.lock().unwrap_or_else(|e| e.into_inner()) = Recent::default();
        *self.marks.lock().unwrap_or_else(|e| e.into_inner()) = PageMarks::default();
    }

    /// The message written for idempotency key `client_id`, and the reply
    /// to it if one was stored — looked up among the last [`RECENT_CAP`]
    /// messages, which is where a retry finds its first attempt. Messages
    /// the byte budget keeps out of the window are read from the file.
    ///
    /// A turn found after a flush of this file failed is an error instead:
    /// the failure may have lost any of it on disk, so nothing may be built
    /// on it until a restart reads the file again.
    pub fn find_turn(&self, client_id: &str) -> Result<Option<StoredTurn>, StoreError> {
        let (user, reply) = loop {
            self.ensure_recent()?;
            let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
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
        Ok(parse_line(&line, offset).map(|m| Arc::new(self.decorated(m))))
    }

    fn offset_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        if let Some(off) = parse_synthetic_id(id) {
            return Ok((off < self.len()).then_some(off));
        }
        {
            self.ensure_recent()?;
            let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(h) = recent.heads.iter().rev().find(|h| h.id == id) {
                return Ok(Some(h.offset));
            }
        }
        if let Some(off) = self.marks.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(Some(off));
        }
        // Unknown: a backward scan until it is found.
        let mut found = None;
        self.scan_backwards(self.len(), |m, _| {
            if m.message.id == id {
                found = Some(m.offset);
                false
            } else {
                true
            }
        })?;
        Ok(found)
    }

    fn ensure_recent(&self) -> Result<(), StoreError> {
        if self.recent.lock().unwrap_or_else(|e| e.into_inner()).loaded {
            return Ok(());
        }
        // Hold the writer lock so no append lands between the scan and the
        // moment `recent` starts tracking appends.
        let w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
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
        self.scan_backwards(w.len, |m, len| {
            if loaded.heads.len() == RECENT_CAP {
                more = true;
                return false;
            }
            loaded.heads.push_front(Head::of(&m, len));
            if decoding && loaded.bytes + message_bytes(&m.message) <= budget {
                let m = self.decorated(m);
                let size = message_bytes(&m.message);
                if loaded.bytes + size <= budget {
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

    fn read_before(&self, end: u64, limit: usize, decorate: bool) -> Result<Page, StoreError> {
        let mut newest_first = Vec::with_capacity(limit.min(1024));
        let mut has_more = false;
        self.scan_backwards(end, |m, _| {
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
                .unwrap_or_else(|e| e.into_inner())
                .remember(&oldest.message.id, oldest.offset);
        }
        newest_first.reverse();
        Ok(Page {
            messages: newest_first,
            has_more,
        })
    }

    /// Visits messages from `end` towards the start of the file, newest
    /// first, with the length of each one's line, until `visit` returns
    /// false. The messages are not decorated.
    fn scan_backwards(
        &self,
        end: u64,
        mut visit: impl FnMut(StoredMessage, u64) -> bool,
    ) -> Result<(), StoreError> {
        let reader = self.reader();
        let mut pos = end;
        // Bytes of a line that started before the chunk just read.
        let mut tail: Vec<u8> = Vec::new();
        // Doubled while no newline turns up, so a line of n bytes costs
        // O(n) to assemble rather than n²/CHUNK (a 900 KB message was
        // copied fourteen times over).
        let mut step = CHUNK;
        while pos > 0 {
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
                if let Some(m) = parse_line(line, offset)
                    && !visit(m, line.len() as u64)
                {
                    return Ok(());
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
            let marks = t.marks.lock().unwrap();
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
