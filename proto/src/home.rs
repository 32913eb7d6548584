//! The loopchat home: where it is, and what each file in it is called.
//!
//! The relay owns the home (it creates it, checks who could have prepared
//! it, and writes everything in it); the CLI, the shell and the tests find
//! their way in by these names, so they are written down once, here.

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
}
