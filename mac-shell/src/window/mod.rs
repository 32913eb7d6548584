//! The native window: tao for the window and event loop, wry (WebKitGTK on
//! Linux) for the page, muda for the menu.
//!
//! It knows nothing of SSH or relays: the app sends it [`UiEvent`]s ("show
//! this error", "open this URL", "ask this question") through a
//! [`UiHandle`] and receives the user's [`UiAction`]s. The event loop owns
//! the main thread (GTK requires it); everything else runs elsewhere.

mod menu;
mod page;
mod platform;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tao::dpi::LogicalSize;
use tao::event::{Event, WindowEvent};
use tao::event_loop::{ControlFlow, EventLoopBuilder, EventLoopProxy};
use tao::window::WindowBuilder;
use tokio::sync::mpsc;
use wry::{PageLoadEvent, WebContext, WebViewBuilder};

use loopchat_shell::notifications::{ClickTarget, Focus, Opening};
use loopchat_shell::settings::{Settings, WindowSize};
use menu::MenuCommand;

const DEFAULT_SIZE: WindowSize = WindowSize {
    width: 1000.0,
    height: 760.0,
};
/// Resizes come in bursts; the size is written once they settle.
const SAVE_DELAY: Duration = Duration::from_millis(700);

/// What the app asks the window to show.
#[derive(Debug, Clone)]
pub enum UiEvent {
    /// A progress line ("Connecting to …").
    Status(String),
    /// The chat. `url` carries the token once, in its fragment (the page
    /// keeps it in its origin's storage); `base_url` is where "New chat" goes.
    Open {
        url: String,
        base_url: String,
        session: String,
        /// `url` is the welcome tour: record its completion when the page
        /// leaves it for the chat.
        onboarding: Option<Onboarding>,
    },
    /// What the shell sees for the tour's desktop steps (JSON), passed to
    /// the tour page while it is shown.
    DesktopStatus(String),
    /// A failed step, with a Retry button.
    Error { step: String, message: String },
    /// Ask whether to trust an unknown SSH host key.
    AskHostKey {
        host: String,
        key_type: String,
        fingerprint: String,
        known_hosts: String,
    },
    /// Ask for the passphrase of an encrypted identity file.
    AskPassphrase { key: String },
    /// No relay runs on the remote host: start one there with `command`?
    AskRelayStart {
        host: String,
        reason: String,
        command: String,
    },
    /// The local relay was stopped ("Stop relay"); offers to start it.
    Stopped { home: String },
    /// A desktop alert was clicked: bring the window forward and open what
    /// it is about.
    Activate { target: ClickTarget },
    /// Save the settings and close (SIGTERM at logout, Ctrl-C).
    Quit,
}

/// A welcome tour on screen, and whether it still is (the status reports
/// stop once it is not).
#[derive(Debug, Clone)]
pub struct Onboarding {
    relay_version: String,
    active: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Onboarding {
    pub fn new(relay_version: String) -> Self {
        Self {
            relay_version,
            active: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
        }
    }

    pub fn active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn end(&self) {
        self.active
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What the user did that the app must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiAction {
    Retry,
    HostKeyAnswer(bool),
    /// `None`: skip this key.
    Passphrase(Option<String>),
    /// "Stop relay", confirmed.
    StopRelay,
    /// Start a relay on the remote host?
    RelayStartAnswer(bool),
}

/// The app's way to talk to the window, from any thread.
#[derive(Clone)]
pub struct UiHandle {
    proxy: EventLoopProxy<Internal>,
}

impl UiHandle {
    /// Shows `event`; false once the window is gone.
    pub fn send(&self, event: UiEvent) -> bool {
        self.proxy.send_event(Internal::App(event)).is_ok()
    }
}

/// Fixed facts about the window.
pub struct WindowConfig {
    /// Where the chat lives, for the title ("host name" or SSH target).
    pub host: String,
    pub settings: Settings,
    /// WebKit data directory (local storage, caches). One per relay, so
    /// that the local and a remote relay's pages keep apart whatever ports
    /// their tunnels get.
    pub data_dir: PathBuf,
    /// Set from the window's focus events; desktop alerts stay quiet while
    /// it is true.
    pub focus: Focus,
    /// Local mode: the home whose relay "Stop relay" stops. `None` in
    /// remote mode, where the menu item is disabled.
    pub local_home: Option<PathBuf>,
}

/// The event loop's own events: the app's, plus what the webview and the
/// menu report.
#[derive(Debug)]
enum Internal {
    App(UiEvent),
    Menu(muda::MenuId),
    Ipc(String),
    DocumentTitle(String),
    PageLoaded(String),
}

/// Which page is on screen, so that IPC messages are only obeyed from the
/// shell's own pages (never from the chat page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Showing {
    Status,
    Error,
    HostKey,
    Passphrase,
    ConfirmStop,
    RelayStart,
    Chat,
}

/// What a message from the page asks for, given what the window shows. The
/// chat page comes from the relay, which in remote mode is another host's
/// software; only the shell's own local pages (error, host key, passphrase)
/// may answer, and only the question they ask.
fn ipc_action(showing: Showing, message: &str) -> Option<UiAction> {
    match (showing, message) {
        (Showing::Error, "retry") => Some(UiAction::Retry),
        (Showing::ConfirmStop, "stop:yes") => Some(UiAction::StopRelay),
        (Showing::RelayStart, "relaystart:yes") => Some(UiAction::RelayStartAnswer(true)),
        (Showing::RelayStart, "relaystart:no") => Some(UiAction::RelayStartAnswer(false)),
        (Showing::HostKey, "hostkey:yes") => Some(UiAction::HostKeyAnswer(true)),
        (Showing::HostKey, "hostkey:no") => Some(UiAction::HostKeyAnswer(false)),
        (Showing::Passphrase, "passphrase-skip") => Some(UiAction::Passphrase(None)),
        (Showing::Passphrase, m) => m
            .strip_prefix("passphrase:")
            .map(|p| UiAction::Passphrase(Some(p.to_owned()))),
        _ => None,
    }
}

/// Opens the window and runs the event loop on this (main) thread; never
/// returns. `start` is called once with the handle and the action channel,
/// before the loop starts: it typically spawns the app's worker thread.
pub fn run<F>(config: WindowConfig, start: F) -> anyhow::Result<()>
where
    F: FnOnce(UiHandle, mpsc::UnboundedReceiver<UiAction>),
{
    let event_loop = EventLoopBuilder::<Internal>::with_user_event().build();
    let proxy = event_loop.create_proxy();
    // The app starts before the window and the web view are built: finding
    // (or starting) the relay then overlaps with GTK's and WebKit's start-up
    // instead of following it. Its events wait in the loop's queue.
    let (actions_tx, actions_rx) = mpsc::unbounded_channel();
    start(
        UiHandle {
            proxy: proxy.clone(),
        },
        actions_rx,
    );
    let WindowConfig {
        host,
        settings,
        data_dir,
        focus,
        local_home,
    } = config;

    let size = settings.window_size().unwrap_or(DEFAULT_SIZE);
    let window = WindowBuilder::new()
        .with_title(format!("loopchat — {host}"))
        .with_inner_size(LogicalSize::new(size.width, size.height))
        .with_min_inner_size(LogicalSize::new(360.0, 300.0))
        .build(&event_loop)
        .context("cannot open a window (is a display available?)")?;

    let shell_menu = menu::build(settings.alerts_paused(), local_home.is_some())
        .context("cannot build the menu")?;
    platform::attach_menu(&shell_menu.menu, &window)?;
    let menu_proxy = proxy.clone();
    muda::MenuEvent::set_event_handler(Some(move |e: muda::MenuEvent| {
        let _ = menu_proxy.send_event(Internal::Menu(e.id));
    }));

    std::fs::create_dir_all(&data_dir).ok();
    let mut web_context = WebContext::new(Some(data_dir));
    let ipc_proxy = proxy.clone();
    let title_proxy = proxy.clone();
    let load_proxy = proxy.clone();
    let builder = WebViewBuilder::new_with_web_context(&mut web_context)
        .with_html(page::status("Starting…"))
        .with_ipc_handler(move |req| {
            let _ = ipc_proxy.send_event(Internal::Ipc(req.into_body()));
        })
        .with_document_title_changed_handler(move |title| {
            let _ = title_proxy.send_event(Internal::DocumentTitle(title));
        })
        .with_on_page_load_handler(move |event, url| {
            if matches!(event, PageLoadEvent::Finished) {
                let _ = load_proxy.send_event(Internal::PageLoaded(url));
            }
        });
    let webview = platform::build_webview(builder, &window)?;

    let mut state = WindowState {
        title: format!("loopchat — {host}"),
        window,
        webview,
        _web_context: web_context,
        shell_menu,
        settings,
        host,
        focus,
        local_home,
        actions: actions_tx,
        showing: Showing::Status,
        base_url: None,
        chat_url: None,
        tour: None,
        unread: None,
        save_due: None,
    };
    event_loop.run(move |event, _target, control_flow| {
        let flow = match event {
            Event::UserEvent(Internal::App(ui)) => state.on_app(ui),
            Event::UserEvent(Internal::Ipc(message)) => state.on_ipc(&message),
            Event::UserEvent(Internal::Menu(id)) => state.on_menu(&id),
            Event::UserEvent(Internal::DocumentTitle(title)) => state.on_page_title(&title),
            Event::UserEvent(Internal::PageLoaded(url)) => state.on_page_loaded(&url),
            Event::WindowEvent {
                event: WindowEvent::Focused(focused),
                ..
            } => {
                tracing::info!(focused, "window focus");
                state.focus.set(focused);
                Flow::Continue
            }
            Event::WindowEvent {
                event: WindowEvent::Resized(_),
                ..
            } => {
                state.save_due = Some(Instant::now() + SAVE_DELAY);
                Flow::Continue
            }
            Event::WindowEvent {
                event: WindowEvent::CloseRequested,
                ..
            } => Flow::Exit,
            _ => Flow::Continue,
        };
        *control_flow = match flow {
            Flow::Exit => state.exit(),
            Flow::Continue => state.next_wake(),
        };
    })
}

/// Whether the event loop goes on after an event.
enum Flow {
    Continue,
    Exit,
}

/// The window and what it shows, owned by the event loop.
struct WindowState {
    webview: wry::WebView,
    /// Outlives the web view (declared after it, dropped after it).
    _web_context: WebContext,
    window: tao::window::Window,
    shell_menu: menu::ShellMenu,
    settings: Settings,
    /// Where the chat lives, for the title.
    host: String,
    focus: Focus,
    local_home: Option<PathBuf>,
    actions: mpsc::UnboundedSender<UiAction>,
    showing: Showing,
    base_url: Option<String>,
    /// The page the chat showed last (no token), to go back to from a
    /// cancelled question.
    chat_url: Option<String>,
    /// The welcome tour, while it is on screen.
    tour: Option<Onboarding>,
    /// The shell's own title, and the chat page's unread count ("3",
    /// "99+") shown in front of it.
    title: String,
    unread: Option<String>,
    /// When the window's size is to be saved (resizes settle first).
    save_due: Option<Instant>,
}

impl WindowState {
    /// What the app asked for.
    fn on_app(&mut self, ui: UiEvent) -> Flow {
        match ui {
            UiEvent::Status(text) => {
                self.showing = Showing::Status;
                let _ = self.webview.load_html(&page::status(&text));
            }
            UiEvent::Open {
                url,
                base_url: base,
                session,
                onboarding,
            } => {
                self.showing = Showing::Chat;
                self.end_tour();
                self.tour = onboarding;
                tracing::info!(base_url = %base, session = %session, "opening the chat");
                // A fresh page: it reports its own count once loaded.
                self.unread = None;
                self.set_title(format!("loopchat — {session} @ {}", self.host));
                self.chat_url = Some(loopchat_shell::relay::session_url(&base, &session));
                self.base_url = Some(base);
                if let Err(e) = self.webview.load_url(&url) {
                    tracing::error!(error = %e, "cannot load the chat page");
                }
            }
            UiEvent::DesktopStatus(json) => {
                if self.showing == Showing::Chat && self.tour.is_some() {
                    let _ = self.webview.evaluate_script(&format!(
                        "window.loopchatDesktopStatus && window.loopchatDesktopStatus({json})"
                    ));
                }
            }
            UiEvent::Error { step, message } => {
                self.showing = Showing::Error;
                // Not completed: the tour comes back next time.
                self.end_tour();
                // The count belongs to a page that is gone.
                self.unread = None;
                self.set_title(format!("loopchat — {} (unreachable)", self.host));
                let _ = self.webview.load_html(&page::error(&step, &message));
            }
            UiEvent::AskHostKey {
                host,
                key_type,
                fingerprint,
                known_hosts,
            } => {
                self.showing = Showing::HostKey;
                let _ = self.webview.load_html(&page::host_key(
                    &host,
                    &key_type,
                    &fingerprint,
                    &known_hosts,
                ));
            }
            UiEvent::AskPassphrase { key } => {
                self.showing = Showing::Passphrase;
                let _ = self.webview.load_html(&page::passphrase(&key));
            }
            UiEvent::AskRelayStart {
                host,
                reason,
                command,
            } => {
                self.showing = Showing::RelayStart;
                let _ = self
                    .webview
                    .load_html(&page::relay_start(&host, &reason, &command));
            }
            UiEvent::Stopped { home } => {
                // Retry on this page starts the relay again.
                self.showing = Showing::Error;
                self.unread = None;
                self.set_title(format!("loopchat — {} (relay stopped)", self.host));
                let _ = self.webview.load_html(&page::stopped(&home));
            }
            UiEvent::Activate { target } => self.activate(&target),
            UiEvent::Quit => return Flow::Exit,
        }
        Flow::Continue
    }

    /// A desktop alert was clicked: the window comes forward, and shows
    /// what the alert is about when that is a page of the relay on screen.
    fn activate(&mut self, target: &ClickTarget) {
        self.window.set_visible(true);
        self.window.set_minimized(false);
        self.window.set_focus();
        let opening = match (self.showing, self.base_url.as_deref()) {
            (Showing::Chat, Some(base)) => target.resolve(base),
            _ => Opening::FocusOnly,
        };
        if let Opening::InWindow(url) = opening {
            if let Some(session) = session_of(&url) {
                self.title = format!("loopchat — {session} @ {}", self.host);
                self.show_title();
            }
            tracing::info!(url = %url, "opening an alert's page");
            if let Err(e) = self.webview.load_url(&url) {
                tracing::error!(error = %e, "cannot load the alert's page");
            }
        }
    }

    /// A message from the page: obeyed only from the shell's own pages.
    fn on_ipc(&mut self, message: &str) -> Flow {
        // Never log the message: it may be a passphrase.
        if self.showing == Showing::ConfirmStop && message == "stop:no" {
            self.showing = Showing::Chat;
            if let Some(url) = self.chat_url.as_deref() {
                let _ = self.webview.load_url(url);
            }
        } else if let Some(action) = ipc_action(self.showing, message) {
            self.showing = Showing::Status;
            let text = match action {
                UiAction::StopRelay => "Stopping the relay…",
                UiAction::RelayStartAnswer(true) => "Starting the relay there…",
                _ => "Connecting…",
            };
            let _ = self.webview.load_html(&page::status(text));
            let _ = self.actions.send(action);
        }
        Flow::Continue
    }

    fn on_menu(&mut self, id: &muda::MenuId) -> Flow {
        match MenuCommand::from_id(id) {
            Some(MenuCommand::Reload) => {
                if self.showing == Showing::Error {
                    let _ = self.actions.send(UiAction::Retry);
                } else if self.showing == Showing::Chat {
                    let _ = self.webview.reload();
                }
            }
            Some(MenuCommand::NewChat) => {
                if let (Showing::Chat, Some(base)) = (self.showing, self.base_url.clone()) {
                    let key = new_session_key();
                    tracing::info!(session = %key, "new chat");
                    self.title = format!("loopchat — {key} @ {}", self.host);
                    self.show_title();
                    let _ = self
                        .webview
                        .load_url(&loopchat_shell::relay::session_url(&base, &key));
                }
            }
            Some(MenuCommand::ToggleAlertsPause) => {
                let paused = !self.settings.alerts_paused();
                self.shell_menu.alerts.set_checked(paused);
                tracing::info!(paused, "alerts pause toggled");
                if let Err(e) = self.settings.save_with(|s| s.set_alerts_paused(paused)) {
                    tracing::warn!(error = %e, "cannot save settings");
                }
            }
            Some(MenuCommand::StopRelay) => {
                // Only over the chat: elsewhere there is no relay on
                // screen to stop (or a question is pending).
                if let (Showing::Chat, Some(home)) = (self.showing, self.local_home.as_deref()) {
                    self.showing = Showing::ConfirmStop;
                    let _ = self
                        .webview
                        .load_html(&page::confirm_stop(&home.display().to_string()));
                }
            }
            Some(MenuCommand::Quit) => return Flow::Exit,
            None => {}
        }
        Flow::Continue
    }

    fn on_page_title(&mut self, page_title: &str) -> Flow {
        tracing::info!(title = %page_title, "page title");
        // Only the chat page's count: the shell's own pages have none, and
        // the window keeps its own title otherwise.
        if self.showing == Showing::Chat {
            let count = unread_count(page_title).map(str::to_owned);
            if count != self.unread {
                self.unread = count;
                self.show_title();
                tracing::info!(
                    unread = self.unread.as_deref().unwrap_or("0"),
                    "unread alerts"
                );
            }
        }
        Flow::Continue
    }

    fn on_page_loaded(&mut self, url: &str) -> Flow {
        // Strip query and fragment: the first load carries the token.
        let clean = url.split(['?', '#']).next().unwrap_or_default();
        tracing::info!(url = %clean, "page loaded");
        // The tour's Done and Skip both lead to the chat: leaving it for a
        // page of the relay completes it.
        let on_relay = self
            .base_url
            .as_deref()
            .is_some_and(|b| clean.starts_with(b));
        if on_relay
            && !clean.ends_with("/welcome.html")
            && self.showing == Showing::Chat
            && let Some(done) = self.tour.take()
        {
            done.end();
            let relay_version = done.relay_version.clone();
            match self.settings.save_with(|s| {
                s.set_onboarding_done(loopchat_proto::WELCOME_VERSION, &relay_version)
            }) {
                Ok(()) => {
                    tracing::info!(relay_version = %relay_version, "welcome tour completed")
                }
                Err(e) => tracing::warn!(error = %e, "cannot record the welcome tour"),
            }
        }
        Flow::Continue
    }

    /// The tour on screen, if any, is over (not completed).
    fn end_tour(&mut self) {
        if let Some(old) = self.tour.take() {
            old.end();
        }
    }

    /// A new title for the shell, shown without a count.
    fn set_title(&mut self, title: String) {
        self.title = title;
        set_title(&self.window, &self.title, None);
    }

    /// The shell's title, with the page's count in front.
    fn show_title(&self) {
        set_title(&self.window, &self.title, self.unread.as_deref());
    }

    /// Remember the size, save, exit: every way out of the window.
    fn exit(&mut self) -> ControlFlow {
        save_size(&mut self.settings, &self.window);
        ControlFlow::Exit
    }

    /// Sleep until the next event, or until a pending size is due.
    fn next_wake(&mut self) -> ControlFlow {
        match self.save_due {
            Some(due) if Instant::now() >= due => {
                save_size(&mut self.settings, &self.window);
                self.save_due = None;
                ControlFlow::Wait
            }
            Some(due) => ControlFlow::WaitUntil(due),
            None => ControlFlow::Wait,
        }
    }
}

/// The window's title: the shell's own, after the chat page's unread
/// count when there is one ("(3) loopchat — main @ host").
fn set_title(window: &tao::window::Window, title: &str, unread: Option<&str>) {
    match unread {
        Some(n) => window.set_title(&format!("({n}) {title}")),
        None => window.set_title(title),
    }
}

/// The count the chat page puts in front of its title ("(3) main —
/// loopchat", "(99+) …"); `None` when it shows none.
fn unread_count(page_title: &str) -> Option<&str> {
    let (count, _) = page_title.strip_prefix('(')?.split_once(") ")?;
    let digits = count.strip_suffix('+').unwrap_or(count);
    let valid = !digits.is_empty()
        && digits.len() <= 6
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    valid.then_some(count)
}

/// Saves the window's current inner size (logical pixels, so that it
/// means the same on a screen with another scale factor).
fn save_size(settings: &mut Settings, window: &tao::window::Window) {
    let logical: LogicalSize<f64> = window.inner_size().to_logical(window.scale_factor());
    let size = WindowSize {
        width: logical.width,
        height: logical.height,
    };
    match settings.save_with(|s| s.set_window_size(size)) {
        Ok(()) => tracing::debug!(path = %settings.path().display(), "settings saved"),
        Err(e) => tracing::warn!(error = %e, "cannot save settings"),
    }
}

/// The `session=` of a URL's query, if it is a valid session key.
fn session_of(url: &str) -> Option<&str> {
    let query = url.split_once('?')?.1.split('#').next()?;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("session="))
        .filter(|k| loopchat_proto::validate_session_key(k).is_ok())
}

/// A fresh session key: `chat-` and 10 random characters, well inside the
/// protocol's `[A-Za-z0-9._:-]{1,128}`.
pub fn new_session_key() -> String {
    use rand::Rng;
    use rand::distributions::Alphanumeric;
    let suffix: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(10)
        .map(char::from)
        .collect();
    format!("chat-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_keys_are_valid_and_fresh() {
        let a = new_session_key();
        let b = new_session_key();
        assert_ne!(a, b);
        loopchat_proto::validate_session_key(&a).unwrap();
    }

    #[test]
    fn the_chat_page_cannot_answer_the_shells_questions() {
        for message in [
            "retry",
            "hostkey:yes",
            "hostkey:no",
            "passphrase:x",
            "passphrase-skip",
        ] {
            assert!(ipc_action(Showing::Chat, message).is_none(), "{message}");
            assert!(ipc_action(Showing::Status, message).is_none(), "{message}");
        }
        assert!(ipc_action(Showing::Error, "hostkey:yes").is_none());
        assert!(ipc_action(Showing::Chat, "stop:yes").is_none());
        assert!(ipc_action(Showing::Chat, "relaystart:yes").is_none());
        assert!(ipc_action(Showing::HostKey, "relaystart:yes").is_none());
        assert_eq!(
            ipc_action(Showing::RelayStart, "relaystart:yes"),
            Some(UiAction::RelayStartAnswer(true))
        );
        assert!(ipc_action(Showing::Error, "stop:yes").is_none());
        assert_eq!(
            ipc_action(Showing::ConfirmStop, "stop:yes"),
            Some(UiAction::StopRelay)
        );
        assert!(ipc_action(Showing::Passphrase, "hostkey:yes").is_none());
        assert!(matches!(
            ipc_action(Showing::HostKey, "hostkey:yes"),
            Some(UiAction::HostKeyAnswer(true))
        ));
        assert!(matches!(
            ipc_action(Showing::Passphrase, "passphrase:pw"),
            Some(UiAction::Passphrase(Some(p))) if p == "pw"
        ));
    }

    #[test]
    fn unread_count_of_a_page_title() {
        assert_eq!(unread_count("(3) main — loopchat"), Some("3"));
        assert_eq!(unread_count("(99+) main — loopchat"), Some("99+"));
        assert_eq!(unread_count("main — loopchat"), None);
        assert_eq!(unread_count("(0) main"), None);
        assert_eq!(unread_count("(x) main"), None);
        assert_eq!(unread_count("() main"), None);
        assert_eq!(unread_count("(12345678) main"), None);
        assert_eq!(unread_count("(3)main"), None);
    }

    #[test]
    fn session_of_a_url() {
        assert_eq!(
            session_of("http://127.0.0.1:1/webchat/?session=work#x"),
            Some("work")
        );
        assert_eq!(
            session_of("http://127.0.0.1:1/webchat/?a=1&session=k2"),
            Some("k2")
        );
        assert_eq!(session_of("http://127.0.0.1:1/webchat/"), None);
        assert_eq!(session_of("http://h/?session=a%2Fb"), None);
    }
}
