//! `sessions.json`: session key → `{sessionId, updatedAt, thinkingLevel, …}`.
//!
//! Entries are kept as raw JSON objects so that fields written by other tools
//! (Clawdis/pi keep more per session) survive our rewrites untouched. Another
//! program may also rewrite the file while the relay runs: [`merge`] folds
//! its changes into the relay's before the relay writes the file again.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use loopchat_proto::ThinkingLevel;
use serde_json::{Map, Value};

pub(crate) type Entries = BTreeMap<String, Map<String, Value>>;

/// A session as the rest of the relay sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEntry {
    pub key: String,
    pub session_id: String,
    pub updated_at: i64,
    pub thinking_level: String,
    /// Pinned to the top of the list (loopchat's own field).
    pub pinned: bool,
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
            pinned: raw.get("pinned").and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

impl SessionEntry {
    /// The level a turn of this session uses: one another tool wrote that
    /// the protocol does not know reads as off.
    pub fn thinking(&self) -> ThinkingLevel {
        ThinkingLevel::parse(&self.thinking_level).unwrap_or_default()
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

/// Which version of the index file is on disk: another program's rewrite
/// changes at least one of these (a rename brings a new inode, an in-place
/// write a new size or mtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Stamp {
    pub(crate) fn of(meta: &fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// The stamp of the index file at `path`; `None` when there is none.
pub(crate) fn stamp(path: &Path) -> io::Result<Option<Stamp>> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(Stamp::of(&meta))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the index and the stamp of the very file read; a missing file is
/// an empty index.
pub(crate) fn read_index(path: &Path) -> io::Result<(Entries, Option<Stamp>)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Entries::new(), None)),
        Err(e) => return Err(e),
    };
    let stamp = Stamp::of(&file.metadata()?);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let entries = parse_index(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a valid session index: {e}", path.display()),
        )
    })?;
    Ok((entries, Some(stamp)))
}

/// Folds another program's version of the index (`theirs`) into the
/// relay's (`ours`), both descended from `base`, what the file held when the
/// relay last read or wrote it.
///
/// Per entry and then per field, whichever side changed something since
/// `base` keeps its change; where both changed the same field, the relay's
/// value wins. So an entry another program added (or a field it set) survives
/// the relay's next write, an entry it removed stays removed unless the
/// relay changed it meanwhile, and the relay's own sessions never lose what it
/// wrote.
pub(crate) fn merge(base: &Entries, ours: &mut Entries, theirs: &Entries) {
    let keys: std::collections::BTreeSet<&String> = base
        .keys()
        .chain(ours.keys())
        .chain(theirs.keys())
        .collect();
    let mut merged = Entries::new();
    for key in keys {
        let (b, o, t) = (base.get(key), ours.get(key), theirs.get(key));
        let entry = if o == b {
            t.cloned()
        } else if t == b {
            o.cloned()
        } else {
            match (o, t) {
                (None, t) => t.cloned(),
                (Some(o), None) => Some(o.clone()),
                (Some(o), Some(t)) => Some(merge_fields(b, o, t)),
            }
        };
        if let Some(entry) = entry {
            merged.insert(key.clone(), entry);
        }
    }
    *ours = merged;
}

fn merge_fields(
    base: Option<&Map<String, Value>>,
    ours: &Map<String, Value>,
    theirs: &Map<String, Value>,
) -> Map<String, Value> {
    let empty = Map::new();
    let base = base.unwrap_or(&empty);
    let fields: std::collections::BTreeSet<&String> = base
        .keys()
        .chain(ours.keys())
        .chain(theirs.keys())
        .collect();
    let mut merged = Map::new();
    for field in fields {
        let (b, o, t) = (base.get(field), ours.get(field), theirs.get(field));
        if let Some(v) = if o == b { t } else { o } {
            merged.insert(field.clone(), v.clone());
        }
    }
    merged
}

/// Replaces `path` atomically ([`crate::durable::write_atomically`]),
/// returning the stamp of the file written (taken from the file itself, so
/// another program's write right after the rename is not mistaken for ours).
pub(crate) fn write_atomically_stamped(path: &Path, bytes: &[u8]) -> io::Result<Stamp> {
    crate::durable::write_atomically(path, bytes).map(|written| Stamp::of(&written))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entries(v: Value) -> Entries {
        parse_index(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn merging_keeps_both_sides_changes() {
        let base = entries(json!({
            "a": {"sessionId": "a1", "updatedAt": 1, "model": "m"},
            "gone": {"sessionId": "g1"},
            "kept": {"sessionId": "k1", "updatedAt": 1},
        }));
        let mut ours = entries(json!({
            "a": {"sessionId": "a1", "updatedAt": 5, "model": "m"},
            "gone": {"sessionId": "g1"},
            "kept": {"sessionId": "k1", "updatedAt": 7},
            "new": {"sessionId": "n1"},
        }));
        let theirs = entries(json!({
            "a": {"sessionId": "a1", "updatedAt": 3, "model": "m2", "extra": true},
            "foreign": {"sessionId": "f1"},
        }));
        merge(&base, &mut ours, &theirs);
        assert_eq!(
            Value::Object(
                ours.into_iter()
                    .map(|(k, v)| (k, Value::Object(v)))
                    .collect()
            ),
            json!({
                // Both changed updatedAt: ours wins; their other fields stay.
                "a": {"sessionId": "a1", "updatedAt": 5, "model": "m2", "extra": true},
                // They removed it and we did not touch it.
                // "gone" is gone.
                // They removed it but we changed it: ours survives.
                "kept": {"sessionId": "k1", "updatedAt": 7},
                "new": {"sessionId": "n1"},
                "foreign": {"sessionId": "f1"},
            })
        );
    }
}
