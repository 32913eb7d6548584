//! The state directory (`$LOOPCHAT_HOME`, else `~/.loopchat`) and its files.
//!
//! Everything in it is private to the user: the directory is 0700 and
//! secrets are 0600, because other local users are part of the threat model.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `explicit`, else `$LOOPCHAT_HOME`, else `~/.loopchat`.
    pub fn locate(explicit: Option<&Path>) -> PathBuf {
        if let Some(p) = explicit {
            return p.to_owned();
        }
        if let Some(p) = std::env::var_os("LOOPCHAT_HOME").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let base = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        base.join(".loopchat")
    }

    /// Creates the directory (0700) if needed; tightens it if it is looser.
    pub fn open(root: PathBuf) -> io::Result<Self> {
        create_private_dir(&root)?;
        Ok(Self { root })
    }

    /// A handle for reading files of a home that may not exist (clients).
    pub fn at(root: PathBuf) -> Self {
        Self { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn token_file(&self) -> PathBuf {
        self.root.join("token")
    }
    pub fn discovery_file(&self) -> PathBuf {
        self.root.join("relay.json")
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn sessions_dir(&self) -> PathBuf {
        self.root.join("sessions")
    }
    pub fn attachments_dir(&self) -> PathBuf {
        self.root.join("attachments")
    }
    /// Scoped (notify-only) tokens, hashed.
    pub fn tokens_file(&self) -> PathBuf {
        self.root.join("tokens.json")
    }
    /// The kept notifications.
    pub fn notifications_file(&self) -> PathBuf {
        self.root.join("notifications.jsonl")
    }
    /// Remembers the last port so a restarted relay comes back on it.
    pub fn last_port_file(&self) -> PathBuf {
        self.root.join("last-port")
    }
}

pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}
