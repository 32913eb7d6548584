//! `loopchat-shell-window`: the window (local or remote mode). Started by
//! `loopchat-shell` with the same arguments; the only binary that links
//! GTK/WebKit. The tao event loop owns this process's main thread.

mod cli;
mod gui;
mod window;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use loopchat_shell::tunnel::HostKeyPolicy;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = loopchat_shell::log_filter("warn,loopchat_shell=info,loopchat_shell_window=info");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let result = match cli.command {
        // Accepted here too, so either binary can be called directly.
        Some(Command::Tunnel(args)) => match args.remote.spec(HostKeyPolicy::Strict) {
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
        Some(Command::Alerts(args)) => loopchat_shell::headless::run_alerts(
            args.home
                .unwrap_or_else(loopchat_shell::relay::default_home),
            args.remote.spec(HostKeyPolicy::Strict),
        ),
        None => gui::run_window(gui::WindowOptions {
            home: cli
                .home
                .clone()
                .unwrap_or_else(loopchat_shell::relay::default_home),
            session: cli.session,
            start_relay: !cli.no_start,
            onboarding: cli.onboarding,
            // In the window an unknown host is a question for the user.
            remote: cli.remote.spec(HostKeyPolicy::Ask),
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loopchat-shell: {e:#}");
            ExitCode::FAILURE
        }
    }
}
