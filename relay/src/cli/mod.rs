//! Command-line surface (stable: tests and scripts rely on it).
//!
//! Client commands speak HTTP to a running relay exactly like any script
//! would; only `serve` runs the relay itself.

mod client;
mod commands;
mod tokens;
mod transfer;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "loopchat",
    version,
    about = "A chat window for your personal AI agent"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How client commands find the relay.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// The relay's base URL (default: from the discovery file).
    #[arg(long, env = "LOOPCHAT_URL", global = true)]
    url: Option<String>,
    /// The relay's token (default: from the discovery file). Other users
    /// can see command lines in `ps`: prefer LOOPCHAT_TOKEN.
    // A base64url token starts with `-` one time in 64; without
    // allow_hyphen_values, `--token "$T"` then fails as an unknown flag.
    #[arg(
        long,
        env = "LOOPCHAT_TOKEN",
        global = true,
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    token: Option<String>,
    /// The loopchat home (default: $LOOPCHAT_HOME or ~/.loopchat).
    #[arg(long, global = true)]
    home: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay (prints the browser URL once).
    Serve {
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        home: Option<PathBuf>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on (loopback only unless --unsafe-bind).
        #[arg(long)]
        bind: Option<IpAddr>,
        #[arg(long)]
        unsafe_bind: bool,
        /// Where the sessions are: `home` (the loopchat home's), `pi[=DIR]`
        /// (pi's session folder, default $PI_CODING_AGENT_DIR/sessions or
        /// ~/.pi/agent/sessions) or `openclaw[=DIR]` (an OpenClaw agent's
        /// sessions folder, default ~/.openclaw/agents/main/sessions, else
        /// ~/.clawdbot/agents/main/sessions).
        #[arg(long, default_value = "home")]
        store: String,
    },
    /// Show the running relay (with --json: its discovery file).
    Info {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Live counts: connections by kind and token, runs, journal size.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List sessions (pinned first, then newest), or tidy them.
    Sessions {
        #[command(subcommand)]
        action: Option<SessionsAction>,
        /// List the archived (deleted) sessions instead.
        #[arg(long)]
        archived: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Print a session's latest messages.
    History {
        #[arg(long, default_value = "main")]
        session: String,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Search every session's messages (all the words must match).
    Search {
        #[arg(allow_hyphen_values = true)]
        query: String,
        /// Only this session's messages.
        #[arg(long)]
        session: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List the agent's tools with their source and policy.
    Tools {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Send one message and print the reply.
    Send {
        #[command(flatten)]
        args: commands::SendArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Post a notification to every connected window and shell (exit 0 on
    /// success, 75 when rate limited, 1 on any other failure).
    Notify {
        #[command(flatten)]
        args: commands::NotifyArgs,
        #[command(flatten)]
        target: Target,
    },
    /// The configured checks (`[[checks]]` in config.toml): list, run now.
    Check {
        #[command(subcommand)]
        action: CheckAction,
        #[command(flatten)]
        target: Target,
    },
    /// Ask the agent about an alert: starts a turn whose message carries it
    /// (prints the session; the alert then shows "investigated in").
    AskAlert {
        /// The alert's id.
        id: String,
        /// The session to ask in (default: a new `alert-…` session).
        #[arg(long)]
        session: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Write a session to a file: Markdown or self-contained HTML (its
    /// current branch), or its transcript as stored (JSONL, every branch).
    Export {
        /// The session's key.
        key: String,
        /// md, html or jsonl.
        #[arg(long, value_parser = parse_export_format)]
        format: loopchat_proto::ExportFormat,
        /// Where to write it (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Import a pi/loopchat session file or ChatGPT's conversations.json as
    /// new sessions (prints each new session's key). A broken file is
    /// refused whole.
    Import {
        file: PathBuf,
        /// auto, pi or chatgpt.
        #[arg(long, default_value = "auto", value_parser = parse_import_format)]
        format: loopchat_proto::ImportFormat,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Print the OpenAPI 3.1 document of the HTTP API (the one served at
    /// /webchat/openapi.json and kept in docs/openapi.json).
    Openapi,
    /// Manage tokens: scoped (notify-only) tokens and the main token.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Subcommand)]
pub enum SessionsAction {
    /// Name a session (an empty title clears it).
    Rename { key: String, title: String },
    /// Delete a session: move it to the archive, where it is kept until
    /// purged (`archive_keep_days`).
    Delete { key: String },
    /// Put an archived session back (by the id `--archived` lists).
    Restore { session_id: String },
    /// Delete an archived session for good (or, with `--all`, every one).
    Purge {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        session_id: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Pin a session to the top of the list.
    Pin { key: String },
    /// Unpin a session.
    Unpin { key: String },
}

#[derive(Subcommand)]
enum CheckAction {
    /// Status, last run and next run of each check.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Run one now and print the run (exit 0 when it passed, 1 when it
    /// failed, 2 when the relay refused).
    Run {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TokenAction {
    /// Create a scoped token; prints it alone on stdout (shown only once).
    Create {
        #[arg(long, value_enum)]
        scope: ScopeArg,
        /// A label to recognise it by in `token list`.
        #[arg(long)]
        name: Option<String>,
        /// The loopchat home (default: $LOOPCHAT_HOME or ~/.loopchat).
        #[arg(long)]
        home: Option<PathBuf>,
    },
    /// List scoped tokens (never their secrets).
    List {
        #[arg(long)]
        json: bool,
        /// The loopchat home (default: $LOOPCHAT_HOME or ~/.loopchat).
        #[arg(long)]
        home: Option<PathBuf>,
    },
    /// Revoke a scoped token by id.
    Revoke {
        id: String,
        /// The loopchat home (default: $LOOPCHAT_HOME or ~/.loopchat).
        #[arg(long)]
        home: Option<PathBuf>,
    },
    /// Replace the main token: a running relay refuses the old one and closes
    /// the streams opened with it within a second (open windows sign out).
    Rotate {
        /// The loopchat home (default: $LOOPCHAT_HOME or ~/.loopchat).
        #[arg(long)]
        home: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ScopeArg {
    /// May post notifications and nothing else.
    Notify,
}

impl From<ScopeArg> for crate::notify::tokens::Scope {
    fn from(s: ScopeArg) -> Self {
        match s {
            ScopeArg::Notify => Self::Notify,
        }
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_serve = matches!(cli.command, Command::Serve { .. });
    init_tracing(if is_serve { "info" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loopchat: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(dispatch(cli.command));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loopchat: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(default: &str) {
    let spec = std::env::var("RUST_LOG").ok();
    let filter = crate::logging::filter(spec.as_deref(), default);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

async fn dispatch(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve {
            port,
            home,
            config,
            bind,
            unsafe_bind,
            store,
        } => {
            let store = crate::store::Source::parse(&store)?;
            crate::server::run(crate::server::ServeOptions {
                home,
                config,
                port,
                bind,
                unsafe_bind,
                store,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Info { json, target } => commands::info(&target, json).await,
        Command::Status { json, target } => commands::status(&target, json).await,
        Command::Sessions {
            action: None,
            archived,
            json,
            target,
        } => commands::sessions(&target, archived, json).await,
        Command::Sessions {
            action: Some(action),
            json,
            target,
            ..
        } => commands::sessions_action(&target, action, json).await,
        Command::History {
            session,
            limit,
            json,
            target,
        } => commands::history(&target, &session, limit, json).await,
        Command::Search {
            query,
            session,
            limit,
            json,
            target,
        } => commands::search(&target, &query, session.as_deref(), limit, json).await,
        Command::Send { args, target } => commands::send(&target, args).await,
        Command::Tools { json, target } => commands::tools(&target, json).await,
        Command::Notify { args, target } => commands::notify(&target, args).await,
        Command::Token { action } => token(action),
        Command::Check { action, target } => match action {
            CheckAction::List { json } => commands::check_list(&target, json).await,
            CheckAction::Run { name, json } => commands::check_run(&target, &name, json).await,
        },
        Command::AskAlert {
            id,
            session,
            json,
            target,
        } => commands::ask_alert(&target, &id, session, json).await,
        Command::Export {
            key,
            format,
            output,
            target,
        } => transfer::export(&target, &key, format, output).await,
        Command::Import {
            file,
            format,
            json,
            target,
        } => transfer::import(&target, &file, format, json).await,
        Command::Openapi => {
            print!("{}", crate::http::openapi::json());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn parse_export_format(s: &str) -> Result<loopchat_proto::ExportFormat, String> {
    s.parse()
}

fn parse_import_format(s: &str) -> Result<loopchat_proto::ImportFormat, String> {
    s.parse()
}

fn token(action: TokenAction) -> anyhow::Result<ExitCode> {
    use crate::home::Home;
    let writable = |home: Option<PathBuf>| Home::open(Home::locate(home.as_deref()));
    match action {
        TokenAction::Create { scope, name, home } => {
            tokens::create(&writable(home)?, scope.into(), name)
        }
        TokenAction::List { json, home } => {
            tokens::list(&Home::at(Home::locate(home.as_deref())), json)
        }
        TokenAction::Revoke { id, home } => {
            tokens::revoke(&Home::at(Home::locate(home.as_deref())), &id)
        }
        TokenAction::Rotate { home } => tokens::rotate(&writable(home)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("loopchat").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    #[test]
    fn a_token_that_starts_with_a_hyphen_is_a_value() {
        // CI failed once on exactly this: a fresh token began with "-V".
        let Command::Notify { target, args } =
            parse(&["notify", "--title", "t", "--token", "-Vx_9", "--url", "u"]).unwrap()
        else {
            panic!("not notify")
        };
        assert_eq!(target.token.as_deref(), Some("-Vx_9"));
        assert_eq!(target.url.as_deref(), Some("u"));
        assert_eq!(args.title, "t");
    }

    #[test]
    fn free_text_may_start_with_a_hyphen_and_flags_still_parse() {
        let Command::Notify { args, .. } = parse(&[
            "notify",
            "--title",
            "-5 °C",
            "--body",
            "-",
            "--tag",
            "-x",
            "--priority",
            "4",
        ])
        .unwrap() else {
            panic!("not notify")
        };
        assert_eq!((args.title.as_str(), args.body.as_str()), ("-5 °C", "-"));
        assert_eq!((args.tags, args.priority), (vec!["-x".to_owned()], Some(4)));

        let Command::Send { args, .. } =
            parse(&["send", "--session", "s", "-1 is odd", "--json"]).unwrap()
        else {
            panic!("not send")
        };
        assert_eq!(
            (args.text.as_str(), args.session.as_str()),
            ("-1 is odd", "s")
        );
        assert!(args.json);
    }

    #[test]
    fn unknown_flags_are_still_refused() {
        assert!(parse(&["notify", "--bogus"]).is_err());
        assert!(parse(&["info", "-V"]).is_err());
    }
}
