//! `$LOOPCHAT_HOME/shell-alerts.json`: which alerts the shells of this home
//! have already handled, per relay, so that two shell windows — or a shell
//! restarted after a crash — never raise the same alert twice.
//!
//! Every read-modify-write happens under an exclusive `flock(2)` on the
//! sibling `shell-alerts.lock` (not on the JSON file itself: that one is
//! replaced by an atomic rename on every write, and a lock on a replaced
//! inode protects nothing). The lock is held for the short time of a
//! read and a write, never across network or D-Bus calls.
//!
//! Per relay the record keeps:
//! - `lastSeq`: the highest notification seq handled — raised, or
//!   deliberately not raised (alerts paused, window focused). A relay's
//!   notification seqs grow by one per post and keep growing across its
//!   restarts, so "seq > lastSeq" is exactly "not handled yet", whichever
//!   shell looks;
//! - `recent`: the last [`RECENT`] alerts handled (id, seq, and for those
//!   raised, the desktop's notification id and the raising shell's pid), so
//!   that an update of an alert (same id, new seq) replaces its popup
//!   instead of adding one, and a click is acted on by one shell only;
//!
//! and, apart (`focused`), the pids of shell windows on each relay that have
//! the focus now (dead pids are ignored and dropped).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use loopchat_proto::pid_exists;
use serde::{Deserialize, Serialize};

/// File name inside the loopchat home.
pub const RECORD_FILE: &str = "shell-alerts.json";
/// The lock file next to it.
pub const LOCK_FILE: &str = "shell-alerts.lock";
/// How many handled alerts are remembered per relay.
pub const RECENT: usize = 64;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordFile {
    #[serde(default)]
    version: u32,
    #[serde(default)]
    relays: BTreeMap<String, RelayEntry>,
    /// Per relay, pids of shell windows on it that have the focus now. Kept
    /// apart from `relays`: a window can be focused on a relay whose alerts
    /// were never read yet.
    #[serde(default)]
    focused: BTreeMap<String, Vec<u32>>,
    /// Unknown fields, preserved on rewrite.
    #[serde(flatten)]
    extra: serde_json::Map<String, serde_json::Value>,
}

/// What the record holds for one relay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayEntry {
    /// Highest seq handled (raised or deliberately not raised).
    pub last_seq: u64,
    /// Recently handled alerts, oldest first.
    #[serde(default)]
    pub recent: Vec<Handled>,
}

/// One handled alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handled {
    pub id: String,
    pub seq: u64,
    /// The notification daemon's id, once raised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desktop_id: Option<u32>,
    /// The shell that raised it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

/// Where a subscriber starts reading a relay's notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Known relay: everything after `lastSeq` is new.
    Resume(u64),
    /// Never seen: its history is not replayed; only what comes after its
    /// newest notification is raised.
    FirstSighting(u64),
    /// The relay's newest seq is below what was recorded: its notification
    /// log started over (a new home). Everything it keeps is new.
    RelayReset { recorded: u64 },
}

impl Start {
    /// The seq to read after.
    pub fn from(self) -> u64 {
        match self {
            Start::Resume(s) | Start::FirstSighting(s) => s,
            Start::RelayReset { .. } => 0,
        }
    }
}

/// The outcome of [`AlertRecord::claim`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// For each alert passed in, in order: `None` if another shell (or this
    /// one, earlier) already handled it; else `Some(replaces)`, the desktop
    /// id of an earlier raised version of the same alert id, if any.
    pub fresh: Vec<Option<Option<u32>>>,
    /// Another live shell window on this relay has the focus.
    pub focused_elsewhere: bool,
}

/// The record file of one loopchat home.
#[derive(Debug, Clone)]
pub struct AlertRecord {
    path: PathBuf,
    lock: PathBuf,
}

impl AlertRecord {
    pub fn new(home: &Path) -> Self {
        Self {
            path: home.join(RECORD_FILE),
            lock: home.join(LOCK_FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Decides where to start for `relay`, whose newest kept notification
    /// has seq `newest` (0: none kept), and records it.
    pub fn start(&self, relay: &str, newest: u64) -> io::Result<Start> {
        self.update(|file| {
            let start = match file.relays.get(relay) {
                None => Start::FirstSighting(newest),
                Some(e) if e.last_seq > newest => Start::RelayReset {
                    recorded: e.last_seq,
                },
                Some(e) => Start::Resume(e.last_seq),
            };
            let entry = file.relays.entry(relay.to_owned()).or_default();
            match start {
                Start::FirstSighting(s) => entry.last_seq = s,
                Start::RelayReset { .. } => {
                    // A new log: seqs and ids of the old one mean nothing.
                    entry.last_seq = 0;
                    entry.recent.clear();
                }
                Start::Resume(_) => {}
            }
            start
        })
    }

    /// Claims `alerts` (id, seq), in order, for the shell `pid`: each one
    /// not handled yet becomes handled by this call, so no other shell will
    /// claim it. Call it before raising anything.
    pub fn claim(&self, relay: &str, alerts: &[(&str, u64)], pid: u32) -> io::Result<Claims> {
        self.update(|file| {
            let entry = file.relays.entry(relay.to_owned()).or_default();
            let mut fresh = Vec::with_capacity(alerts.len());
            for &(id, seq) in alerts {
                if seq <= entry.last_seq {
                    fresh.push(None);
                    continue;
                }
                entry.last_seq = seq;
                let replaces = entry
                    .recent
                    .iter()
                    .rev()
                    .find(|h| h.id == id && h.desktop_id.is_some())
                    .and_then(|h| h.desktop_id);
                entry.recent.push(Handled {
                    id: id.to_owned(),
                    seq,
                    desktop_id: None,
                    pid: None,
                });
                fresh.push(Some(replaces));
            }
            let excess = entry.recent.len().saturating_sub(RECENT);
            entry.recent.drain(..excess);
            let focused_elsewhere = file
                .focused
                .get(relay)
                .is_some_and(|pids| pids.iter().any(|p| *p != pid && pid_exists(*p)));
            Claims {
                fresh,
                focused_elsewhere,
            }
        })
    }

    /// Records that the shell `pid` raised the alert `seq` as the desktop's
    /// notification `desktop_id`.
    pub fn raised(&self, relay: &str, seq: u64, desktop_id: u32, pid: u32) -> io::Result<()> {
        self.update(|file| {
            let entry = file.relays.entry(relay.to_owned()).or_default();
            if let Some(h) = entry.recent.iter_mut().rev().find(|h| h.seq == seq) {
                h.desktop_id = Some(desktop_id);
                h.pid = Some(pid);
            }
        })
    }

    /// The alert (seq, pid) now shown as the desktop's notification
    /// `desktop_id`: the latest raised with that id. A click is acted on by
    /// that shell only, for that version only.
    pub fn shown_as(&self, relay: &str, desktop_id: u32) -> io::Result<Option<(u64, u32)>> {
        self.read(|file| {
            file.relays.get(relay).and_then(|e| {
                e.recent
                    .iter()
                    .rev()
                    .find(|h| h.desktop_id == Some(desktop_id))
                    .and_then(|h| Some((h.seq, h.pid?)))
            })
        })
    }

    /// Records whether the window of shell `pid` on `relay` has the focus.
    pub fn set_focused(&self, relay: &str, pid: u32, focused: bool) -> io::Result<()> {
        self.update(|file| {
            let pids = file.focused.entry(relay.to_owned()).or_default();
            pids.retain(|p| *p != pid && pid_exists(*p));
            if focused {
                pids.push(pid);
            }
            if pids.is_empty() {
                file.focused.remove(relay);
            }
        })
    }

    /// The entry of `relay`, as recorded.
    pub fn entry(&self, relay: &str) -> io::Result<Option<RelayEntry>> {
        self.read(|file| file.relays.get(relay).cloned())
    }

    fn read<T>(&self, f: impl FnOnce(&RecordFile) -> T) -> io::Result<T> {
        let _lock = self.lock()?;
        Ok(f(&self.load()))
    }

    /// Read, change, write — under the lock.
    fn update<T>(&self, f: impl FnOnce(&mut RecordFile) -> T) -> io::Result<T> {
        let _lock = self.lock()?;
        let mut file = self.load();
        let out = f(&mut file);
        file.version = 1;
        self.store(&file)?;
        Ok(out)
    }

    fn lock(&self) -> io::Result<Flock> {
        if let Some(dir) = self.lock.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&self.lock)?;
        loop {
            // SAFETY: flock on a file descriptor we own; released when the
            // file is closed (Flock's drop).
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Ok(Flock(file));
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// The file's contents; a missing or corrupt file is an empty record (a
    /// corrupt one with a warning): at worst an alert is raised again.
    fn load(&self) -> RecordFile {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %self.path.display(), error = %e, "ignoring a corrupt alerts record");
                RecordFile::default()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => RecordFile::default(),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot read the alerts record");
                RecordFile::default()
            }
        }
    }

    /// Replaced atomically: a reader never sees half a file, even one that
    /// does not take the lock.
    fn store(&self, file: &RecordFile) -> io::Result<()> {
        let mut body = serde_json::to_vec_pretty(file).map_err(io::Error::other)?;
        body.push(b'\n');
        loopchat_proto::home::write_atomically(&self.path, &body).map(drop)
    }
}

/// An exclusive flock, released on drop (closing the file releases it).
struct Flock(#[allow(dead_code)] File);

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};
    use std::time::{Duration, Instant};

    #[test]
    fn first_sighting_does_not_replay_history_then_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let r = AlertRecord::new(dir.path());
        assert_eq!(r.start("local", 7).unwrap(), Start::FirstSighting(7));
        assert_eq!(r.entry("local").unwrap().unwrap().last_seq, 7);
        let c = r.claim("local", &[("a", 7), ("b", 8)], 1).unwrap();
        assert_eq!(c.fresh, vec![None, Some(None)]);
        // Restarted later: resumes where the record is.
        assert_eq!(r.start("local", 12).unwrap(), Start::Resume(8));
        assert_eq!(Start::Resume(8).from(), 8);
        // Another relay is independent.
        assert_eq!(r.start("ssh:x", 3).unwrap(), Start::FirstSighting(3));
    }

    #[test]
    fn a_relay_whose_log_started_over_is_read_from_zero() {
        let dir = tempfile::tempdir().unwrap();
        let r = AlertRecord::new(dir.path());
        r.start("local", 40).unwrap();
        r.claim("local", &[("x", 41)], 1).unwrap();
        let s = r.start("local", 2).unwrap();
        assert_eq!(s, Start::RelayReset { recorded: 41 });
        assert_eq!(s.from(), 0);
        let e = r.entry("local").unwrap().unwrap();
        assert_eq!((e.last_seq, e.recent.len()), (0, 0));
        assert_eq!(
            r.claim("local", &[("x", 1), ("y", 2)], 1).unwrap().fresh,
            vec![Some(None), Some(None)]
        );
        // The second shell to look sees a consistent record: no reset again.
        assert_eq!(r.start("local", 2).unwrap(), Start::Resume(2));
    }

    #[test]
    fn an_update_replaces_the_raised_popup_and_clicks_have_one_owner() {
        let dir = tempfile::tempdir().unwrap();
        let r = AlertRecord::new(dir.path());
        r.start("local", 0).unwrap();
        assert_eq!(
            r.claim("local", &[("deploy", 1)], 10).unwrap().fresh,
            vec![Some(None)]
        );
        r.raised("local", 1, 77, 10).unwrap();
        assert_eq!(r.shown_as("local", 77).unwrap(), Some((1, 10)));
        // Same id, new seq, claimed by another shell: replaces popup 77.
        assert_eq!(
            r.claim("local", &[("deploy", 2)], 20).unwrap().fresh,
            vec![Some(Some(77))]
        );
        r.raised("local", 2, 77, 20).unwrap();
        // A click on 77 now belongs to shell 20, for seq 2.
        assert_eq!(r.shown_as("local", 77).unwrap(), Some((2, 20)));
        assert_eq!(r.shown_as("local", 78).unwrap(), None);
    }

    #[test]
    fn recent_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let r = AlertRecord::new(dir.path());
        r.start("local", 0).unwrap();
        let ids: Vec<String> = (1..=200).map(|i| format!("n{i}")).collect();
        let alerts: Vec<(&str, u64)> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.as_str(), i as u64 + 1))
            .collect();
        r.claim("local", &alerts, 1).unwrap();
        let e = r.entry("local").unwrap().unwrap();
        assert_eq!(e.recent.len(), RECENT);
        assert_eq!(e.recent.last().unwrap().seq, 200);
        assert_eq!(e.last_seq, 200);
    }

    #[test]
    fn focus_of_other_live_windows_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let r = AlertRecord::new(dir.path());
        r.start("local", 0).unwrap();
        let me = std::process::id();
        // Our own focus is not "elsewhere".
        r.set_focused("local", me, true).unwrap();
        assert!(!r.claim("local", &[("a", 1)], me).unwrap().focused_elsewhere);
        // Another shell (pid 1 is alive) looking: it is.
        assert!(r.claim("local", &[("b", 2)], 1).unwrap().focused_elsewhere);
        r.set_focused("local", me, false).unwrap();
        assert!(!r.claim("local", &[("c", 3)], 1).unwrap().focused_elsewhere);
        // A dead window's focus does not count.
        r.set_focused("local", 999_999_999, true).unwrap();
        assert!(!r.claim("local", &[("d", 4)], 1).unwrap().focused_elsewhere);
        r.set_focused("local", me, false).unwrap();
        let text = std::fs::read_to_string(r.path()).unwrap();
        assert!(!text.contains("999999999"), "{text}");
    }

    /// A window focused before its notifier ever read the relay does not
    /// make the relay "known": its history is still not replayed.
    #[test]
    fn focus_does_not_count_as_a_sighting() {
        let dir = tempfile::tempdir().unwrap();
        let r = AlertRecord::new(dir.path());
        r.set_focused("local", std::process::id(), true).unwrap();
        r.set_focused("local", std::process::id(), false).unwrap();
        assert_eq!(r.start("local", 30).unwrap(), Start::FirstSighting(30));
    }

    #[test]
    fn corrupt_record_is_replaced_and_unknown_fields_kept() {
        let dir = tempfile::tempdir().unwrap();
        let r = AlertRecord::new(dir.path());
        std::fs::write(r.path(), "{oops").unwrap();
        assert_eq!(r.start("local", 5).unwrap(), Start::FirstSighting(5));
        std::fs::write(
            r.path(),
            r#"{"version":1,"relays":{"local":{"lastSeq":9}},"future":true}"#,
        )
        .unwrap();
        assert_eq!(r.start("local", 9).unwrap(), Start::Resume(9));
        let text = std::fs::read_to_string(r.path()).unwrap();
        assert!(text.contains("future"), "{text}");
    }

    /// Two writers (each with its own open file, as two processes would
    /// have) claim the same 300 alerts at the same time, in small batches:
    /// every alert is claimed exactly once.
    #[test]
    fn two_writers_never_claim_the_same_alert() {
        let dir = tempfile::tempdir().unwrap();
        AlertRecord::new(dir.path()).start("local", 0).unwrap();
        let barrier = Arc::new(Barrier::new(2));
        let workers: Vec<_> = [101u32, 202]
            .into_iter()
            .map(|pid| {
                let home = dir.path().to_path_buf();
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    let r = AlertRecord::new(&home);
                    barrier.wait();
                    let mut mine = Vec::new();
                    for chunk in (1..=300u64).collect::<Vec<_>>().chunks(3) {
                        let ids: Vec<String> = chunk.iter().map(|s| format!("n{s}")).collect();
                        let alerts: Vec<(&str, u64)> = ids
                            .iter()
                            .zip(chunk)
                            .map(|(id, s)| (id.as_str(), *s))
                            .collect();
                        let claims = r.claim("local", &alerts, pid).unwrap();
                        for (fresh, seq) in claims.fresh.iter().zip(chunk) {
                            if fresh.is_some() {
                                mine.push(*seq);
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        let mut all: Vec<u64> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (1..=300).collect::<Vec<_>>(),
            "each alert exactly once"
        );
    }

    /// The lock is exclusive: a writer waits while another holds it.
    #[test]
    fn the_lock_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let r = AlertRecord::new(dir.path());
        r.start("local", 0).unwrap();
        let held = r.lock().unwrap();
        let home = dir.path().to_path_buf();
        let started = Instant::now();
        let waiter = std::thread::spawn(move || {
            AlertRecord::new(&home)
                .claim("local", &[("a", 1)], 1)
                .unwrap();
            started.elapsed()
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(!waiter.is_finished(), "claimed while the lock was held");
        drop(held);
        assert!(waiter.join().unwrap() >= Duration::from_millis(300));
    }
}
