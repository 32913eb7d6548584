//! `loopchat-shell`: parse the command line, run `tunnel` here, hand the
//! window over to `loopchat-shell-window`.
//!
//! Why two binaries: WebKitGTK and its ~170 shared libraries take 100 ms
//! and more just to load. The headless tunnel (scripts, your own browser,
//! the tests) must not pay that, so this binary links no GUI code and
//! `exec`s the window binary, installed next to it, for window mode.

mod cli;

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;

use cli::Cli;

/// The window binary, looked up next to this one.
const WINDOW_BINARY: &str = "loopchat-shell-window";

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::exit(match cli.command {
        Some(command) => {
            cli::init_tracing("warn,loopchat_shell=info");
            command.run()
        }
        None => exec_window(),
    })
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
