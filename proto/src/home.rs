//! The loopchat home: where it is, and what each file in it is called.
//!
//! The relay owns the home (it creates it, checks who could have prepared
//! it, and writes everything in it); the CLI, the shell and the tests find
//! their way in by these names, so they are written down once, here, with
//! the one way a file in it is replaced ([`write_atomically`]), which the
//! relay and the shell share.

use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Names the home instead of the default.
pub const HOME_ENV: &str = "LOOPCHAT_HOME";
/// The home's folder under the user's home directory.
pub const DEFAULT_HOME_DIR: &str = ".loopchat";

/// The main token (0600).
pub const TOKEN_FILE: &str = "token";
/// Scoped (notify-only) tokens (0600).
pub const TOKENS_FILE: &str = "tokens.json";
/// The discovery file ([`crate::Discovery`]), written once the relay listens.
pub const DISCOVERY_FILE: &str = "relay.json";
/// Held with `flock` by the one relay that serves the home.
pub const LOCK_FILE: &str = "relay.lock";
/// The owner's configuration.
pub const CONFIG_FILE: &str = "config.toml";
/// Transcripts and their index (`sessions.json`).
pub const SESSIONS_DIR: &str = "sessions";
/// Deleted sessions, kept until purged: their transcripts and `archive.json`.
pub const ARCHIVE_DIR: &str = "archive";
/// The archive's index, inside [`ARCHIVE_DIR`].
pub const ARCHIVE_INDEX_FILE: &str = "archive.json";
/// Uploaded images, content-addressed.
pub const ATTACHMENTS_DIR: &str = "attachments";
/// The full-text search index of every session's messages (a tantivy
/// index the relay rebuilds whenever it is missing or unreadable).
pub const SEARCH_DIR: &str = "search";
/// The notification journal.
pub const NOTIFICATIONS_FILE: &str = "notifications.jsonl";
/// The port the relay listened on last, reused when free.
pub const LAST_PORT_FILE: &str = "last-port";
/// The output of a relay started detached (by the shell).
pub const RELAY_LOG_FILE: &str = "relay.log";

/// The discovery file of a remote relay's default home, as a remote `sh`
/// names it (the shell reads it over SSH).
pub const DEFAULT_REMOTE_DISCOVERY: &str = "~/.loopchat/relay.json";

/// `explicit`, else `$LOOPCHAT_HOME` (when not empty), else `~/.loopchat`
/// (`./.loopchat` for a user with no home directory).
pub fn locate(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_owned();
    }
    if let Some(p) = std::env::var_os(HOME_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::home_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join(DEFAULT_HOME_DIR)
}

/// Replaces `path` with `bytes` the one way every file in the home is
/// replaced (the relay's and the shell's alike): a temp file beside it
/// (0600), fsync, rename, fsync of the directory. A reader never sees half
/// a file, a crash leaves the old or the new one, and once this returns the
/// new one survives a power cut. Returns the written file's metadata, taken
/// from the file itself so that a caller telling its own write from another
/// program's (the session index) is not fooled by a write right after the
/// rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<Metadata> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // The pid keeps two processes writing the same file off each other's
    // temp file; the leading dot keeps it out of listings.
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
        let written = f.metadata()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()?;
        Ok(written)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remote_default_is_the_local_layout() {
        assert_eq!(
            DEFAULT_REMOTE_DISCOVERY,
            format!("~/{DEFAULT_HOME_DIR}/{DISCOVERY_FILE}")
        );
        assert_eq!(locate(Some(Path::new("/x"))), PathBuf::from("/x"));
    }

    #[test]
    fn an_atomic_write_replaces_the_file_owner_only_and_leaves_no_temp_file() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir =
            std::env::temp_dir().join(format!("loopchat-proto-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.json");
        fs::write(&path, b"old").unwrap();
        let written = write_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let on_disk = fs::metadata(&path).unwrap();
        assert_eq!(on_disk.permissions().mode() & 0o777, 0o600);
        assert_eq!(written.ino(), on_disk.ino());
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [std::ffi::OsString::from("f.json")]);
        // A rename that fails (onto a directory) leaves no temp file behind.
        fs::create_dir(dir.join("sub")).unwrap();
        assert!(write_atomically(&dir.join("sub"), b"x").is_err());
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["f.json", "sub"].map(std::ffi::OsString::from));
        fs::remove_dir_all(&dir).unwrap();
    }
}
