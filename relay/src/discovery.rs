//! `relay.json`: written once the relay listens, read by every client.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
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

/// A relay is alive when its pid exists and its port accepts connections;
/// either alone can be fooled (pid reuse, another program on the port).
pub fn is_alive(d: &Discovery) -> bool {
    pid_exists(d.pid)
        && TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, d.port)),
            Duration::from_millis(500),
        )
        .is_ok()
}

fn pid_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Removes the file if it still describes this process (a newer relay may
/// have replaced it).
pub fn remove_if_ours(path: &Path) {
    if let Ok(bytes) = fs::read(path)
        && let Ok(d) = parse(&bytes)
        && d.pid == std::process::id()
    {
        let _ = fs::remove_file(path);
    }
}
