//! `relay.json`: written once the relay listens, read by every client.

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use loopchat_proto::Discovery;

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("no relay is running (no {0}); start one with `loopchat serve`")]
    Missing(String),
    #[error("{path} is not a valid discovery file: {message}")]
    Invalid { path: String, message: String },
    #[error(
        "the relay in {path} (pid {pid}, port {port}) is not running any more; start one with `loopchat serve`"
    )]
    Stale { path: String, pid: u32, port: u16 },
    #[error("cannot read {path}: {source}")]
    Io { path: String, source: io::Error },
}

pub fn write(path: &Path, discovery: &Discovery) -> io::Result<()> {
    crate::store::write_file_atomically(path, &encode(discovery)?)
}

/// The file's contents for `discovery` (pretty JSON).
pub fn encode(discovery: &Discovery) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(discovery).map_err(io::Error::other)
}

pub fn parse(bytes: &[u8]) -> Result<Discovery, serde_json::Error> {
    serde_json::from_slice(bytes)
}

/// Reads the file and checks that its relay is alive.
pub fn read_live(path: &Path) -> Result<Discovery, DiscoveryError> {
    let shown = path.display().to_string();
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(DiscoveryError::Missing(shown));
        }
        Err(source) => {
            return Err(DiscoveryError::Io {
                path: shown,
                source,
            });
        }
    };
    let d = parse(&bytes).map_err(|e| DiscoveryError::Invalid {
        path: shown.clone(),
        message: e.to_string(),
    })?;
    if !is_alive(&d) {
        return Err(DiscoveryError::Stale {
            path: shown,
            pid: d.pid,
            port: d.port,
        });
    }
    Ok(d)
}

/// Whether the relay `d` names is running (see [`Discovery::check_alive`]).
pub fn is_alive(d: &Discovery) -> bool {
    d.check_alive(Duration::from_millis(500)).is_ok()
}

/// Removes the file if it still describes this process. The caller holds
/// the home's lock ([`crate::home::Home::lock`]), so no other relay can
/// write the file between the check and the removal; the pid check leaves
/// alone a file this relay did not write (a dead relay's, when this one
/// stopped before announcing itself).
pub fn remove_if_ours(path: &Path) {
    if let Ok(bytes) = fs::read(path)
        && let Ok(d) = parse(&bytes)
        && d.pid == std::process::id()
    {
        let _ = fs::remove_file(path);
    }
}
