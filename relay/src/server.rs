//! `loopchat serve`: wires home, config, store, agent and pipeline to a
//! loopback listener, publishes the discovery file, and shuts down cleanly.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use loopchat_proto::{Discovery, PROTOCOL_VERSION};
use tokio_util::sync::CancellationToken;

use crate::attachments::Attachments;
use crate::config::Config;
use crate::credentials::Credentials;
use crate::home::Home;
use crate::http::conn::{self, ConnLimits};
use crate::http::{AppState, router};
use crate::notify::{DeliveryTargets, NotificationHooks, NotificationHub, Presence, RateLimiter};
use crate::pipeline::Pipeline;
use crate::store::Store;
use crate::{agent, discovery};

#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub home: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub port: Option<u16>,
    pub bind: Option<IpAddr>,
    pub unsafe_bind: bool,
    /// Where the sessions are (the home keeps everything else).
    pub store: crate::store::Source,
}

pub async fn run(opts: ServeOptions) -> anyhow::Result<()> {
    let started = Instant::now();
    crate::memory::give_large_blocks_back();
    // The home's checks and its lock come before anything is written in it
    // or the port is bound: a second relay must leave the first one's
    // files, and its port, alone.
    let home = Home::open(Home::locate(opts.home.as_deref()))?;
    let _lock = home.lock()?;
    let config_path = opts.config.clone().unwrap_or_else(|| home.config_file());
    crate::home::check_config_file(&config_path)?;
    let mut config = Config::load(&config_path)?;
    if let Some(p) = opts.port {
        config.port = Some(p);
    }
    if let Some(b) = opts.bind {
        config.bind = b;
    }
    if !config.bind.is_loopback() && !opts.unsafe_bind {
        bail!(
            "refusing to listen on {}: the relay serves your transcripts and runs your agent, \
             so it binds loopback only (127.0.0.1 or ::1). Use an SSH tunnel for remote access, \
             or pass --unsafe-bind if you really mean it.",
            config.bind
        );
    }
    let credentials = Arc::new(
        Credentials::open(home.token_file(), home.tokens_file())
            .context("cannot read or create the token files")?,
    );
    let token = credentials.main_token();
    let (ring_bytes, window_bytes) = config.session_memory_split();
    let store = Store::open_source(
        &opts.store,
        &home.sessions_dir(),
        Arc::new(crate::render::decorate),
        window_bytes,
    )
    .context("cannot open the session store")?;
    if opts.store.is_foreign() {
        tracing::info!(dir = %store.dir().display(), "sessions are in another tool's store");
    }
    {
        let attachments = Attachments::new(home.attachments_dir());
        store.on_attachment_bytes(Arc::new(move |id| attachments.read(id)));
    }
    // Search is a convenience: a relay whose index cannot be opened still
    // serves every session, and says so when asked to search.
    let search = match crate::search::SearchIndex::open(&home.search_dir(), &store) {
        Ok(index) => Some(index),
        Err(e) => {
            tracing::error!(error = %e, "search is off: its index cannot be opened");
            None
        }
    };
    let agent = agent::from_config(&config.agent)?;
    let pipeline = Pipeline::with_ring_bytes(
        store.clone(),
        agent,
        Attachments::with_files(home.attachments_dir()),
        config.history_messages,
        ring_bytes,
    );
    pipeline.set_auto_title(config.auto_title);
    pipeline.set_archive_keep_days(config.archive_keep_days);
    // Before the first request, so no client sees what is past its time.
    pipeline.sweep_archive_once().await;
    let shutdown = CancellationToken::new();
    if config.tools.enabled {
        match tool_runtime(&config, &token, &shutdown) {
            Ok(t) => pipeline.set_tools(t),
            // A configured workspace that cannot be used is the user's
            // mistake to hear about; the default one (the current directory,
            // which may be gone) only turns the tools off.
            Err(e) if config.tools.workspace.is_none() => {
                tracing::warn!(error = %format!("{e:#}"), "tools are off: the current directory cannot be their workspace; set [tools] workspace");
            }
            Err(e) => return Err(e),
        }
    }
    let notifications = NotificationHub::open(&home.notifications_file())
        .context("cannot open the notification journal")?;
    let checks = crate::checks::Checks::open(
        &config.checks,
        &home.checks_dir(),
        home.root(),
        notifications.clone(),
    )
    .context("cannot open the checks' histories")?;
    let presence = Arc::new(Presence::default());
    let targets = Arc::new(DeliveryTargets::new(config.targets.clone())?);
    pipeline.add_observer(Arc::new(NotificationHooks::new(
        notifications.clone(),
        presence.clone(),
        targets.clone(),
    )));

    // Installed before the relay announces itself: a SIGTERM right after
    // start must shut down cleanly, not kill the process.
    let signals = Signals::install().context("cannot install signal handlers")?;
    let listener = bind(&home, &config)?;
    let port = listener.local_addr()?.port();
    let host = match config.bind {
        IpAddr::V6(_) => format!("[{}]", config.bind),
        IpAddr::V4(_) => config.bind.to_string(),
    };
    let base_url = format!("http://{host}:{port}/webchat/");
    let state = AppState {
        pipeline: pipeline.clone(),
        credentials: credentials.clone(),
        notifications,
        checks: checks.clone(),
        presence,
        notify_limit: Arc::new(RateLimiter::default()),
        allowed_hosts: config.allowed_hosts.clone().into(),
        port,
        base_url: base_url.clone(),
        body_limit: config.body_limit,
        attachment_limit: config.attachment_limit,
        import_limit: config.import_limit,
        ws_ping: Duration::from_secs(config.ws_ping_secs),
        live: Default::default(),
        started: Instant::now(),
        targets,
        shutdown: shutdown.clone(),
        search,
    };
    let app = router(state, Duration::from_secs(config.body_read_timeout_secs));
    let conn_limits = ConnLimits {
        max_connections: config.max_connections,
        header_read_timeout: Duration::from_secs(config.header_read_timeout_secs),
        max_header_bytes: MAX_HEADER_BYTES,
        tcp_user_timeout: Duration::from_secs(config.tcp_user_timeout_secs),
    };
    raise_fd_limit(config.max_connections);
    let listener = tokio::net::TcpListener::from_std(listener)?;

    if let Err(e) =
        crate::durable::write_atomically(&home.last_port_file(), port.to_string().as_bytes())
    {
        tracing::debug!(error = %e, "cannot remember the port");
    }
    let discovery_path = home.discovery_file();
    discovery::write(
        &discovery_path,
        &Discovery {
            version: PROTOCOL_VERSION,
            pid: std::process::id(),
            port,
            base_url: base_url.clone(),
            token: token.clone(),
            started_at: crate::clock::now_rfc3339(),
            store: if matches!(opts.store, crate::store::Source::Pi(_)) {
                store.dir().display().to_string()
            } else {
                store.index_path().display().to_string()
            },
        },
    )
    .context("cannot write the discovery file")?;
    tracing::info!(
        port,
        home = %home.root().display(),
        agent = pipeline.agent_info().backend,
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        "relay listening"
    );
    // The one place the token is shown: the user's own terminal.
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "loopchat relay: {base_url}#token={token}");
        let _ = out.flush();
    }

    tokio::spawn(watch_signals(signals, shutdown.clone()));
    checks.start(shutdown.clone());
    // Rotations and revocations end the streams they opened (credentials.rs).
    tokio::spawn(credentials.watch_files(shutdown.clone()));
    tokio::spawn(pipeline.clone().sweep_archive(shutdown.clone()));
    tokio::spawn(pipeline.clone().trim_idle_sessions(
        Duration::from_secs(config.idle_session_secs),
        shutdown.clone(),
    ));
    tokio::spawn(
        pipeline
            .clone()
            .watch_foreign_writers(FOREIGN_POLL, shutdown.clone()),
    );
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let drain = {
        let shutdown = shutdown.clone();
        let pipeline = pipeline.clone();
        async move {
            shutdown.cancelled().await;
            pipeline.shutdown(grace).await;
        }
    };
    let server = conn::serve(listener, app, conn_limits, shutdown.clone());
    tokio::join!(server, drain);
    // Still under the lock, so no other relay can have replaced the file.
    discovery::remove_if_ours(&discovery_path);
    tracing::info!("relay stopped");
    Ok(())
}

/// How often the files of watched sessions and the index are looked at for
/// what other programs wrote: short enough that their lines appear live,
/// and a stat or two per watched session each time costs next to nothing.
const FOREIGN_POLL: Duration = Duration::from_millis(250);

/// Request line plus headers. Browsers send a few KiB; 64 KiB leaves room
/// for large cookies while refusing header floods with `431`.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Each connection is a file descriptor, and so are transcripts being
/// appended; the common soft limit of 1024 would refuse connections before
/// `max_connections` does. Raised towards the hard limit, never lowered.
fn raise_fd_limit(max_connections: usize) {
    let wanted = (max_connections as u64)
        .saturating_mul(2)
        .saturating_add(256);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= wanted {
            return;
        }
        let raised = libc::rlimit {
            rlim_cur: wanted.min(limit.rlim_max),
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            tracing::debug!("cannot raise the open-file limit");
        }
    }
}

/// The configured port; else the one this home used last, if free; else
/// any free port.
fn bind(home: &Home, config: &Config) -> anyhow::Result<StdListener> {
    let listen = |port: u16| -> std::io::Result<StdListener> {
        let l = StdListener::bind(SocketAddr::new(config.bind, port))?;
        l.set_nonblocking(true)?;
        Ok(l)
    };
    if let Some(port) = config.port {
        return listen(port).with_context(|| format!("cannot listen on port {port}"));
    }
    if let Some(last) = std::fs::read_to_string(home.last_port_file())
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .filter(|p| *p != 0)
        && let Ok(l) = listen(last)
    {
        return Ok(l);
    }
    listen(0).context("cannot listen on any port")
}

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }
}

async fn watch_signals(mut signals: Signals, shutdown: CancellationToken) {
    tokio::select! {
        _ = signals.term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = signals.int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}

/// The agent's tools as configured: the workspace (default: where `serve`
/// started) and what `bash` may not see — every `LOOPCHAT_*` variable, the
/// relay's token and the model's API key.
fn tool_runtime(
    config: &crate::config::Config,
    token: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<crate::pipeline::ToolRuntime> {
    let (tools, agent) = (&config.tools, &config.agent);
    let root = match &tools.workspace {
        Some(w) => w.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let workspace = crate::tools::Workspace::new(&root, tools.confine)
        .with_context(|| format!("the tools' workspace {} cannot be used", root.display()))?;
    let mut secrets = vec![token.to_owned()];
    secrets.extend(agent.openai.api_key.clone());
    let toolbox = crate::tools::Toolbox::new(
        workspace,
        tools.bash_limits(),
        tools.policy.clone(),
        &secrets,
    );
    let toolbox = if config.mcp_servers.is_empty() {
        toolbox
    } else {
        let hub = crate::tools::mcp::McpHub::start(
            config.mcp_servers.clone(),
            toolbox.command_env().to_vec(),
            toolbox.workspace().root().to_path_buf(),
            shutdown.clone(),
        );
        toolbox.with_mcp(hub)
    };
    tracing::info!(workspace = %toolbox.workspace().root().display(), confined = tools.confine, "tools enabled");
    Ok(crate::pipeline::ToolRuntime {
        toolbox,
        max_steps: tools.max_steps,
        approval_timeout: std::time::Duration::from_secs(tools.approval_timeout_secs.max(1)),
    })
}
