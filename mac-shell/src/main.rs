//! `loopchat-shell`: parse the command line, run `tunnel` here, hand the
//! window over to `loopchat-shell-window`.
//!
//! Why two binaries: WebKitGTK and its ~170 shared libraries take 100 ms
//! and more just to load. The headless tunnel (scripts, your own browser,
//! the tests) must not pay that, so this binary links no GUI code and
//! `exec`s the window binary, installed next to it, for window mode.

mod cli;

use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use loopchat_shell::tunnel::HostKeyPolicy;

use cli::{Cli, Command};

/// The window binary, looked up next to this one.
const WINDOW_BINARY: &str = "loopchat-shell-window";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Tunnel(args)) => {
            init_tracing();
            match args.remote.spec(HostKeyPolicy::Strict) {
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
            }
        }
        Some(Command::Alerts(args)) => {
            init_tracing();
            loopchat_shell::headless::run_alerts(
                args.home
                    .unwrap_or_else(loopchat_shell::relay::default_home),
                args.remote.spec(HostKeyPolicy::Strict),
            )
        }
        None => exec_window(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loopchat-shell: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Replaces this process with the window binary, same arguments. Only
/// returns on failure.
fn exec_window() -> anyhow::Result<()> {
    let me = std::env::current_exe().context("cannot locate loopchat-shell itself")?;
    let window = me.with_file_name(WINDOW_BINARY);
    let err = std::process::Command::new(&window)
        .args(std::env::args_os().skip(1))
        .exec();
    Err(err).with_context(|| {
        format!(
            "cannot start the window ({}); install {WINDOW_BINARY} next to loopchat-shell",
            window.display()
        )
    })
}

/// Logs go to stderr (stdout is the `tunnel --json` line). `RUST_LOG`
/// overrides the default of info for the shell, warnings for libraries.
fn init_tracing() {
    let filter = loopchat_shell::log_filter("warn,loopchat_shell=info");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
