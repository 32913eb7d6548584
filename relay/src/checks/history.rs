//! A check's last [`KEEP`] runs, durable: `$HOME/checks/<name>.jsonl`, one
//! run per line, appended and synced after each run, rewritten with only
//! the kept ones when it has grown to twice that.

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use loopchat_proto::CheckRun;

pub const KEEP: usize = 50;

pub struct History {
    path: PathBuf,
    runs: VecDeque<CheckRun>,
    lines: usize,
}

impl History {
    /// Reads what is there; a torn or unreadable line is skipped (and gone
    /// at the next rewrite).
    pub fn open(path: &Path) -> io::Result<Self> {
        let text = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut runs = VecDeque::new();
        let mut lines = 0;
        for line in text.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            lines += 1;
            match serde_json::from_slice::<CheckRun>(line) {
                Ok(r) => {
                    runs.push_back(r);
                    if runs.len() > KEEP {
                        runs.pop_front();
                    }
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "skipping an unreadable check run")
                }
            }
        }
        let mut h = Self {
            path: path.to_owned(),
            runs,
            lines,
        };
        if !text.is_empty() && !text.ends_with(b"\n") {
            // A torn last line would glue itself to the next append.
            h.rewrite()?;
        }
        Ok(h)
    }

    pub fn runs(&self) -> impl DoubleEndedIterator<Item = &CheckRun> {
        self.runs.iter()
    }

    pub fn last(&self) -> Option<&CheckRun> {
        self.runs.back()
    }

    /// Appends and syncs (blocking).
    pub fn push(&mut self, run: CheckRun) -> io::Result<()> {
        self.runs.push_back(run.clone());
        if self.runs.len() > KEEP {
            self.runs.pop_front();
        }
        if self.lines + 1 > 2 * KEEP {
            return self.rewrite();
        }
        let mut line = serde_json::to_vec(&run).map_err(io::Error::other)?;
        line.push(b'\n');
        let created = !self.path.exists();
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)?;
        f.write_all(&line)?;
        f.sync_data()?;
        if created {
            crate::durable::sync_parent(&self.path)?;
        }
        self.lines += 1;
        Ok(())
    }

    fn rewrite(&mut self) -> io::Result<()> {
        let mut bytes = Vec::new();
        for r in &self.runs {
            serde_json::to_writer(&mut bytes, r).map_err(io::Error::other)?;
            bytes.push(b'\n');
        }
        crate::durable::write_atomically(&self.path, &bytes)?;
        self.lines = self.runs.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(i: u64) -> CheckRun {
        CheckRun {
            started_at: format!("t{i}"),
            duration_ms: i,
            ..Default::default()
        }
    }

    #[test]
    fn keeps_the_last_50_across_reopen_and_torn_tails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.jsonl");
        let mut h = History::open(&path).unwrap();
        for i in 0..130 {
            h.push(run(i)).unwrap();
        }
        assert_eq!(h.runs().count(), KEEP);
        let h = History::open(&path).unwrap();
        let got: Vec<u64> = h.runs().map(|r| r.duration_ms).collect();
        assert_eq!(got, (80..130).collect::<Vec<_>>());
        assert!(h.lines <= 2 * KEEP);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"startedAt\":\"x").unwrap();
        let mut h = History::open(&path).unwrap();
        h.push(run(500)).unwrap();
        let h = History::open(&path).unwrap();
        assert_eq!(h.last().unwrap().duration_ms, 500);
        assert_eq!(h.runs().count(), KEEP);
    }
}
