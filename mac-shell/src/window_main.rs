//! `loopchat-shell-window`: the window (local or remote mode). Started by
//! `loopchat-shell` with the same arguments; the only binary that links
//! GTK/WebKit. The tao event loop owns this process's main thread.

mod cli;
mod gui;
mod window;

use std::process::ExitCode;

use clap::Parser;
use loopchat_shell::tunnel::HostKeyPolicy;

use cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_tracing("warn,loopchat_shell=info,loopchat_shell_window=info");
    cli::exit(match cli.command {
        Some(command) => command.run(),
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
    })
}
