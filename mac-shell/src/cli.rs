//! Command-line surface (stable: tests and scripts rely on it).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use loopchat_shell::tunnel::{DEFAULT_REMOTE_DISCOVERY, HostKeyPolicy, TunnelSpec};

/// The loopchat desktop shell: a window on the local relay, or on a remote
/// one through an SSH tunnel.
#[derive(Debug, Parser)]
#[command(
    name = "loopchat-shell",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Session to open (1–128 characters of A-Z a-z 0-9 . _ : -).
    #[arg(long, value_parser = parse_session_key)]
    pub session: Option<String>,

    /// Loopchat home (discovery file, shell.json).
    #[arg(long, env = "LOOPCHAT_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Local mode: when no relay runs, show how to start one instead of
    /// starting `loopchat serve` in the background.
    #[arg(long)]
    pub no_start: bool,

    /// Show the welcome tour again, even if it was completed.
    #[arg(long)]
    pub onboarding: bool,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Keep a tunnel to a remote relay up without a window; prints one JSON
    /// line {"localUrl","token","remotePort"} once it is usable.
    Tunnel(TunnelArgs),
    /// Desktop notifications without a window: raises the relay's alerts
    /// (local, or remote with --remote) until SIGINT/SIGTERM.
    Alerts(AlertsArgs),
}

#[derive(Debug, Args)]
pub struct AlertsArgs {
    /// Loopchat home (discovery file; shell.json and shell-alerts.json).
    #[arg(long, env = "LOOPCHAT_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Debug, Args)]
pub struct TunnelArgs {
    /// Loopchat home (shell.json, where the tunnel's local port per host is
    /// remembered).
    #[arg(long, env = "LOOPCHAT_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    #[command(flatten)]
    pub remote: RemoteArgs,

    /// Print the machine-readable line only (logs go to stderr).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RemoteArgs {
    /// Remote mode: the SSH destination (an ~/.ssh/config alias works).
    #[arg(long, value_name = "[USER@]HOST[:PORT]")]
    pub remote: Option<String>,

    /// ssh config file to read instead of ~/.ssh/config.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,

    /// Identity file (repeatable), tried after the ssh-agent.
    #[arg(long, short = 'i', value_name = "FILE")]
    pub identity: Vec<PathBuf>,

    /// known_hosts file to check the host key against (default ~/.ssh/known_hosts).
    #[arg(long, value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,

    /// Path of the relay's discovery file on the remote host (~ is the remote home).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_REMOTE_DISCOVERY)]
    pub remote_discovery: String,

    /// Trust an unknown host key and record it in known_hosts.
    #[arg(long)]
    pub accept_new: bool,
}

impl RemoteArgs {
    /// The tunnel spec, when remote mode is asked for. `unknown` is what to
    /// do with an unknown host unless `--accept-new` says otherwise.
    pub fn spec(&self, unknown: HostKeyPolicy) -> Option<TunnelSpec> {
        let destination = self.remote.clone()?;
        Some(TunnelSpec {
            destination,
            ssh_config: self.ssh_config.clone(),
            identities: self.identity.clone(),
            known_hosts: self.known_hosts.clone(),
            remote_discovery: self.remote_discovery.clone(),
            host_key_policy: if self.accept_new {
                HostKeyPolicy::AcceptNew
            } else {
                unknown
            },
            local_port: None,
        })
    }
}

fn parse_session_key(s: &str) -> Result<String, String> {
    loopchat_proto::validate_session_key(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

impl Command {
    /// Runs a headless command: the same in both binaries, so that either
    /// can be called directly.
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Tunnel(args) => match args.remote.spec(HostKeyPolicy::Strict) {
                Some(spec) => loopchat_shell::headless::run_tunnel(
                    spec,
                    &args
                        .home
                        .unwrap_or_else(loopchat_shell::relay::default_home),
                    args.json,
                ),
                None => Err(anyhow::anyhow!(
                    "`tunnel` needs --remote [USER@]HOST[:PORT]"
                )),
            },
            Command::Alerts(args) => loopchat_shell::headless::run_alerts(
                args.home
                    .unwrap_or_else(loopchat_shell::relay::default_home),
                args.remote.spec(HostKeyPolicy::Strict),
            ),
        }
    }
}

/// Logs go to stderr (stdout is the `tunnel --json` line). `RUST_LOG`
/// overrides `default` under the relay's rule (`proto::log_filter`).
pub fn init_tracing(default: &str) {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(loopchat_shell::log_filter(default))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The process's exit: the error and its causes on stderr.
pub fn exit(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loopchat-shell: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn tunnel_flags() {
        let cli = Cli::try_parse_from([
            "loopchat-shell",
            "tunnel",
            "--remote",
            "u@h:2",
            "--json",
            "--accept-new",
            "-i",
            "k",
        ])
        .unwrap();
        let Some(Command::Tunnel(t)) = cli.command else {
            panic!()
        };
        assert!(t.json);
        let spec = t.remote.spec(HostKeyPolicy::Strict).unwrap();
        assert_eq!(spec.host_key_policy, HostKeyPolicy::AcceptNew);
        assert_eq!(spec.remote_discovery, DEFAULT_REMOTE_DISCOVERY);
        assert!(Cli::try_parse_from(["loopchat-shell", "--session", "a/b"]).is_err());
    }

    #[test]
    fn alerts_flags() {
        let cli = Cli::try_parse_from(["loopchat-shell", "alerts", "--home", "/h"]).unwrap();
        let Some(Command::Alerts(a)) = cli.command else {
            panic!()
        };
        assert_eq!(a.home.as_deref(), Some(std::path::Path::new("/h")));
        assert!(a.remote.spec(HostKeyPolicy::Strict).is_none());
        let cli = Cli::try_parse_from([
            "loopchat-shell",
            "alerts",
            "--remote",
            "u@h",
            "--accept-new",
        ])
        .unwrap();
        let Some(Command::Alerts(a)) = cli.command else {
            panic!()
        };
        assert_eq!(
            a.remote
                .spec(HostKeyPolicy::Strict)
                .unwrap()
                .host_key_policy,
            HostKeyPolicy::AcceptNew
        );
    }
}
