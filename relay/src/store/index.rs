//! `sessions.json`: session key → `{sessionId, updatedAt, thinkingLevel, …}`.
//!
//! Entries are kept as raw JSON objects so that fields written by other tools
//! (Clawdis/pi keep more per session) survive our rewrites untouched.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde_json::{Map, Value};

pub(crate) type Entries = BTreeMap<String, Map<String, Value>>;

/// A session as the rest of the relay sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    pub key: String,
    pub session_id: String,
    pub updated_at: i64,
    pub thinking_level: String,
}

impl SessionEntry {
    pub(crate) fn from_raw(key: &str, raw: &Map<String, Value>) -> Option<Self> {
        let session_id = raw.get("sessionId")?.as_str()?;
        if !is_safe_session_id(session_id) {
            return None;
        }
        Some(Self {
            key: key.to_owned(),
            session_id: session_id.to_owned(),
            updated_at: raw.get("updatedAt").and_then(Value::as_i64).unwrap_or(0),
            thinking_level: raw
                .get("thinkingLevel")
                .and_then(Value::as_str)
                .unwrap_or("off")
                .to_owned(),
        })
    }
}

/// A sessionId names a file, so one read from a foreign index must not be
/// able to point outside the sessions directory.
pub(crate) fn is_safe_session_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses an index file's contents; a missing file is an empty index.
pub fn parse_index(bytes: &[u8]) -> Result<Entries, serde_json::Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Entries::new());
    }
    let raw: BTreeMap<String, Value> = serde_json::from_slice(bytes)?;
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::Object(m) => Some((k, m)),
            _ => None,
        })
        .collect())
}

/// An index as the store writes it (`sessions.json`, pretty-printed).
pub fn index_bytes(entries: &Entries) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(entries).map_err(io::Error::other)
}

pub(crate) fn read_index(path: &Path) -> io::Result<Entries> {
    match fs::read(path) {
        Ok(bytes) => parse_index(&bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a valid session index: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Entries::new()),
        Err(e) => Err(e),
    }
}

/// Replaces `path` atomically: temp file, fsync, rename, fsync of the
/// directory (so the rename itself survives a crash).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
