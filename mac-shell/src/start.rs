//! Starting the local relay when none runs, and stopping it on request.
//!
//! The shell starts `loopchat serve` detached: in its own session (so
//! neither the terminal's hangup nor quitting the shell reaches it), stdin
//! from /dev/null, its output appended to `relay.log` (0600) in the home.
//! It then waits for the discovery file to name a live relay.
//!
//! Two shells started together may both start a relay. The relay's
//! `flock` on `relay.lock` lets exactly one win; the other exits non-zero.
//! A shell whose relay lost therefore keeps waiting for the winner's
//! discovery file instead of failing.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use loopchat_proto::Discovery;

use crate::relay::{self, RelayError};
use loopchat_proto::DiscoveryError;

/// The relay's binary name.
pub const RELAY_BINARY: &str = "loopchat";
/// How to install it, in a clone of the loopchat source.
pub const INSTALL_COMMAND: &str = "cargo install --locked --path relay";
/// Where the started relay's output goes, inside the home.
pub use loopchat_proto::home::RELAY_LOG_FILE as RELAY_LOG;
/// How long a starting relay may take to write a live discovery file. A
/// relay opens its store and binds a port; seconds are already generous.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// After our relay exited (it lost the race for the lock, or failed), how
/// long to keep waiting for another one's discovery file. The winner held
/// the lock before ours gave up, so it is already well on its way.
const LOSER_GRACE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "no loopchat relay is running, and there is no `{RELAY_BINARY}` next to {exe} or on \
         PATH to start one. Install it (`{INSTALL_COMMAND}` in the loopchat source) \
         or start a relay yourself with `loopchat serve`"
    )]
    NotFound { exe: String },
    #[error("cannot prepare {path} for the relay: {source}")]
    Prepare {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start {bin}: {source}")]
    Spawn {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "started {bin} (pid {pid}) but no live relay appeared in {home} within {secs} s \
         ({reason}). See its log: {log}"
    )]
    Timeout {
        bin: PathBuf,
        pid: u32,
        home: PathBuf,
        secs: u64,
        reason: String,
        log: PathBuf,
    },
    #[error(
        "the relay {bin} exited ({status}) and no other relay is serving {home}. \
         See its log: {log}{tail}"
    )]
    Exited {
        bin: PathBuf,
        status: String,
        home: PathBuf,
        log: PathBuf,
        tail: String,
    },
}

/// A relay this shell started (or found started by a concurrent shell).
#[derive(Debug)]
pub struct Started {
    pub discovery: Discovery,
    /// The binary that was run.
    pub bin: PathBuf,
    /// Whether the live relay is the one this call spawned (false: another
    /// shell's relay won the lock).
    pub ours: bool,
    pub log: PathBuf,
}

/// `loopchat` next to the running executable, else the first on `PATH`.
pub fn find_relay_binary() -> Result<PathBuf, StartError> {
    let exe = std::env::current_exe().ok();
    if let Some(sibling) = exe.as_deref().map(|e| e.with_file_name(RELAY_BINARY))
        && is_executable(&sibling)
    {
        return Ok(sibling);
    }
    if let Some(found) = on_path(RELAY_BINARY) {
        return Ok(found);
    }
    Err(StartError::NotFound {
        exe: exe
            .map(|e| e.display().to_string())
            .unwrap_or_else(|| "loopchat-shell".into()),
    })
}

/// The first executable `name` on `PATH` (what a terminal would run).
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Starts `loopchat serve --home HOME` detached and waits (blocking, up to
/// `timeout`) until the home's discovery file names a live relay.
pub fn start_local(home: &Path, timeout: Duration) -> Result<Started, StartError> {
    let bin = find_relay_binary()?;
    // The relay would create the home itself, but the log file goes in it
    // first. 0700: the relay's StrictModes rules want it private.
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(home)
        .map_err(|source| StartError::Prepare {
            path: home.to_owned(),
            source,
        })?;
    let log = home.join(RELAY_LOG);
    let prepare = |source| StartError::Prepare {
        path: log.clone(),
        source,
    };
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&log)
        .map_err(prepare)?;
    // A log created earlier under another umask: it may hold paths and
    // errors, so keep it to the user.
    out.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(prepare)?;
    let err = out.try_clone().map_err(prepare)?;

    let mut command = Command::new(&bin);
    command
        .arg("serve")
        .arg("--home")
        .arg(home)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: setsid(2) is async-signal-safe and touches no memory of the
    // parent; it is all that runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|source| StartError::Spawn {
        bin: bin.clone(),
        source,
    })?;
    let pid = child.id();
    tracing::info!(bin = %bin.display(), pid, log = %log.display(), "starting the local relay");

    let started = Instant::now();
    let deadline = started + timeout;
    let mut exited: Option<(Instant, String)> = None;
    let result = loop {
        match relay::discover_local(home) {
            Ok(discovery) => {
                let ours = discovery.pid == pid;
                break Ok(Started {
                    discovery,
                    bin: bin.clone(),
                    ours,
                    log: log.clone(),
                });
            }
            Err(
                e @ RelayError::Discovery(
                    DiscoveryError::Missing { .. }
                    | DiscoveryError::Stale { .. }
                    | DiscoveryError::Invalid { .. },
                ),
            ) => {
                // Invalid: caught mid-write by a relay that does not write
                // atomically; the next look decides.
                let now = Instant::now();
                if exited.is_none()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    exited = Some((now, status.to_string()));
                }
                if let Some((when, status)) = &exited
                    && now >= *when + LOSER_GRACE
                {
                    break Err(StartError::Exited {
                        bin: bin.clone(),
                        status: status.clone(),
                        home: home.to_owned(),
                        log: log.clone(),
                        tail: log_tail(&log),
                    });
                }
                if now >= deadline {
                    break Err(StartError::Timeout {
                        bin: bin.clone(),
                        pid,
                        home: home.to_owned(),
                        secs: timeout.as_secs(),
                        reason: e.to_string(),
                        log: log.clone(),
                    });
                }
                std::thread::sleep(POLL);
            }
            Err(e) => {
                break Err(StartError::Timeout {
                    bin: bin.clone(),
                    pid,
                    home: home.to_owned(),
                    secs: started.elapsed().as_secs(),
                    reason: e.to_string(),
                    log: log.clone(),
                });
            }
        }
    };
    // The relay outlives the shell, but while the shell runs it is the
    // relay's parent: reap it when it ends (a loser at once, the winner
    // when stopped) so that it does not linger as a zombie.
    if exited.is_none() {
        let reaper = std::thread::Builder::new()
            .name("loopchat-relay-reaper".into())
            .spawn(move || {
                let _ = child.wait();
            });
        if let Err(e) = reaper {
            tracing::debug!(error = %e, "cannot start the relay reaper");
        }
    }
    result
}

#[derive(Debug, thiserror::Error)]
pub enum StopError {
    #[error("no relay is running for {home}: {reason}")]
    NotRunning { home: PathBuf, reason: String },
    #[error("cannot signal the relay (pid {pid}): {source}")]
    Signal { pid: u32, source: std::io::Error },
    #[error("the relay (pid {pid}) is still running {secs} s after SIGTERM; see {log}")]
    Timeout { pid: u32, secs: u64, log: PathBuf },
}

/// How long a relay may take for its graceful shutdown (it lets running
/// turns finish for a grace period, then flushes the store).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Stops the relay serving `home`, whoever started it: SIGTERM to the pid
/// of its live discovery file, then waits (blocking) until that process is
/// gone. The relay removes its discovery file on the way out.
///
/// The pid comes from `relay.json` in a home only its user can write (the
/// relay refuses any other), and it must be live by the same rule every
/// client uses (pid exists and the port accepts) before it is signalled.
pub fn stop_local(home: &Path, timeout: Duration) -> Result<Discovery, StopError> {
    let discovery = relay::discover_local(home).map_err(|e| StopError::NotRunning {
        home: home.to_owned(),
        reason: e.to_string(),
    })?;
    let pid = discovery.pid;
    let signalled = libc::pid_t::try_from(pid)
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| StopError::NotRunning {
            home: home.to_owned(),
            reason: format!("the discovery file names pid {pid}"),
        })?;
    // SAFETY: plain kill(2); the pid was checked to be a live process.
    if unsafe { libc::kill(signalled, libc::SIGTERM) } != 0 {
        return Err(StopError::Signal {
            pid,
            source: std::io::Error::last_os_error(),
        });
    }
    tracing::info!(pid, "stopping the local relay");
    let deadline = Instant::now() + timeout;
    while loopchat_proto::pid_exists(pid) && !is_zombie(pid) {
        if Instant::now() >= deadline {
            return Err(StopError::Timeout {
                pid,
                secs: timeout.as_secs(),
                log: home.join(RELAY_LOG),
            });
        }
        std::thread::sleep(POLL);
    }
    Ok(discovery)
}

/// A relay this shell started is its child until the reaper thread has
/// waited for it: between its exit and that wait it is a zombie, which
/// `kill(pid, 0)` still finds.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            == Some("Z")
    })
}

/// The last lines of the relay's log, for an error message.
fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    if lines.is_empty() {
        return String::new();
    }
    let mut out = String::from(":\n");
    for line in lines.into_iter().rev() {
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_get_one() {
        let err = StartError::NotFound {
            exe: "/x/loopchat-shell".into(),
        };
        let text = err.to_string();
        assert!(text.contains("loopchat serve"), "{text}");
        assert!(text.contains("/x/loopchat-shell"), "{text}");
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("relay.log");
        assert_eq!(log_tail(&log), "");
        let text: String = (1..=8).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, text).unwrap();
        assert_eq!(
            log_tail(&log),
            ":\nline 4\nline 5\nline 6\nline 7\nline 8\n"
        );
    }
}
