//! `notifications.jsonl`: the kept notifications, one JSON object a line,
//! appended as they are posted and compacted by an atomic rewrite.
//!
//! The journal only stores lines; which of them are still kept (the last
//! 500, one per id) is the hub's business. A later line for an id supersedes
//! an earlier one, so an update is just another append. A line torn by a
//! crash was never acknowledged: it is dropped on open, and the file is cut
//! back to its last complete line so that the next append starts clean.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use loopchat_proto::Notification;

use crate::durable::{sync_parent, write_atomically};

pub(crate) struct Journal {
    path: PathBuf,
    /// Shared with flushes, which sync it outside the hub's lock.
    file: Arc<File>,
    /// Bytes of complete lines; a failed append is cut back to this.
    len: u64,
    /// Complete lines in the file (for deciding when to compact).
    lines: usize,
}

/// What [`Journal::open`] found.
pub(crate) struct Loaded {
    pub journal: Journal,
    /// Every readable notification line, in file order (duplicates by id
    /// included: the hub resolves them).
    pub notifications: Vec<Notification>,
}

impl Journal {
    /// Opens (or creates, 0600) the journal and reads it.
    pub fn open(path: &Path) -> io::Result<Loaded> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let mut notifications = Vec::new();
        let mut lines = 0;
        for (i, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines += 1;
            match serde_json::from_slice::<Notification>(line) {
                Ok(n) => notifications.push(n),
                Err(e) => tracing::warn!(
                    file = %path.display(),
                    line = i + 1,
                    error = %e,
                    "skipping an unreadable notification line"
                ),
            }
        }
        let created = !path.exists();
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)?;
        if complete < bytes.len() {
            tracing::warn!(
                file = %path.display(),
                bytes = bytes.len() - complete,
                "dropping a torn last notification line"
            );
            file.set_len(complete as u64)?;
            file.sync_data()?;
        }
        if created {
            sync_parent(path)?;
        }
        Ok(Loaded {
            journal: Self {
                path: path.to_owned(),
                file: Arc::new(file),
                len: complete as u64,
                lines,
            },
            notifications,
        })
    }

    /// Bytes of complete lines.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn lines(&self) -> usize {
        self.lines
    }

    /// The open file, for a flush to sync.
    pub fn file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Appends one line (not yet durable: see [`File::sync_data`] through
    /// [`Journal::file`]). On failure the file is cut back so no torn line is
    /// left behind for the next append to run into.
    pub fn append(&mut self, n: &Notification) -> io::Result<()> {
        let mut line = serde_json::to_vec(n).map_err(io::Error::other)?;
        line.push(b'\n');
        if let Err(e) = (&*self.file).write_all(&line) {
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        self.len += line.len() as u64;
        self.lines += 1;
        Ok(())
    }

    /// Replaces the file with exactly `kept` (durably: temp file, fsync,
    /// rename, fsync of the directory) and appends to the new file from now.
    pub fn compact<'a>(&mut self, kept: impl Iterator<Item = &'a Notification>) -> io::Result<()> {
        let mut bytes = Vec::new();
        let mut lines = 0;
        for n in kept {
            serde_json::to_writer(&mut bytes, n).map_err(io::Error::other)?;
            bytes.push(b'\n');
            lines += 1;
        }
        write_atomically(&self.path, &bytes)?;
        let file = OpenOptions::new().append(true).open(&self.path)?;
        self.file = Arc::new(file);
        self.len = bytes.len() as u64;
        self.lines = lines;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn note(seq: u64) -> Notification {
        Notification {
            id: format!("n{seq}"),
            seq,
            title: "t".into(),
            body: "b".into(),
            priority: 3,
            tags: vec![],
            click: None,
            session: None,
            timestamp: "2024-01-01T00:00:00Z".into(),
            ..Default::default()
        }
    }

    #[test]
    fn torn_tail_is_cut_and_appends_stay_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.jsonl");
        let mut j = Journal::open(&path).unwrap().journal;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        j.append(&note(1)).unwrap();
        j.append(&note(2)).unwrap();
        drop(j);
        // A crash in the middle of the third line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"id":"n3","seq":3,"ti"#).unwrap();
        drop(f);
        let loaded = Journal::open(&path).unwrap();
        assert_eq!(
            loaded
                .notifications
                .iter()
                .map(|n| n.seq)
                .collect::<Vec<_>>(),
            [1, 2]
        );
        let mut j = loaded.journal;
        j.append(&note(3)).unwrap();
        drop(j);
        let loaded = Journal::open(&path).unwrap();
        assert_eq!(loaded.notifications.len(), 3);
        assert_eq!(loaded.journal.lines(), 3);
    }

    #[test]
    fn compaction_rewrites_and_keeps_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.jsonl");
        let mut j = Journal::open(&path).unwrap().journal;
        for seq in 1..=10 {
            j.append(&note(seq)).unwrap();
        }
        let keep = [note(9), note(10)];
        j.compact(keep.iter()).unwrap();
        j.append(&note(11)).unwrap();
        assert_eq!(j.lines(), 3);
        let loaded = Journal::open(&path).unwrap();
        assert_eq!(
            loaded
                .notifications
                .iter()
                .map(|n| n.seq)
                .collect::<Vec<_>>(),
            [9, 10, 11]
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
