//! The window's controller: finds the relay (locally, or through a tunnel),
//! checks it with `/webchat/info`, and tells the window what to show. Runs
//! on its own thread with a tokio runtime; the window owns the main thread.
//! The only module of the window binary that knows about SSH.

use parking_lot::Mutex;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use loopchat_proto::{Discovery, DiscoveryError};
use loopchat_shell::notifications::{
    Click, Focus, Locator, Notifier, NotifierConfig, SystemNotifications, local_relay_key,
    remote_relay_key,
};
use loopchat_shell::relay::{self, RelayError};
use loopchat_shell::settings::Settings;
use loopchat_shell::start;
use loopchat_shell::tunnel::{
    BoxFuture, HostKeyQuestion, Prompter, RelayStartQuestion, Tunnel, TunnelError, TunnelSpec,
    TunnelStatus, TunnelView,
};

use crate::window::{self, UiAction, UiEvent, UiHandle, WindowConfig};

/// What the window should open.
pub struct WindowOptions {
    /// The loopchat home: local discovery file, shell.json, web data.
    pub home: PathBuf,
    pub session: Option<String>,
    /// Local mode: start `loopchat serve` when no relay runs (off with
    /// `--no-start`).
    pub start_relay: bool,
    /// Remote mode when set.
    pub remote: Option<TunnelSpec>,
    /// `--onboarding`: show the welcome tour even if it was completed.
    pub onboarding: bool,
}

/// Opens the window; returns only if it could not be opened.
pub fn run_window(options: WindowOptions) -> anyhow::Result<()> {
    let settings = Settings::load(&options.home);
    let (host, data_key) = match &options.remote {
        Some(spec) => (
            spec.destination.clone(),
            format!("remote-{}", file_name_safe(&spec.destination)),
        ),
        None => (local_host_name(), "local".to_owned()),
    };
    let focus = Focus::default();
    let config = WindowConfig {
        host,
        settings,
        data_dir: options.home.join("shell-webdata").join(data_key),
        focus: focus.clone(),
        local_home: options.remote.is_none().then(|| options.home.clone()),
    };
    window::run(config, move |ui, actions| {
        let spawned = std::thread::Builder::new()
            .name("loopchat-shell-app".into())
            .spawn(move || match loopchat_shell::runtime() {
                Ok(rt) => rt.block_on(controller(options, ui, actions, focus)),
                Err(e) => {
                    ui.send(UiEvent::Error {
                        step: "start".into(),
                        message: e.to_string(),
                    });
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the app thread");
        }
    })
}

/// The outcome of one attempt to reach the chat.
struct Connected {
    url: String,
    /// The welcome tour, logged in the same way.
    welcome_url: String,
    relay_version: String,
    base_url: String,
    session: String,
    /// Kept alive while the chat is shown (remote mode).
    tunnel: Option<Tunnel>,
    /// Where this relay is found again (desktop alerts, the tour's CLI
    /// step), and its name in the alerts record: decided once, with the
    /// connection.
    locator: Locator,
    relay_key: String,
}

/// What the user asked the controller for, from the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    /// Error page Retry, or Reload over it.
    Retry,
    /// "Stop relay", confirmed (local mode).
    StopRelay,
}

struct Failure {
    step: String,
    message: String,
}

impl From<RelayError> for Failure {
    fn from(e: RelayError) -> Self {
        Self {
            step: e.step().to_string(),
            message: e.to_string(),
        }
    }
}

impl From<TunnelError> for Failure {
    fn from(e: TunnelError) -> Self {
        Self {
            step: e.step().to_string(),
            message: e.to_string(),
        }
    }
}

async fn controller(
    options: WindowOptions,
    ui: UiHandle,
    actions: mpsc::UnboundedReceiver<UiAction>,
    focus: Focus,
) {
    let prompter = Arc::new(WindowPrompter {
        ui: ui.clone(),
        host_key: Mutex::new(None),
        passphrase: Mutex::new(None),
        relay_start: Mutex::new(None),
    });
    let (retry_tx, mut retry) = mpsc::unbounded_channel();
    tokio::spawn(dispatch(actions, prompter.clone(), retry_tx));
    tokio::spawn(quit_on_signal(ui.clone()));

    let mut force_onboarding = options.onboarding;
    loop {
        // Desktop alerts follow the relay the chat shows, for as long as
        // it is shown.
        let mut alerts: Option<Notifier> = None;
        let mut desktop_status: Option<tokio::task::JoinHandle<()>> = None;
        match connect(&options, &ui, prompter.clone()).await {
            Ok(connected) => {
                alerts = Some(start_alerts(&options, &connected, &ui, &focus));
                let done = Settings::load(&options.home)
                    .onboarding_done(loopchat_proto::WELCOME_VERSION, &connected.relay_version);
                let (url, onboarding) = if force_onboarding || !done {
                    force_onboarding = false;
                    let tour = window::Onboarding::new(connected.relay_version.clone());
                    let cli_host = match &connected.locator {
                        Locator::Tunnel(view) => CliHost::Remote(view.clone()),
                        _ => CliHost::Local,
                    };
                    desktop_status = Some(tokio::spawn(report_desktop_status(
                        ui.clone(),
                        tour.clone(),
                        cli_host,
                    )));
                    tracing::info!(relay_version = %connected.relay_version, "showing the welcome tour");
                    (connected.welcome_url, Some(tour))
                } else {
                    (connected.url, None)
                };
                ui.send(UiEvent::Open {
                    url,
                    base_url: connected.base_url,
                    session: connected.session,
                    onboarding,
                });
                if let Some(tunnel) = connected.tunnel {
                    // The page resumes by itself across reconnects; only a
                    // permanent failure needs the error page.
                    let mut watch = tunnel.watch();
                    loop {
                        tokio::select! {
                            status = watch.next() => match status {
                                Some(TunnelStatus::Failed { step, error }) => {
                                    ui.send(UiEvent::Error { step: step.to_string(), message: error });
                                    break;
                                }
                                Some(TunnelStatus::Up { remote_port }) => {
                                    tracing::info!(remote_port, local_url = %tunnel.local_url(), "tunnel up again");
                                }
                                Some(TunnelStatus::Reconnecting { attempt, .. }) => {
                                    tracing::debug!(attempt, "tunnel reconnecting");
                                }
                                Some(TunnelStatus::Closed) | None => break,
                            },
                            r = retry.recv() => match r {
                                None => return,
                                Some(Control::Retry) => break,
                                // Remote relays are not stopped from here.
                                Some(Control::StopRelay) => {}
                            }
                        }
                    }
                    drop(alerts.take());
                    drop(tunnel);
                }
            }
            Err(failure) => {
                tracing::error!(step = %failure.step, error = %failure.message, "cannot show the chat");
                ui.send(UiEvent::Error {
                    step: failure.step,
                    message: failure.message,
                });
            }
        }
        // Wait for Retry (error page button or Reload), or in local mode
        // for "Stop relay".
        let _status = desktop_status.map(AbortOnDrop);
        loop {
            match retry.recv().await {
                None => return,
                Some(Control::Retry) => break,
                Some(Control::StopRelay) if options.remote.is_none() => {
                    drop(alerts.take());
                    stop_relay(&options.home, &ui).await;
                }
                Some(Control::StopRelay) => {}
            }
        }
        drop(alerts);
    }
}

/// Aborts a task when dropped (the next connection starts its own).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where the tour's CLI step looks for `loopchat`: the PATH of the machine
/// whose relay the window shows.
#[derive(Clone)]
enum CliHost {
    /// This machine's PATH (local mode).
    Local,
    /// The remote host's, asked over the tunnel's SSH link (remote mode).
    Remote(TunnelView),
}

impl CliHost {
    /// The CLI step's status: where it looked (`host`: `null` for this
    /// machine, else the SSH target), what it found, and how to install it.
    async fn status(&self) -> serde_json::Value {
        let (host, path, error) = match self {
            CliHost::Local => {
                let path = tokio::task::spawn_blocking(|| {
                    start::on_path(start::RELAY_BINARY).map(|p| p.display().to_string())
                })
                .await
                .ok()
                .flatten();
                (None, path, None)
            }
            CliHost::Remote(view) => match view.remote_cli().await {
                Ok(path) => (Some(view.target().to_owned()), path, None),
                Err(e) => (Some(view.target().to_owned()), None, Some(e)),
            },
        };
        serde_json::json!({
            "host": host,
            "path": path,
            "error": error,
            "install": start::INSTALL_COMMAND,
        })
    }
}

/// While the welcome tour is on screen: what only the shell can see (is
/// `loopchat` on the PATH of the relay's host, does a notification service
/// answer), every second, so that the page shows it live (a daemon started
/// meanwhile turns green).
async fn report_desktop_status(ui: UiHandle, tour: window::Onboarding, cli_host: CliHost) {
    let mut last_cli = serde_json::Value::Null;
    while tour.active() {
        let cli = cli_host.status().await;
        if cli != last_cli {
            tracing::info!(
                host = cli["host"].as_str().unwrap_or("this machine"),
                path = cli["path"].as_str().unwrap_or("none"),
                error = cli["error"].as_str().unwrap_or("none"),
                "the tour's CLI step"
            );
            last_cli = cli.clone();
        }
        let daemon =
            tokio::task::spawn_blocking(loopchat_shell::notifications::desktop::service_name).await;
        let Ok(daemon) = daemon else { return };
        let status = serde_json::json!({
            "cli": cli,
            "daemon": {
                "name": daemon.as_ref().ok(),
                "error": daemon.as_ref().err(),
            },
        });
        if !ui.send(UiEvent::DesktopStatus(status.to_string())) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// "Stop relay": stops the local relay, whoever started it, and shows the
/// page that offers to start it again.
async fn stop_relay(home: &Path, ui: &UiHandle) {
    let dir = home.to_owned();
    let stopped =
        tokio::task::spawn_blocking(move || start::stop_local(&dir, start::STOP_TIMEOUT)).await;
    match stopped {
        Ok(Ok(discovery)) => {
            tracing::info!(pid = discovery.pid, "local relay stopped");
            ui.send(UiEvent::Stopped {
                home: home.display().to_string(),
            });
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot stop the relay");
            ui.send(UiEvent::Error {
                step: "stop relay".into(),
                message: e.to_string(),
            });
        }
        Err(e) => {
            ui.send(UiEvent::Error {
                step: "stop relay".into(),
                message: e.to_string(),
            });
        }
    }
}

/// The desktop-notification subscriber for the relay just connected to.
/// A click brings the window forward and opens the alert's session.
fn start_alerts(
    options: &WindowOptions,
    connected: &Connected,
    ui: &UiHandle,
    focus: &Focus,
) -> Notifier {
    let ui = ui.clone();
    Notifier::spawn(
        NotifierConfig {
            home: options.home.clone(),
            relay_key: connected.relay_key.clone(),
            locator: connected.locator.clone(),
        },
        Arc::new(SystemNotifications),
        focus.clone(),
        Arc::new(move |click: Click| {
            ui.send(UiEvent::Activate {
                target: click.target,
            });
        }),
    )
}

async fn connect(
    options: &WindowOptions,
    ui: &UiHandle,
    prompter: Arc<WindowPrompter>,
) -> Result<Connected, Failure> {
    let session = options.session.as_deref();
    match &options.remote {
        None => {
            ui.send(UiEvent::Status("Looking for the local relay…".into()));
            let home = options.home.clone();
            let start = options.start_relay;
            let status = ui.clone();
            let discovery =
                tokio::task::spawn_blocking(move || find_or_start(&home, start, &status))
                    .await
                    .map_err(|e| Failure {
                        step: "discovery".into(),
                        message: e.to_string(),
                    })??;
            tracing::info!(port = discovery.port, base_url = %discovery.base_url, "local relay found");
            let info = relay::fetch_info(&discovery.base_url, &discovery.token, session).await?;
            Ok(Connected {
                url: relay::login_url(&discovery.base_url, &discovery.token, session),
                welcome_url: relay::welcome_url(
                    &discovery.base_url,
                    &discovery.token,
                    session,
                    &info.version,
                ),
                relay_version: info.version,
                base_url: discovery.base_url,
                session: info.session_key,
                tunnel: None,
                locator: Locator::Local {
                    home: options.home.clone(),
                },
                relay_key: local_relay_key(),
            })
        }
        Some(spec) => {
            ui.send(UiEvent::Status(format!(
                "Connecting to {} over SSH…",
                spec.destination
            )));
            // The port remembered for this host, so the page's origin (and
            // its stored token, outbox and drafts) is the one of last time.
            let mut spec = spec.clone();
            spec.local_port = Settings::load(&options.home).tunnel_port(&spec.destination);
            let tunnel = Tunnel::open(spec.clone(), prompter).await?;
            loopchat_shell::settings::remember_tunnel_port(
                &options.home,
                &spec.destination,
                tunnel.local_addr().port(),
            );
            let relay = tunnel.relay().ok_or_else(|| Failure {
                step: "connect".into(),
                message: "the SSH link dropped right after it was built".into(),
            })?;
            let local_url = tunnel.local_url();
            tracing::info!(
                target = %tunnel.target(),
                local_port = tunnel.local_addr().port(),
                local_url = %local_url,
                remote_port = relay.port,
                "remote relay reachable through the tunnel"
            );
            let info = relay::fetch_info(&local_url, &relay.token, session).await?;
            Ok(Connected {
                url: relay::login_url(&local_url, &relay.token, session),
                welcome_url: relay::welcome_url(&local_url, &relay.token, session, &info.version),
                relay_version: info.version,
                base_url: local_url,
                session: info.session_key,
                locator: Locator::Tunnel(tunnel.view()),
                relay_key: remote_relay_key(tunnel.target(), &spec.remote_discovery),
                tunnel: Some(tunnel),
            })
        }
    }
}

/// The local relay's discovery: the running one, else (unless
/// `--no-start`) one started now. Blocking.
fn find_or_start(home: &Path, start: bool, ui: &UiHandle) -> Result<Discovery, Failure> {
    match relay::discover_local(home) {
        Err(RelayError::Discovery(
            DiscoveryError::Missing { .. } | DiscoveryError::Stale { .. },
        )) if start => {
            ui.send(UiEvent::Status("Starting the local relay…".into()));
            let started = start::start_local(home, start::START_TIMEOUT).map_err(|e| Failure {
                step: "start relay".into(),
                message: e.to_string(),
            })?;
            tracing::info!(
                pid = started.discovery.pid,
                port = started.discovery.port,
                ours = started.ours,
                bin = %started.bin.display(),
                log = %started.log.display(),
                "local relay started"
            );
            Ok(started.discovery)
        }
        other => Ok(other?),
    }
}

/// SIGTERM (logout, `kill`) and SIGINT close the window the way Quit does,
/// so the window size is saved.
async fn quit_on_signal(ui: UiHandle) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for SIGTERM/SIGINT");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("signal received; closing");
    ui.send(UiEvent::Quit);
}

/// Routes the window's answers: to a pending question, or to the retry
/// loop.
async fn dispatch(
    mut actions: mpsc::UnboundedReceiver<UiAction>,
    prompter: Arc<WindowPrompter>,
    retry: mpsc::UnboundedSender<Control>,
) {
    while let Some(action) = actions.recv().await {
        match action {
            UiAction::Retry => {
                let _ = retry.send(Control::Retry);
            }
            UiAction::StopRelay => {
                let _ = retry.send(Control::StopRelay);
            }
            UiAction::HostKeyAnswer(yes) => {
                if let Some(tx) = prompter.host_key.lock().take() {
                    let _ = tx.send(yes);
                }
            }
            UiAction::RelayStartAnswer(yes) => {
                if let Some(tx) = prompter.relay_start.lock().take() {
                    let _ = tx.send(yes);
                }
            }
            UiAction::Passphrase(p) => {
                if let Some(tx) = prompter.passphrase.lock().take() {
                    let _ = tx.send(p);
                }
            }
        }
    }
}

/// Asks the tunnel's questions with a page in the window.
struct WindowPrompter {
    ui: UiHandle,
    host_key: Mutex<Option<oneshot::Sender<bool>>>,
    passphrase: Mutex<Option<oneshot::Sender<Option<String>>>>,
    relay_start: Mutex<Option<oneshot::Sender<bool>>>,
}

impl Prompter for WindowPrompter {
    fn confirm_host_key(&self, q: HostKeyQuestion) -> BoxFuture<bool> {
        let (tx, rx) = oneshot::channel();
        *self.host_key.lock() = Some(tx);
        self.ui.send(UiEvent::AskHostKey {
            host: q.host,
            key_type: q.key_type,
            fingerprint: q.fingerprint,
            known_hosts: q.known_hosts.display().to_string(),
        });
        Box::pin(async move { rx.await.unwrap_or(false) })
    }

    fn passphrase(&self, key: PathBuf) -> BoxFuture<Option<String>> {
        let (tx, rx) = oneshot::channel();
        *self.passphrase.lock() = Some(tx);
        self.ui.send(UiEvent::AskPassphrase {
            key: key.display().to_string(),
        });
        Box::pin(async move { rx.await.ok().flatten() })
    }

    fn offers_relay_start(&self) -> bool {
        true
    }

    fn offer_relay_start(&self, q: RelayStartQuestion) -> BoxFuture<bool> {
        let (tx, rx) = oneshot::channel();
        *self.relay_start.lock() = Some(tx);
        self.ui.send(UiEvent::AskRelayStart {
            host: q.host,
            reason: q.reason,
            command: q.command,
        });
        Box::pin(async move { rx.await.unwrap_or(false) })
    }
}

/// `user@host:22` → `user_host_22`, for a directory name.
fn file_name_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// This machine's name, for the window title in local mode.
fn local_host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        if let Ok(name) = std::str::from_utf8(&buf[..end])
            && !name.is_empty()
        {
            return name.to_owned();
        }
    }
    "localhost".to_owned()
}
