//! One session's append-only transcript (`<sessionId>.jsonl`).
//!
//! Reads go backwards from the end of the file so that the cost of showing
//! the latest messages does not depend on the transcript's length. The most
//! recent messages are also kept decoded in memory (`recent`), filled on first
//! use and extended by appends, so `/webchat/info` is served without I/O.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::StoreError;
use super::commit::{FlushKind, GroupCommit, note_slow_io};
use super::line::{NewMessage, StoredMessage, parse_line, parse_synthetic_id};

/// Messages kept decoded in memory per open transcript.
const RECENT_CAP: usize = 512;
/// Bytes read per step of a backward scan.
const CHUNK: u64 = 64 * 1024;
/// Page boundaries remembered per transcript for `before=` paging.
const PAGE_MARKS_CAP: usize = 1024;

/// Turns a raw stored message into what clients see (e.g. adds rendered
/// HTML). Supplied by the owner of the store so the store stays ignorant of
/// presentation.
pub type Decorate = Arc<dyn Fn(&mut StoredMessage) + Send + Sync>;

struct Writer {
    file: File,
    /// Bytes of complete lines in the file.
    len: u64,
    /// A failed write left part of a line after `len` and cutting it failed
    /// too: it must be cut before anything else is appended.
    fragment: bool,
}

impl Writer {
    /// Cuts the file back to its complete lines.
    fn cut_fragment(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.len)?;
        self.fragment = false;
        Ok(())
    }
}

struct Recent {
    loaded: bool,
    messages: VecDeque<Arc<StoredMessage>>,
    /// True when `messages` begins at the first message of the file.
    complete: bool,
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
    writer: Mutex<Writer>,
    reader: File,
    sync_handle: Arc<File>,
    commit: GroupCommit,
    recent: Mutex<Recent>,
    marks: Mutex<PageMarks>,
    decorate: Decorate,
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

impl Transcript {
    /// Opens (creating if needed) and repairs a torn last line: bytes after
    /// the last newline were never acknowledged (an ack follows a flush of a
    /// whole line), so cutting them loses nothing and keeps later appends on
    /// a line of their own.
    pub(crate) fn open(path: &Path, decorate: Decorate) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(path)?;
        let mut len = file.metadata()?.len();
        let complete = last_newline_end(&file, len)?;
        if complete != len {
            tracing::warn!(
                path = %path.display(),
                torn_bytes = len - complete,
                "cutting a torn last line left by a crash"
            );
            file.set_len(complete)?;
            file.sync_data()?;
            len = complete;
        }
        let reader = file.try_clone()?;
        let sync_handle = Arc::new(file.try_clone()?);
        Ok(Self {
            path: path.to_owned(),
            writer: Mutex::new(Writer {
                file,
                len,
                fragment: false,
            }),
            reader,
            sync_handle,
            commit: GroupCommit::new(FlushKind::Appended),
            recent: Mutex::new(Recent {
                loaded: false,
                messages: VecDeque::new(),
                complete: false,
            }),
            marks: Mutex::new(PageMarks::default()),
            decorate,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> u64 {
        self.writer.lock().unwrap_or_else(|e| e.into_inner()).len
    }

    /// Appends one message (written, not yet durable) and returns it decoded
    /// together with the generation to pass to [`Transcript::durable`].
    pub fn append(&self, new: &NewMessage) -> Result<(Arc<StoredMessage>, u64), StoreError> {
        let line = new.to_line();
        // Decorate outside the lock: rendering can take a while.
        let mut stored = StoredMessage {
            offset: 0,
            message: new.to_message(),
            client_id: new.client_id.clone(),
            reply_to: new.reply_to.clone(),
        };
        (self.decorate)(&mut stored);
        self.ensure_recent()?;
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        // The file is in append mode: a line written after a fragment would
        // join it, and both would be lost as one unreadable line.
        if w.fragment {
            w.cut_fragment()?;
            tracing::info!(path = %self.path.display(), "cut the fragment of a failed write");
        }
        stored.offset = w.len;
        let started = Instant::now();
        let written = w.file.write_all(&line);
        note_slow_io("a transcript write", started);
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
        w.len += line.len() as u64;
        let generation = self.commit.bump();
        let stored = Arc::new(stored);
        // Still under the writer lock so `recent` stays in file order.
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.messages.push_back(stored.clone());
        if recent.messages.len() > RECENT_CAP {
            recent.messages.pop_front();
            recent.complete = false;
        }
        Ok((stored, generation))
    }

    /// A generation covering every append so far, for a caller that must
    /// not acknowledge what it read from the file until it is on disk.
    pub fn barrier(&self) -> u64 {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.commit.bump()
    }

    /// Waits until every append up to `generation` is on disk.
    pub async fn durable(&self, generation: u64) -> Result<(), StoreError> {
        let file = self.sync_handle.clone();
        self.commit
            .wait(generation, move || file.sync_data())
            .await
            .map_err(StoreError::from)
    }

    /// The last `limit` messages.
    pub fn latest(&self, limit: usize) -> Result<Page, StoreError> {
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
        self.read_before(end, limit)
    }

    /// Up to `limit` messages older than the message `before_id`.
    /// `None` when that message is unknown.
    pub fn before(&self, before_id: &str, limit: usize) -> Result<Option<Page>, StoreError> {
        let Some(offset) = self.offset_of(before_id)? else {
            return Ok(None);
        };
        Ok(Some(self.read_before(offset, limit)?))
    }

    /// The last `limit` messages up to and including `last`: the context
    /// the turn that wrote `last` had.
    pub fn through(&self, last: &Arc<StoredMessage>, limit: usize) -> Result<Page, StoreError> {
        if limit == 0 {
            return Ok(Page {
                messages: Vec::new(),
                has_more: true,
            });
        }
        let mut page = self.read_before(last.offset, limit - 1)?;
        page.messages.push(last.clone());
        Ok(page)
    }

    /// Gives back the memory of the recent-message window and the page
    /// marks; the next read loads the window from the file again.
    pub fn release_recent(&self) {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        *self.recent.lock().unwrap_or_else(|e| e.into_inner()) = Recent {
            loaded: false,
            messages: VecDeque::new(),
            complete: false,
        };
        *self.marks.lock().unwrap_or_else(|e| e.into_inner()) = PageMarks::default();
    }

    /// The message written for idempotency key `client_id`, and the reply
    /// to it if one was stored — looked up among the recent messages, which
    /// is where a retry finds its first attempt.
    ///
    /// A turn found after a flush of this file failed is an error instead:
    /// the failure may have lost any of it on disk, so nothing may be built
    /// on it until a restart reads the file again.
    pub fn find_turn(&self, client_id: &str) -> Result<Option<StoredTurn>, StoreError> {
        let recent = loop {
            self.ensure_recent()?;
            let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            // Released in between: a miss in an empty window would run the
            // turn a second time.
            if recent.loaded {
                break recent;
            }
        };
        let Some(pos) = recent
            .messages
            .iter()
            .rposition(|m| m.client_id.as_deref() == Some(client_id))
        else {
            return Ok(None);
        };
        let user = recent.messages[pos].clone();
        let reply = recent
            .messages
            .iter()
            .skip(pos + 1)
            .find(|m| m.reply_to.as_deref() == Some(user.message.id.as_str()))
            .cloned();
        if let Some(e) = self.commit.first_failure() {
            return Err(e.into());
        }
        Ok(Some((user, reply)))
    }

    fn offset_of(&self, id: &str) -> Result<Option<u64>, StoreError> {
        if let Some(off) = parse_synthetic_id(id) {
            return Ok((off < self.len()).then_some(off));
        }
        {
            self.ensure_recent()?;
            let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(m) = recent.messages.iter().find(|m| m.message.id == id) {
                return Ok(Some(m.offset));
            }
        }
        if let Some(off) = self.marks.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(Some(off));
        }
        // Unknown: a backward scan until it is found.
        let mut found = None;
        self.scan_backwards(self.len(), |m| {
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
        let page = self.read_before_locked(w.len, RECENT_CAP)?;
        recent.complete = !page.has_more;
        recent.messages = page.messages.into();
        recent.loaded = true;
        Ok(())
    }

    fn read_before(&self, end: u64, limit: usize) -> Result<Page, StoreError> {
        self.read_before_locked(end, limit)
    }

    fn read_before_locked(&self, end: u64, limit: usize) -> Result<Page, StoreError> {
        let mut newest_first = Vec::with_capacity(limit.min(1024));
        let mut has_more = false;
        self.scan_backwards(end, |m| {
            if newest_first.len() == limit {
                has_more = true;
                return false;
            }
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
    /// first, until `visit` returns false. Decorates each visited message.
    fn scan_backwards(
        &self,
        end: u64,
        mut visit: impl FnMut(StoredMessage) -> bool,
    ) -> Result<(), StoreError> {
        let mut pos = end;
        // Bytes of a line that started before the chunk just read.
        let mut tail: Vec<u8> = Vec::new();
        while pos > 0 {
            let start = pos.saturating_sub(CHUNK);
            let mut buf = vec![0u8; (pos - start) as usize];
            self.reader.read_exact_at(&mut buf, start)?;
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
                if let Some(mut m) = parse_line(line, offset) {
                    (self.decorate)(&mut m);
                    if !visit(m) {
                        return Ok(());
                    }
                }
                line_end = i;
            }
            tail = buf[..first_complete].to_vec();
            pos = start;
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
