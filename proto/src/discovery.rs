use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
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

impl Discovery {
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
