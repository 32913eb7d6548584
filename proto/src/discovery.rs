use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `$LOOPCHAT_HOME/relay.json`: how clients (CLI, shell, remote shell over
/// SSH) find a running relay without any port configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Discovery {
    pub version: u32,
    pub pid: u32,
    pub port: u16,
    pub base_url: String,
    pub token: String,
    pub started_at: String,
    pub store: String,
}

/// Why a discovery file names no running relay.
#[derive(Debug, thiserror::Error)]
pub enum NotAlive {
    #[error("pid {0} is not running")]
    Pid(u32),
    #[error("port {port} refuses connections: {source}")]
    Port { port: u16, source: io::Error },
}

/// Why no live relay could be read from a discovery file.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(
        "no loopchat relay is running: {} does not exist. Start one with `loopchat serve` \
         (it writes that file once it listens)",
        path.display()
    )]
    Missing { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    Unreadable { path: PathBuf, source: io::Error },
    #[error("{} is not a valid discovery file: {source}", path.display())]
    Invalid {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "the relay recorded in {} (pid {pid}, port {port}) is gone ({reason}); the file is stale. \
         Start one with `loopchat serve`",
        path.display()
    )]
    Stale {
        path: PathBuf,
        pid: u32,
        port: u16,
        reason: NotAlive,
    },
}

impl Discovery {
    /// The file's contents, strictly: the one reader of discovery files, for
    /// the relay, the CLI, the shell (local, and remote over SSH) and the
    /// fuzz target.
    pub fn parse(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// Reads the discovery file at `path` and checks that its relay is
    /// alive ([`Discovery::check_alive`], with `connect_timeout`).
    pub fn read_live(path: &Path, connect_timeout: Duration) -> Result<Self, DiscoveryError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(DiscoveryError::Missing {
                    path: path.to_owned(),
                });
            }
            Err(source) => {
                return Err(DiscoveryError::Unreadable {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let d = Self::parse(&bytes).map_err(|source| DiscoveryError::Invalid {
            path: path.to_owned(),
            source,
        })?;
        d.check_alive(connect_timeout)
            .map_err(|reason| DiscoveryError::Stale {
                path: path.to_owned(),
                pid: d.pid,
                port: d.port,
                reason,
            })?;
        Ok(d)
    }

    /// A relay is alive when its pid exists and its port accepts a
    /// connection; either alone can be fooled (pid reuse, another program on
    /// the port). One rule for the CLI, the relay and the shell.
    pub fn check_alive(&self, connect_timeout: Duration) -> Result<(), NotAlive> {
        if !pid_exists(self.pid) {
            return Err(NotAlive::Pid(self.pid));
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        TcpStream::connect_timeout(&addr, connect_timeout)
            .map(drop)
            .map_err(|source| NotAlive::Port {
                port: self.port,
                source,
            })
    }
}

/// Whether a process with this pid exists. `kill(pid, 0)` sends nothing; it
/// fails with ESRCH when there is no such process and EPERM when there is
/// one we may not signal (still alive).
pub fn pid_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for the process's existence.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn discovery(pid: u32, port: u16) -> Discovery {
        Discovery {
            version: 1,
            pid,
            port,
            base_url: String::new(),
            token: String::new(),
            started_at: String::new(),
            store: String::new(),
        }
    }

    #[test]
    fn read_live_names_each_failure() {
        let dir = std::env::temp_dir().join(format!("loopchat-proto-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("relay.json");
        let short = Duration::from_millis(500);
        let _ = std::fs::remove_file(&path);
        assert!(matches!(
            Discovery::read_live(&path, short),
            Err(DiscoveryError::Missing { .. })
        ));
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            Discovery::read_live(&path, short),
            Err(DiscoveryError::Invalid { .. })
        ));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let live = discovery(std::process::id(), port);
        std::fs::write(&path, serde_json::to_vec(&live).unwrap()).unwrap();
        assert_eq!(Discovery::read_live(&path, short).unwrap(), live);
        drop(listener);
        let err = Discovery::read_live(&path, short).unwrap_err();
        assert!(
            matches!(err, DiscoveryError::Stale { port: p, .. } if p == port),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn alive_needs_both_the_pid_and_the_port() {
        assert!(pid_exists(std::process::id()));
        assert!(!pid_exists(0) && !pid_exists(u32::MAX));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let ours = std::process::id();
        let short = Duration::from_millis(500);
        assert!(discovery(ours, port).check_alive(short).is_ok());
        drop(listener);
        let err = discovery(ours, port).check_alive(short).unwrap_err();
        assert!(
            err.to_string().starts_with(&format!("port {port} refuses")),
            "{err}"
        );
        // pid_max is at most 2^22: this pid cannot exist.
        let err = discovery(1 << 23, port).check_alive(short).unwrap_err();
        assert_eq!(err.to_string(), format!("pid {} is not running", 1 << 23));
    }
}
