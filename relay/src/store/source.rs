//! Where the sessions live: loopchat's own home, pi's session folder, or an
//! OpenClaw (Clawdis) agent's `sessions/` with its `sessions.json`.
//!
//! A foreign store is another tool's data. loopchat reads it where it is, and
//! opening it writes nothing: a missing folder or an index that does not parse
//! is an error, never a reason to create or rewrite something. The rules for
//! what loopchat writes into one later are in docs/protocol.md (decision 52).

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufRead, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::index::{Entries, is_safe_session_id};

/// The `--store` of `loopchat serve`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Source {
    /// `sessions/` in the loopchat home (`sessions.json` + transcripts).
    #[default]
    Home,
    /// pi's session folder: `<dir>/--<cwd>--/<timestamp>_<id>.jsonl`, no index.
    Pi(PathBuf),
    /// An OpenClaw agent's `sessions/`: `sessions.json` + `<sessionId>.jsonl`.
    OpenClaw(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("unknown store {0:?}: use home, pi[=DIR] or openclaw[=DIR]")]
    Unknown(String),
    #[error("cannot find the {0} store: {1}")]
    NoDefault(&'static str, String),
}

impl Source {
    /// Parses `home`, `pi`, `pi=DIR`, `openclaw` or `openclaw=DIR`; the
    /// defaults are resolved from the environment (`HOME`,
    /// `PI_CODING_AGENT_DIR`) as pi and OpenClaw resolve them.
    pub fn parse(s: &str) -> Result<Self, SourceError> {
        let (name, dir) = match s.split_once('=') {
            Some((n, d)) => (n, Some(PathBuf::from(d))),
            None => (s, None),
        };
        let home = || {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from)
        };
        match name {
            "home" if dir.is_none() => Ok(Self::Home),
            "pi" => match dir {
                Some(d) => Ok(Self::Pi(d)),
                None => match (
                    pi_env("PI_CODING_AGENT_SESSION_DIR", home()),
                    pi_env("PI_CODING_AGENT_DIR", home()),
                ) {
                    (Some(sessions), _) => Ok(Self::Pi(sessions)),
                    (None, Some(agent)) => Ok(Self::Pi(agent.join("sessions"))),
                    (None, None) => home()
                        .map(|h| Self::Pi(h.join(".pi/agent/sessions")))
                        .ok_or_else(|| {
                            SourceError::NoDefault(
                                "pi",
                                "neither PI_CODING_AGENT_DIR nor HOME is set".into(),
                            )
                        }),
                },
            },
            "openclaw" => match dir {
                Some(d) => Ok(Self::OpenClaw(d)),
                None => {
                    let h = home().ok_or_else(|| {
                        SourceError::NoDefault("openclaw", "HOME is not set".into())
                    })?;
                    // OpenClaw is Clawdis renamed: the newer folder first.
                    let candidates = [
                        h.join(".openclaw/agents/main/sessions"),
                        h.join(".clawdbot/agents/main/sessions"),
                    ];
                    candidates
                        .iter()
                        .find(|c| c.is_dir())
                        .cloned()
                        .map(Self::OpenClaw)
                        .ok_or_else(|| {
                            SourceError::NoDefault(
                                "openclaw",
                                format!(
                                    "neither {} nor {} exists; pass --store openclaw=DIR",
                                    candidates[0].display(),
                                    candidates[1].display()
                                ),
                            )
                        })
                }
            },
            _ => Err(SourceError::Unknown(s.to_owned())),
        }
    }

    pub fn is_foreign(&self) -> bool {
        !matches!(self, Self::Home)
    }
}

/// A directory from pi's environment, `~` expanded as pi's
/// `expandTildePath` does.
fn pi_env(name: &str, home: Option<PathBuf>) -> Option<PathBuf> {
    let v = std::env::var(name).ok().filter(|v| !v.is_empty())?;
    match (v.as_str(), v.strip_prefix("~/"), home) {
        ("~", _, Some(h)) => Some(h),
        (_, Some(rest), Some(h)) => Some(h.join(rest)),
        _ => Some(PathBuf::from(v)),
    }
}

/// Whether pi keeps the sessions of `dir` in one `--<cwd>--` folder per
/// working directory (its agent folder, `…/agent/sessions`) or all in `dir`
/// itself (a `--session-dir` / `PI_CODING_AGENT_SESSION_DIR`): the former
/// when such folders are there or the path is the agent's.
pub(crate) fn pi_per_cwd(dir: &Path) -> bool {
    dir.ends_with("agent/sessions")
        || fs::read_dir(dir).is_ok_and(|entries| {
            entries.flatten().any(|e| {
                e.file_type().is_ok_and(|k| k.is_dir())
                    && e.file_name()
                        .to_str()
                        .is_some_and(|n| n.len() > 4 && n.starts_with("--") && n.ends_with("--"))
            })
        })
}

/// A foreign store's folder must already be there and be readable: the
/// relay must not make one up where the user mistyped a path.
pub(crate) fn check_foreign_dir(dir: &Path) -> io::Result<()> {
    let meta = fs::metadata(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot open the store folder {}: {e}", dir.display()),
        )
    })?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the store folder {} is not a directory", dir.display()),
        ));
    }
    // Its sessions go to the agent as the user's own: a folder someone else
    // can write would let them put words in the user's mouth.
    if !crate::home::trusted_owner(meta.uid()) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the store folder {} belongs to uid {}, not to you",
                dir.display(),
                meta.uid()
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the store folder {} has mode {mode:04o}: group or others could add sessions to it                  (chmod go-w {})",
                dir.display(),
                dir.display()
            ),
        ));
    }
    fs::read_dir(dir).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot read the store folder {}: {e}", dir.display()),
        )
    })?;
    Ok(())
}

/// How much of a file's start is read for its header.
const HEADER_PEEK: u64 = 64 * 1024;

/// What a pi session file's first line says.
#[derive(Debug, Clone)]
pub(crate) struct PiHeader {
    pub id: String,
    pub cwd: Option<String>,
}

/// The header of the session file at `path`, if its first line is one.
pub(crate) fn read_header(path: &Path) -> Option<PiHeader> {
    let mut first = Vec::new();
    // Only the first line is read (a buffer's worth, not the file).
    io::BufReader::new(fs::File::open(path).ok()?.take(HEADER_PEEK))
        .read_until(b'\n', &mut first)
        .ok()?;
    let line = first.strip_suffix(b"\n").unwrap_or(&first);
    let Value::Object(obj) = serde_json::from_slice::<Value>(line).ok()? else {
        return None;
    };
    if obj.get("type").and_then(Value::as_str) != Some("session") {
        return None;
    }
    Some(PiHeader {
        id: obj.get("id")?.as_str()?.to_owned(),
        cwd: obj.get("cwd").and_then(Value::as_str).map(str::to_owned),
    })
}

/// pi's folder for sessions started in `cwd` (its `getDefaultSessionDir`).
pub(crate) fn pi_cwd_folder(cwd: &str) -> String {
    let trimmed = cwd.strip_prefix(['/', '\\']).unwrap_or(cwd);
    format!("--{}--", trimmed.replace(['/', '\\', ':'], "-"))
}

/// pi's file name for a session started at `millis` (its `newSession`).
pub(crate) fn pi_file_name(millis: i64, id: &str) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}-{:02}-{:02}-{:03}Z_{id}.jsonl",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// One session file of pi's folder, as last seen.
#[derive(Debug, Clone)]
struct Seen {
    id: Option<String>,
    cwd: Option<String>,
    ino: u64,
}

/// pi's session folder: every `*.jsonl` in it or in one of its `--<cwd>--`
/// folders whose first line is a session header is a session, keyed by its
/// id as pi's `--session` takes it.
#[derive(Default)]
pub(crate) struct PiFolder {
    seen: HashMap<PathBuf, Seen>,
    /// sessionId → its file.
    pub(crate) files: HashMap<String, PathBuf>,
}

impl PiFolder {
    /// Lists the folder again: a stat per file, and a header read only for
    /// files not seen before. Returns the sessions as index entries (with
    /// `updatedAt` the file's mtime, as pi sorts them).
    pub(crate) fn scan(&mut self, dir: &Path) -> io::Result<Entries> {
        let mut paths = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                // A folder pi cannot read is skipped as pi skips it.
                if let Ok(inner) = fs::read_dir(&path) {
                    for e in inner.flatten() {
                        if e.file_type().is_ok_and(|k| k.is_file()) {
                            paths.push(e.path());
                        }
                    }
                }
            } else if kind.is_file() {
                paths.push(path);
            }
        }
        let mut entries = Entries::new();
        let mut seen = HashMap::new();
        let mut files: HashMap<String, (PathBuf, i64)> = HashMap::new();
        for path in paths {
            if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
                continue;
            }
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            let known = self
                .seen
                .get(&path)
                .filter(|s| s.ino == meta.ino() && s.id.is_some())
                .cloned();
            let s = known.unwrap_or_else(|| {
                let h = read_header(&path);
                Seen {
                    id: h.as_ref().map(|h| h.id.clone()),
                    cwd: h.and_then(|h| h.cwd),
                    ino: meta.ino(),
                }
            });
            let mtime = meta.mtime() * 1000 + meta.mtime_nsec() / 1_000_000;
            if let Some(id) = s.id.as_deref().filter(|id| is_safe_session_id(id)) {
                // Two files with one id (a copy): the newest is the session.
                let newer = files.get(id).is_none_or(|(_, m)| *m < mtime);
                if newer {
                    files.insert(id.to_owned(), (path.clone(), mtime));
                    let mut raw = Map::new();
                    raw.insert("sessionId".into(), id.into());
                    raw.insert("updatedAt".into(), mtime.into());
                    if let Some(cwd) = &s.cwd {
                        raw.insert("cwd".into(), cwd.clone().into());
                    }
                    entries.insert(id.to_owned(), raw);
                }
            }
            seen.insert(path, s);
        }
        self.seen = seen;
        self.files = files.into_iter().map(|(id, (p, _))| (id, p)).collect();
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pi_names_its_folders_and_files_so() {
        assert_eq!(pi_cwd_folder("/home/me/src/app"), "--home-me-src-app--");
        assert_eq!(pi_cwd_folder("C:\\x"), "--C--x--");
        let name = pi_file_name(0, "abc");
        assert_eq!(name, "1970-01-01T00-00-00-000Z_abc.jsonl");
    }

    #[test]
    fn store_names_parse() {
        assert_eq!(Source::parse("home").unwrap(), Source::Home);
        assert_eq!(
            Source::parse("pi=/x").unwrap(),
            Source::Pi(PathBuf::from("/x"))
        );
        assert_eq!(
            Source::parse("openclaw=/y").unwrap(),
            Source::OpenClaw(PathBuf::from("/y"))
        );
        assert!(Source::parse("clawd").is_err());
        assert!(Source::parse("home=/z").is_err());
    }
}
