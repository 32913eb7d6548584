//! Full-text search across every session: a tantivy index in the home's
//! `search/` folder, kept up to date by one background thread.
//!
//! The thread never sits on a turn's path. The store only tells it which
//! transcript changed ([`crate::store::ChangeHook`], a channel send); the
//! thread reads the new lines from the file itself, from where it stopped
//! last time, and commits them in batches. Where it stopped (per transcript:
//! device, inode and the bytes indexed) is the commit's payload, so the index
//! and its marks are always committed together: a crash loses at most the
//! last batch, which the catch-up at start reads again. A transcript that is
//! replaced or cut shorter is indexed again from its start. A sweep (a `stat`
//! per session every [`SWEEP_EVERY`]) finds what other programs wrote to
//! transcripts the relay has not opened. An index that is missing, unreadable,
//! of another schema or of another store is rebuilt from the transcripts.
//!
//! What is indexed: the text blocks of user messages and assistant replies
//! (not thinking, tool calls, tool results or summaries), the first
//! [`MAX_TEXT_BYTES`] of each.

mod dir;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use loopchat_proto::{Role, SEARCH_QUERY_MAX_BYTES};
use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, STORED, STRING, Schema, TEXT, Value};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::store::{Kind, Store, parse_entry};

/// Raised whenever the schema or what is indexed changes: an index of
/// another version is rebuilt.
const SCHEMA_VERSION: u32 = 1;
/// How often every session's file is looked at (one `stat` each).
const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// How long changes are gathered before they are committed together.
const BATCH_WAIT: Duration = Duration::from_millis(150);
/// Documents after which a long catch-up commits what it has.
const COMMIT_EVERY: usize = 200_000;
/// Text of one message that is indexed (and kept for snippets).
const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Bytes read from a transcript per step.
const CHUNK: usize = 1024 * 1024;
/// The indexing thread's memory budget (tantivy's minimum is 15 MB).
const WRITER_BYTES: usize = 32 * 1024 * 1024;
/// Characters of a snippet.
const SNIPPET_CHARS: usize = 180;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the query has no word to search for")]
    NoWords,
    #[error("the query is longer than {SEARCH_QUERY_MAX_BYTES} bytes")]
    TooLong,
    #[error("search index: {0}")]
    Index(#[from] tantivy::TantivyError),
    #[error("search index I/O: {0}")]
    Io(#[from] io::Error),
}

/// One hit, by sessionId (the caller knows the store's keys and titles).
#[derive(Debug, Clone)]
pub struct Found {
    pub session_id: String,
    pub message_id: String,
    pub role: Role,
    pub timestamp: String,
    pub snippet: String,
    pub snippet_html: String,
}

#[derive(Clone, Copy)]
struct Fields {
    session: Field,
    id: Field,
    role: Field,
    time: Field,
    text: Field,
}

fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let fields = Fields {
        session: b.add_text_field("session", STRING | STORED),
        id: b.add_text_field("id", STORED),
        role: b.add_text_field("role", STORED),
        time: b.add_text_field("time", STORED),
        text: b.add_text_field("text", TEXT | STORED),
    };
    (b.build(), fields)
}

/// How far each transcript is indexed: the commit payload.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Marks {
    version: u32,
    /// The sessions folder the index was built from.
    source: String,
    files: HashMap<String, Mark>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
struct Mark {
    dev: u64,
    ino: u64,
    /// Bytes of complete lines indexed.
    len: u64,
}

/// The index and its reader; cheap to clone.
#[derive(Clone)]
pub struct SearchIndex {
    inner: Arc<Inner>,
}

struct Inner {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    /// The catch-up at start is done.
    complete: Arc<AtomicBool>,
}

impl SearchIndex {
    /// Opens (or rebuilds) the index in `dir` for the sessions of `store`,
    /// starts the thread that keeps it up to date and has the store tell it
    /// of every change.
    pub fn open(dir: &Path, store: &Store) -> Result<Self, SearchError> {
        crate::home::create_private_dir(dir)?;
        let source = store.dir().display().to_string();
        let (schema, fields) = schema();
        let (index, marks) = match open_existing(dir, &schema, &source) {
            Ok(found) => found,
            Err(why) => {
                tracing::info!(reason = %why, "building the search index from the transcripts");
                std::fs::remove_dir_all(dir)?;
                crate::home::create_private_dir(dir)?;
                let index = Index::create(
                    dir::PrivateDir::open(dir).map_err(tantivy::TantivyError::from)?,
                    schema,
                    tantivy::IndexSettings::default(),
                )?;
                let marks = Marks {
                    version: SCHEMA_VERSION,
                    source,
                    files: HashMap::new(),
                };
                (index, marks)
            }
        };
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let writer = index.writer_with_num_threads(1, WRITER_BYTES)?;
        let complete = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        store.on_change(Arc::new(move |session_id| {
            // Only fails once the thread is gone, and then nobody listens.
            let _ = tx.send(session_id.to_owned());
        }));
        let mut indexer = Indexer {
            writer,
            committed: marks.clone(),
            marks,
            store: store.clone(),
            fields,
            reader: reader.clone(),
            pending: 0,
            changed: true,
        };
        let done = complete.clone();
        std::thread::Builder::new()
            .name("search-index".into())
            .spawn(move || {
                indexer.catch_up();
                done.store(true, Ordering::SeqCst);
                indexer.follow(rx);
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                index,
                reader,
                fields,
                complete,
            }),
        })
    }

    /// Whether the catch-up at start has finished.
    pub fn complete(&self) -> bool {
        self.inner.complete.load(Ordering::SeqCst)
    }

    /// The best `limit` messages holding every word of `query` (words as
    /// the index splits text: letters and digits, lowercased), of one
    /// session when `session_id` is given. Blocking.
    pub fn search(
        &self,
        query: &str,
        session_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Found>, SearchError> {
        if query.len() > SEARCH_QUERY_MAX_BYTES {
            return Err(SearchError::TooLong);
        }
        let f = self.inner.fields;
        let mut analyzer = self.inner.index.tokenizer_for_field(f.text)?;
        let mut words = Vec::new();
        let mut stream = analyzer.token_stream(query);
        while stream.advance() {
            let word = stream.token().text.clone();
            if !words.contains(&word) {
                words.push(word);
            }
        }
        if words.is_empty() {
            return Err(SearchError::NoWords);
        }
        let every_word = || -> Vec<(Occur, Box<dyn Query>)> {
            words
                .iter()
                .map(|w| {
                    let q: Box<dyn Query> = Box::new(TermQuery::new(
                        Term::from_field_text(f.text, w),
                        IndexRecordOption::WithFreqs,
                    ));
                    (Occur::Must, q)
                })
                .collect()
        };
        // The snippets look for the words only, not the session.
        let text_query = BooleanQuery::new(every_word());
        let mut clauses = every_word();
        if let Some(id) = session_id {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.session, id),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.inner.reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(limit.max(1)).order_by_score())?;
        let mut snippets = SnippetGenerator::create(&searcher, &text_query, f.text)?;
        snippets.set_max_num_chars(SNIPPET_CHARS);
        let mut found = Vec::with_capacity(top.len());
        for (_, address) in top {
            let doc: TantivyDocument = searcher.doc(address)?;
            let text_of = |field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let role = match text_of(f.role).as_str() {
                "assistant" => Role::Assistant,
                _ => Role::User,
            };
            let snippet = snippets.snippet_from_doc(&doc);
            let (snippet, snippet_html) = if snippet.fragment().is_empty() {
                // No word inside the snippet's reach (a long message whose
                // words are far apart): its start instead.
                let text = text_of(f.text);
                let start: String = text.chars().take(SNIPPET_CHARS).collect();
                let html = marked(&start, &[]);
                (start, html)
            } else {
                (
                    snippet.fragment().to_owned(),
                    marked(snippet.fragment(), snippet.highlighted()),
                )
            };
            found.push(Found {
                session_id: text_of(f.session),
                message_id: text_of(f.id),
                role,
                timestamp: text_of(f.time),
                snippet,
                snippet_html,
            });
        }
        Ok(found)
    }
}

/// `fragment` escaped for HTML, the `ranges` (byte ranges into it) in
/// `<mark>`: the only markup the result can hold.
fn marked(fragment: &str, ranges: &[std::ops::Range<usize>]) -> String {
    let mut out = String::with_capacity(fragment.len() + 16 * ranges.len());
    let mut at = 0;
    for r in ranges {
        if r.start < at
            || r.end > fragment.len()
            || r.start >= r.end
            || !fragment.is_char_boundary(r.start)
            || !fragment.is_char_boundary(r.end)
        {
            continue;
        }
        let _ = pulldown_cmark_escape::escape_html(&mut out, &fragment[at..r.start]);
        out.push_str("<mark>");
        let _ = pulldown_cmark_escape::escape_html(&mut out, &fragment[r.clone()]);
        out.push_str("</mark>");
        at = r.end;
    }
    let _ = pulldown_cmark_escape::escape_html(&mut out, &fragment[at..]);
    out
}

/// The index in `dir` with its marks, if it is whole and of this schema,
/// version and store; else why not.
fn open_existing(dir: &Path, schema: &Schema, source: &str) -> Result<(Index, Marks), String> {
    let index = Index::open(dir::PrivateDir::open(dir).map_err(|e| e.to_string())?)
        .map_err(|e| format!("cannot open it: {e}"))?;
    if index.schema() != *schema {
        return Err("another schema".into());
    }
    let payload = index
        .load_metas()
        .map_err(|e| format!("cannot read its metadata: {e}"))?
        .payload
        .ok_or("it has no marks")?;
    let marks: Marks =
        serde_json::from_str(&payload).map_err(|e| format!("its marks do not parse: {e}"))?;
    if marks.version != SCHEMA_VERSION {
        return Err(format!("version {} (now {SCHEMA_VERSION})", marks.version));
    }
    if marks.source != source {
        return Err("built from another sessions folder".into());
    }
    // Opening a reader opens every segment: a missing or cut file shows.
    let reader: IndexReader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(|e| format!("cannot read it: {e}"))?;
    let searcher = reader.searcher();
    for segment in searcher.segment_readers() {
        segment
            .get_store_reader(0)
            .map_err(|e| format!("a segment cannot be read: {e}"))?;
    }
    Ok((index, marks))
}

/// The indexing thread's state.
struct Indexer {
    writer: IndexWriter,
    /// What the last commit recorded.
    committed: Marks,
    marks: Marks,
    store: Store,
    fields: Fields,
    reader: IndexReader,
    /// Documents added since the last commit.
    pending: usize,
    /// Something to commit (documents, deletions or marks).
    changed: bool,
}

impl Indexer {
    /// Every session brought up to date, and what no session names any more
    /// removed.
    fn catch_up(&mut self) {
        let started = Instant::now();
        self.sweep();
        tracing::info!(
            sessions = self.marks.files.len(),
            ms = started.elapsed().as_millis() as u64,
            "the search index is up to date"
        );
    }

    fn sweep(&mut self) {
        let sessions = self.store.sessions();
        let live: HashSet<String> = sessions.iter().map(|s| s.session_id.clone()).collect();
        let gone: Vec<String> = self
            .marks
            .files
            .keys()
            .filter(|id: &&String| !live.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.forget(&id);
        }
        for s in &sessions {
            self.update(&s.session_id);
            if self.pending >= COMMIT_EVERY {
                self.commit();
            }
        }
        self.commit();
    }

    /// Follows the store's reports until the relay exits.
    fn follow(&mut self, rx: Receiver<String>) {
        let mut last_sweep = Instant::now();
        loop {
            let first = match rx.recv_timeout(SWEEP_EVERY) {
                Ok(id) => Some(id),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            if let Some(first) = first {
                let mut dirty = HashSet::from([first]);
                let until = Instant::now() + BATCH_WAIT;
                while let Ok(id) = rx.recv_timeout(until.saturating_duration_since(Instant::now()))
                {
                    dirty.insert(id);
                }
                for id in dirty {
                    self.update(&id);
                }
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                self.sweep();
                last_sweep = Instant::now();
            }
            self.commit();
        }
    }

    fn update(&mut self, session_id: &str) {
        if let Err(e) = self.read_new_lines(session_id) {
            // Tried again by the next sweep: the mark did not move.
            tracing::warn!(error = %e, session_id, "cannot index a transcript");
        }
    }

    fn forget(&mut self, session_id: &str) {
        self.writer
            .delete_term(Term::from_field_text(self.fields.session, session_id));
        self.marks.files.remove(session_id);
        self.changed = true;
    }

    /// Indexes the complete lines of the transcript after its mark (all of
    /// them if it was replaced or cut shorter).
    fn read_new_lines(&mut self, session_id: &str) -> Result<(), SearchError> {
        let Some(path) = self.store.transcript_path(session_id) else {
            return Ok(());
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.marks.files.contains_key(session_id) {
                    self.forget(session_id);
                }
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let meta = file.metadata()?;
        let size = meta.len();
        let mark = self.marks.files.get(session_id).copied();
        let same_file = |m: &Mark| m.dev == meta.dev() && m.ino == meta.ino();
        if mark.is_some_and(|m| same_file(&m) && m.len == size) {
            return Ok(());
        }
        let mut start = match mark {
            Some(m) if same_file(&m) && m.len <= size => m.len,
            // Replaced or cut shorter: what was indexed may be gone.
            Some(_) => {
                self.forget(session_id);
                0
            }
            None => 0,
        };
        let mut buf = vec![0u8; CHUNK];
        // Bytes of a line that started in an earlier chunk.
        let mut line = Vec::new();
        let mut pos = start;
        while pos < size {
            let n = (size - pos).min(CHUNK as u64) as usize;
            file.read_exact_at(&mut buf[..n], pos)?;
            let mut rest = &buf[..n];
            while let Some(i) = rest.iter().position(|b| *b == b'\n') {
                line.extend_from_slice(&rest[..i]);
                self.add_line(session_id, &line, start);
                start += line.len() as u64 + 1;
                line.clear();
                rest = &rest[i + 1..];
            }
            line.extend_from_slice(rest);
            pos += n as u64;
        }
        self.marks.files.insert(
            session_id.to_owned(),
            Mark {
                dev: meta.dev(),
                ino: meta.ino(),
                len: start,
            },
        );
        self.changed = true;
        Ok(())
    }

    fn add_line(&mut self, session_id: &str, line: &[u8], offset: u64) {
        let Some(entry) = parse_entry(line, offset) else {
            return;
        };
        let Kind::Message(m) = entry.kind else {
            return;
        };
        let m = m.message;
        let role = match m.role {
            _ if m.kind.is_some() => return,
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System | Role::ToolResult => return,
        };
        let mut text = m.content.text();
        if text.trim().is_empty() {
            return;
        }
        if text.len() > MAX_TEXT_BYTES {
            let mut cut = MAX_TEXT_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let f = self.fields;
        let mut doc = TantivyDocument::default();
        doc.add_text(f.session, session_id);
        doc.add_text(f.id, &m.id);
        doc.add_text(f.role, role);
        doc.add_text(f.time, &m.timestamp);
        doc.add_text(f.text, &text);
        if let Err(e) = self.writer.add_document(doc) {
            tracing::warn!(error = %e, "cannot add a message to the search index");
            return;
        }
        self.pending += 1;
    }

    fn commit(&mut self) {
        if !self.changed {
            return;
        }
        let payload = match serde_json::to_string(&self.marks) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot write the search index's marks");
                return;
            }
        };
        let committed = self.writer.prepare_commit().and_then(|mut prepared| {
            prepared.set_payload(&payload);
            prepared.commit()
        });
        match committed {
            Ok(_) => {
                self.committed = self.marks.clone();
                if let Err(e) = self.reader.reload() {
                    tracing::warn!(error = %e, "cannot reload the search index");
                }
            }
            Err(e) => {
                // Back to the last commit; the sweep reads again what it
                // lost (its marks went back too).
                tracing::error!(error = %e, "cannot commit the search index");
                if let Err(e) = self.writer.rollback() {
                    tracing::error!(error = %e, "cannot roll the search index back");
                }
                self.marks = self.committed.clone();
            }
        }
        self.pending = 0;
        self.changed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::marked;

    #[test]
    fn snippets_escape_everything_but_their_marks() {
        let text = "<script>alert(1)</script> & <img src=x onerror=y> here";
        let start = text.find("here").unwrap_or(0);
        let here = start..start + 4;
        let html = marked(text, std::slice::from_ref(&here));
        assert_eq!(
            html,
            "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;img src=x onerror=y&gt; <mark>here</mark>"
        );
        // Ranges that overlap, run past the end or split a character are
        // dropped, not trusted.
        assert_eq!(
            marked("é<", &[0..1, 1..9, 0..2, 0..2]),
            "<mark>é</mark>&lt;"
        );
    }
}
