//! Deleted sessions: `<home>/archive/`, holding each archived transcript
//! (`<sessionId>.jsonl`, moved there by `rename`, so its bytes are the
//! session's own) and `archive.json`, the archive's index.
//!
//! A move is three steps, each durable before the next: the archive's entry
//! is written, the transcript is renamed, the session's index entry is
//! removed (restore: renamed back, index entry written, archive entry
//! removed; purge: file removed, then its entry). A rename is atomic, so the
//! transcript is always in exactly one of the two folders, and
//! [`reconcile`] finishes or undoes whatever a crash interrupted by looking
//! at where it is.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::index::{self, Entries};

/// One archived session in `archive.json` (keyed by its sessionId).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedEntry {
    /// The key it had (and gets back on restore).
    pub key: String,
    /// Epoch ms.
    pub archived_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A transcript was moved (a session created but never written has none).
    pub file: bool,
    /// Its `sessions.json` entry, every field as it was.
    pub entry: Map<String, Value>,
}

impl ArchivedEntry {
    pub fn updated_at(&self) -> i64 {
        self.entry
            .get("updatedAt")
            .and_then(Value::as_i64)
            .unwrap_or(0)
    }
}

pub(crate) type ArchiveIndex = BTreeMap<String, ArchivedEntry>;

pub(crate) struct Paths {
    pub dir: PathBuf,
    pub index: PathBuf,
}

impl Paths {
    pub fn new(dir: PathBuf) -> Self {
        let index = dir.join(loopchat_proto::home::ARCHIVE_INDEX_FILE);
        Self { dir, index }
    }

    pub fn transcript(&self, session_id: &str) -> PathBuf {
        self.dir.join(format!("{session_id}.jsonl"))
    }

    /// The archive's index; none yet is an empty one.
    pub fn read(&self) -> io::Result<ArchiveIndex> {
        match fs::read(&self.index) {
            Ok(bytes) => {
                let index: ArchiveIndex = serde_json::from_slice(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is not a valid archive index: {e}", self.index.display()),
                    )
                })?;
                // A sessionId names a file here too.
                Ok(index
                    .into_iter()
                    .filter(|(id, _)| index::is_safe_session_id(id))
                    .collect())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ArchiveIndex::new()),
            Err(e) => Err(e),
        }
    }

    pub fn write(&self, archive: &ArchiveIndex) -> io::Result<()> {
        crate::home::create_private_dir(&self.dir)?;
        let bytes = serde_json::to_vec_pretty(archive).map_err(io::Error::other)?;
        crate::durable::write_atomically(&self.index, &bytes).map(|_| ())
    }
}

/// Renames `from` to `to` and makes both directory entries durable.
pub(crate) fn move_durably(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    for dir in [to.parent(), from.parent()].into_iter().flatten() {
        fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What [`reconcile`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Reconciled {
    pub live_changed: bool,
    pub archive_changed: bool,
}

/// Finishes or undoes the moves a crash interrupted, from where each
/// archived transcript is now: still (or again) in the sessions folder →
/// the session is live (its index entry put back if missing); in the
/// archive (or never written) → archived (its index entry removed); in
/// neither → purged.
pub(crate) fn reconcile(
    paths: &Paths,
    sessions_dir: &Path,
    live: &mut Entries,
    archive: &mut ArchiveIndex,
) -> Reconciled {
    let mut out = Reconciled::default();
    let live_id = |live: &Entries, key: &str| {
        live.get(key)
            .and_then(|raw| raw.get("sessionId"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    archive.retain(|id, e| {
        let archived = !e.file || paths.transcript(id).exists();
        if archived {
            if live_id(live, &e.key).as_deref() == Some(id.as_str()) {
                live.remove(&e.key);
                out.live_changed = true;
                tracing::info!(session = %e.key, "finished archiving a session a stop interrupted");
            }
            return true;
        }
        if sessions_dir.join(format!("{id}.jsonl")).exists() {
            match live_id(live, &e.key) {
                Some(other) if other == *id => {}
                Some(_) => {
                    tracing::warn!(session = %e.key, "an archived session's transcript is back in the sessions folder, but its key is in use: left in the archive list");
                    return true;
                }
                None => {
                    live.insert(e.key.clone(), e.entry.clone());
                    out.live_changed = true;
                    tracing::info!(session = %e.key, "finished restoring a session a stop interrupted");
                }
            }
        }
        out.archive_changed = true;
        false
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(key: &str, id: &str, file: bool) -> ArchivedEntry {
        ArchivedEntry {
            key: key.into(),
            archived_at: 1,
            title: None,
            file,
            entry: json!({"sessionId": id, "updatedAt": 5})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }

    #[test]
    fn reconcile_follows_the_transcript() {
        let tmp = tempfile::tempdir().unwrap();
        let sessions = tmp.path().join("sessions");
        let paths = Paths::new(tmp.path().join("archive"));
        fs::create_dir_all(&sessions).unwrap();
        fs::create_dir_all(&paths.dir).unwrap();
        // a: crashed after the rename into the archive (index entry left).
        fs::write(paths.transcript("a1"), "x\n").unwrap();
        // b: crashed after the archive entry, before the rename.
        fs::write(sessions.join("b1.jsonl"), "x\n").unwrap();
        // c: crashed mid-restore, after the rename back.
        fs::write(sessions.join("c1.jsonl"), "x\n").unwrap();
        // d: purged, its entry not yet removed.
        let mut live: Entries = serde_json::from_value(json!({
            "a": {"sessionId": "a1"},
            "b": {"sessionId": "b1"},
        }))
        .unwrap();
        let mut archive: ArchiveIndex = [
            ("a1".to_owned(), entry("a", "a1", true)),
            ("b1".to_owned(), entry("b", "b1", true)),
            ("c1".to_owned(), entry("c", "c1", true)),
            ("d1".to_owned(), entry("d", "d1", true)),
        ]
        .into_iter()
        .collect();
        let out = reconcile(&paths, &sessions, &mut live, &mut archive);
        assert!(out.live_changed && out.archive_changed);
        assert_eq!(archive.keys().collect::<Vec<_>>(), ["a1"]);
        assert_eq!(live.keys().collect::<Vec<_>>(), ["b", "c"]);
        assert_eq!(live["c"]["updatedAt"], 5);
    }
}
