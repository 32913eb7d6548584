//! Why a tunnel could not be built, phrased for the person who has to fix it.

use std::path::PathBuf;

use super::remote_start::INSTALL_COMMAND;
use crate::Step;

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("invalid destination {destination:?}: {reason}")]
    Destination { destination: String, reason: String },

    #[error("cannot read ssh config {path}: {reason}")]
    Config { path: PathBuf, reason: String },

    #[error("could not connect to {target}{}: {reason}", via_suffix(.via))]
    Connect {
        target: String,
        via: Option<String>,
        reason: String,
    },

    #[error("SSH handshake with {target} failed: {reason}")]
    Handshake { target: String, reason: String },

    #[error("{0}")]
    HostKeyChanged(Box<ChangedHostKey>),

    #[error(
        "unknown host {host}: it is not in {}.\n  \
         offered key: {key_type} {fingerprint}\n\
         Check this fingerprint with the server (ssh-keygen -lf /etc/ssh/ssh_host_{short_type}_key.pub there), \
         then run again with --accept-new to trust it and record it.",
        .known_hosts.display()
    )]
    HostKeyUnknown {
        host: String,
        key_type: String,
        short_type: String,
        fingerprint: String,
        known_hosts: PathBuf,
    },

    #[error("host key of {host} ({fingerprint}) was not accepted")]
    HostKeyRejected { host: String, fingerprint: String },

    #[error("known_hosts {}: {reason}", .path.display())]
    KnownHosts { path: PathBuf, reason: String },

    #[error(
        "SSH authentication as {user} on {host} failed; tried: {}",
        if .tried.is_empty() { "nothing (no ssh-agent, no identity file found)".to_owned() } else { .tried.join("; ") }
    )]
    Auth {
        user: String,
        host: String,
        tried: Vec<String>,
    },

    #[error(
        "no relay discovery file on {host}: `cat {path}` failed ({reason}).\n\
         Is `loopchat serve` running there? Start it on {host} (see docs/remote.md), or pass --remote-discovery."
    )]
    DiscoveryMissing {
        host: String,
        path: String,
        reason: String,
    },

    #[error("the discovery file {path} on {host} is not valid: {reason}")]
    DiscoveryInvalid {
        host: String,
        path: String,
        reason: String,
    },

    #[error(
        "the relay recorded in {path} on {host} does not answer on port {port} ({reason}); \
         the file is stale. Restart `loopchat serve` on {host}."
    )]
    RelayStale {
        host: String,
        path: String,
        port: u16,
        reason: String,
    },

    #[error(
        "{reason}\nThere is no `loopchat` on the PATH of {host} (as an SSH session sees it) to start \
         one. Install it there — in a clone of the loopchat source on {host}, run:\n  \
         {INSTALL_COMMAND}\n\
         (it goes to ~/.cargo/bin, which must be on the PATH of non-interactive SSH sessions), \
         then Retry."
    )]
    NoRemoteBinary { host: String, reason: String },

    #[error("could not start a relay on {host}: {reason}")]
    RemoteStart { host: String, reason: String },

    #[error("SSH link to {target} lost: {reason}")]
    Lost { target: String, reason: String },

    #[error("could not open the local listener: {0}")]
    Listen(std::io::Error),
}

/// A host key that differs from the one known_hosts records: everything
/// the user needs to judge it and, if legitimate, to fix known_hosts.
#[derive(Debug)]
pub struct ChangedHostKey {
    pub host: String,
    pub expected: String,
    pub offered: String,
    pub known_hosts: PathBuf,
    pub line: usize,
    pub line_text: String,
}

impl std::fmt::Display for ChangedHostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kh = self.known_hosts.display();
        write!(
            f,
            "REMOTE HOST KEY CHANGED for {host}: refusing to connect (someone could be \
             intercepting the connection, or the server was reinstalled).\n  \
             expected (known_hosts): {expected}\n  \
             offered by the server:  {offered}\n  \
             known_hosts entry: {kh}:{line}: {line_text}\n\
             If the key really changed, remove that entry (ssh-keygen -R '{host}' -f {kh}) and connect again.",
            host = self.host,
            expected = self.expected,
            offered = self.offered,
            line = self.line,
            line_text = self.line_text,
        )
    }
}

fn via_suffix(via: &Option<String>) -> String {
    via.as_ref()
        .map(|v| format!(" (via {v})"))
        .unwrap_or_default()
}

impl TunnelError {
    /// The step that failed, for the error page and the CLI.
    pub fn step(&self) -> Step {
        match self {
            TunnelError::Destination { .. }
            | TunnelError::Config { .. }
            | TunnelError::Connect { .. }
            | TunnelError::Handshake { .. }
            | TunnelError::Lost { .. }
            | TunnelError::Listen(_) => Step::Connect,
            TunnelError::HostKeyChanged(_)
            | TunnelError::HostKeyUnknown { .. }
            | TunnelError::HostKeyRejected { .. }
            | TunnelError::KnownHosts { .. } => Step::HostKey,
            TunnelError::Auth { .. } => Step::Auth,
            TunnelError::DiscoveryMissing { .. }
            | TunnelError::DiscoveryInvalid { .. }
            | TunnelError::RelayStale { .. }
            | TunnelError::NoRemoteBinary { .. }
            | TunnelError::RemoteStart { .. } => Step::Discovery,
        }
    }

    /// A permanent failure will not go away by trying again: retrying would
    /// only hammer the server (auth) or paper over an attack (host key). The
    /// supervisor stops on these; everything else is retried with backoff.
    pub fn is_permanent(&self) -> bool {
        matches!(self.step(), Step::HostKey | Step::Auth)
            || matches!(
                self,
                TunnelError::Destination { .. }
                    | TunnelError::Config { .. }
                    | TunnelError::Listen(_)
            )
    }
}
