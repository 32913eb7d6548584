//! A real window under X (Xvfb in CI): the shell in local mode shows the
//! relay's chat; without a relay it shows its error page. Checked from the
//! outside: logs (page title, loaded URL), the X window tree (title, size)
//! and a screenshot (`import -window root`) that must not be blank.
//!
//! `harness = false`: GTK wants the main thread, and a plain `main` makes
//! the X setup explicit. Without a DISPLAY the binary re-runs itself under
//! `xvfb-run -a`, so `cargo test -p loopchat-shell` works anywhere Xvfb is
//! installed. Screenshots are kept in `target/tmp/` for a human to look at.

#[path = "support/desktop.rs"]
mod desktop;
mod support;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use desktop::{Shell, screenshot, window_tree};
use support::{Fixture, Relay, SshHost, Sshd, pid_alive, post_alert, shell_bin, user_destination};

const TESTS: &[desktop::Test<()>] = &[
    ("window_shows_the_local_chat", |_| {
        window_shows_the_local_chat()
    }),
    ("window_shows_an_error_page_without_relay", |_| {
        window_shows_an_error_page_without_relay()
    }),
    ("window_starts_the_local_relay_when_none_runs", |_| {
        window_starts_the_local_relay_when_none_runs()
    }),
    ("stop_relay_asks_first_then_stops_it", |_| {
        stop_relay_asks_first_then_stops_it()
    }),
    ("two_shells_started_together_start_one_relay", |_| {
        two_shells_started_together_start_one_relay()
    }),
    ("window_shows_a_remote_chat_through_the_tunnel", |_| {
        window_shows_a_remote_chat_through_the_tunnel()
    }),
    ("window_offers_to_start_a_remote_relay", |_| {
        window_offers_to_start_a_remote_relay()
    }),
    ("window_shows_how_to_install_a_missing_remote_relay", |_| {
        window_shows_how_to_install_a_missing_remote_relay()
    }),
    ("window_asks_about_an_unknown_host_and_a_passphrase", |_| {
        window_asks_about_an_unknown_host_and_a_passphrase()
    }),
    ("the_tours_cli_step_looks_at_the_remote_hosts_path", |_| {
        the_tours_cli_step_looks_at_the_remote_hosts_path()
    }),
];

fn main() {
    desktop::main(TESTS, desktop::Display::ExistingOrXvfb, || (), |_| {});
}

/// The window on `home`, for a returning user (the welcome tour recorded
/// as done).
fn start_window(home: &Path, args: &[impl AsRef<OsStr>]) -> Shell {
    start_window_with_path(home, args, None)
}

/// `path`: the shell's own PATH, when it must not be the test's.
fn start_window_with_path(home: &Path, args: &[impl AsRef<OsStr>], path: Option<&str>) -> Shell {
    support::mark_tour_done(home);
    let mut command = Shell::command(home, args);
    if let Some(path) = path {
        command.env("PATH", path);
    }
    Shell::spawn("shell", &mut command)
}

fn distinct_colours(png: &Path) -> usize {
    let out = Command::new("convert")
        .arg(png)
        .args(["-format", "%k", "info:"])
        .output()
        .expect("run `convert` (imagemagick)");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("colour count")
}

fn window_shows_the_local_chat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("loopchat");
    std::fs::create_dir_all(home.join("user-home")).expect("home");
    // A remembered size, to check that it is restored.
    std::fs::write(
        home.join("shell.json"),
        r#"{"window":{"width":900.0,"height":640.0},"alertsPaused":false}"#,
    )
    .expect("shell.json");
    let relay = Relay::start(&home, None);

    let mut shell = start_window(&home, &["--session", "wintest"]);
    let found = shell.wait_for_line(&["local relay found"], Duration::from_secs(30));
    assert!(found.contains(&relay.port.to_string()), "{found}");
    let loaded = shell.wait_for_line(&["page loaded", "/webchat/"], Duration::from_secs(60));
    // The token came in the fragment and the page took it from there: the
    // page that loaded is the relay's own, at its base URL.
    assert!(
        loaded.contains(&format!("127.0.0.1:{}/webchat/", relay.port)),
        "{loaded}"
    );
    // The page's own marker: the chat UI puts the session in its title.
    let title = shell.wait_for_line(&["page title", "wintest"], Duration::from_secs(30));
    assert!(title.contains("loopchat"), "{title}");
    // Let WebKit paint.
    std::thread::sleep(Duration::from_secs(3));

    let tree = window_tree();
    let ours = tree
        .lines()
        .find(|l| l.contains("wintest @"))
        .unwrap_or_else(|| panic!("no window titled with the session:\n{tree}"));
    assert!(ours.contains("900x640"), "size not restored: {ours}");

    let shot = screenshot("window-local-chat");
    let colours = distinct_colours(&shot);
    assert!(
        colours >= 16,
        "the screenshot looks blank ({colours} colours)"
    );
    assert!(!shell.log().contains(&relay.token), "token in the logs");

    shell.stop();
    let saved = std::fs::read_to_string(home.join("shell.json")).expect("shell.json");
    assert!(saved.contains("900"), "{saved}");
    assert!(pid_alive(relay.pid), "closing the window stopped the relay");
}

/// `--no-start`: the shell does not start a relay, and says how to.
fn window_shows_an_error_page_without_relay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("loopchat");
    std::fs::create_dir_all(home.join("user-home")).expect("home");
    let mut shell = start_window(&home, &["--no-start"]);
    let error = shell.wait_for_line(&["cannot show the chat"], Duration::from_secs(30));
    assert!(error.contains("step=discovery"), "{error}");
    assert!(shell.log().contains("loopchat serve"), "{}", shell.log());
    shell.wait_for_line(&["page title", "unreachable"], Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(2));
    let tree = window_tree();
    assert!(tree.contains("(unreachable)"), "{tree}");
    let shot = screenshot("window-error-page");
    let colours = distinct_colours(&shot);
    assert!(
        colours >= 16,
        "the screenshot looks blank ({colours} colours)"
    );

    // No shell.json before: the default size is remembered on exit.
    shell.stop();
    let saved: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.join("shell.json")).expect("shell.json written on exit"),
    )
    .expect("shell.json");
    assert_eq!(saved["window"]["width"], 1000.0, "{saved}");
    assert_eq!(saved["window"]["height"], 760.0, "{saved}");
    assert!(
        !home.join("relay.json").exists() && !home.join("relay.log").exists(),
        "--no-start started a relay"
    );
}

/// The relay a shell started: the test stops it (SIGTERM to the pid in
/// `relay.json`) at the end, or when it fails, so none is left behind.
struct StartedRelay {
    home: PathBuf,
}

impl StartedRelay {
    fn discovery(&self) -> Option<loopchat_proto::Discovery> {
        let bytes = std::fs::read(self.home.join("relay.json")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Every `loopchat serve` process serving this home.
    fn serving_pids(&self) -> Vec<u32> {
        let home = self.home.display().to_string();
        let mut pids = Vec::new();
        for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            if args.iter().any(|a| a == "serve") && args.contains(&home) && pid_alive(pid) {
                pids.push(pid);
            }
        }
        pids
    }

    fn stop(&self) {
        for pid in self.serving_pids() {
            // SAFETY: plain kill(2).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while pid_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if pid_alive(pid) {
                // SAFETY: plain kill(2).
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
    }
}

impl Drop for StartedRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The session id of a process (field 6 of /proc/PID/stat).
fn session_of_pid(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let after = stat.rsplit_once(')').expect("stat").1;
    after
        .split_whitespace()
        .nth(3)
        .and_then(|s| s.parse().ok())
        .expect("session id")
}

/// Polls the X window tree until a window name contains every one of
/// `parts`.
fn wait_for_window(parts: &[&str], limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let tree = window_tree();
        if let Some(line) = tree.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no window with {parts:?} within {limit:?}:\n{tree}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// No relay runs: the shell starts `loopchat serve` (the one next to it in
/// target/debug), detached, and shows the chat. The relay outlives the
/// shell, comes back on the same port when started again, and the window
/// title carries the page's unread count.
fn window_starts_the_local_relay_when_none_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("loopchat");
    std::fs::create_dir_all(home.join("user-home")).expect("home");
    let relay = StartedRelay { home: home.clone() };

    let mut shell = start_window(&home, &["--session", "started"]);
    let started = shell.wait_for_line(&["local relay started"], Duration::from_secs(30));
    assert!(started.contains("ours=true"), "{started}");
    let sibling = Path::new(shell_bin()).with_file_name("loopchat");
    assert!(
        started.contains(&sibling.display().to_string()),
        "not the loopchat next to the shell: {started}"
    );
    shell.wait_for_line(&["page title", "started"], Duration::from_secs(60));
    wait_for_window(&["loopchat — started @"], Duration::from_secs(30));

    let discovery = relay.discovery().expect("a live relay.json");
    assert_eq!(relay.serving_pids(), vec![discovery.pid]);
    // Detached: its own session, not the shell's.
    assert_eq!(session_of_pid(discovery.pid), discovery.pid);
    assert_ne!(session_of_pid(discovery.pid), session_of_pid(shell.pid()));
    let log = home.join("relay.log");
    let mode = std::fs::metadata(&log).expect("relay.log").permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.mode() & 0o777, 0o600, "relay.log mode");

    // The unread count: an alert posted now is unread in the page, whose
    // title the window shows in front of its own.
    post_alert(&home, "build done", "ok", &[]);
    shell.wait_for_line(&["page title", "(1) started"], Duration::from_secs(30));
    let titled = wait_for_window(&["(1) loopchat — started @"], Duration::from_secs(30));
    eprintln!("  window: {titled}");
    std::thread::sleep(Duration::from_secs(2));
    let shot = screenshot("window-started-relay-unread");
    assert!(distinct_colours(&shot) >= 16, "blank window");
    assert!(!shell.log().contains(&discovery.token), "token in the logs");

    shell.stop();
    assert!(
        pid_alive(discovery.pid),
        "quitting the shell stopped the relay it started"
    );

    // Stopped and started again by a new shell: the same port, so the
    // page's origin (and the token in its storage) is the same.
    relay.stop();
    assert!(!pid_alive(discovery.pid));
    let mut again = start_window(&home, &["--session", "started"]);
    let restarted = again.wait_for_line(&["local relay started"], Duration::from_secs(30));
    assert!(
        restarted.contains(&format!("port={}", discovery.port)),
        "the restarted relay took another port than {}: {restarted}",
        discovery.port
    );
    again.wait_for_line(&["page title", "started"], Duration::from_secs(60));
    let second = relay.discovery().expect("relay.json");
    assert_ne!(second.pid, discovery.pid);
    again.stop();
    assert!(pid_alive(second.pid));
}

/// "Stop relay" (Ctrl+Shift+S) asks first; Cancel goes back to the chat
/// with the relay untouched, "Stop relay" stops it (also one the shell did
/// not start), and "Start it again" brings one back on the same port.
fn stop_relay_asks_first_then_stops_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("loopchat");
    std::fs::create_dir_all(home.join("user-home")).expect("home");
    let relay = StartedRelay { home: home.clone() };

    let mut shell = start_window(&home, &["--session", "stopper"]);
    shell.wait_for_line(&["local relay started"], Duration::from_secs(30));
    shell.wait_for_line(&["page title", "stopper"], Duration::from_secs(60));
    wait_for_window(&["loopchat — stopper @"], Duration::from_secs(30));
    let first = relay.discovery().expect("a live relay.json");
    // Let the page settle so the key goes to a loaded document.
    std::thread::sleep(Duration::from_secs(1));

    // Cancel (Escape) keeps it running and shows the chat again.
    desktop::xdo::keys("ctrl+shift+s");
    shell.wait_for_line(&["page title", "stop the relay?"], Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    let shot = screenshot("window-stop-relay-question");
    assert!(distinct_colours(&shot) >= 16, "blank question page");
    desktop::xdo::keys("Escape");
    let titles = || shell_titles(&shell.log());
    let deadline = Instant::now() + Duration::from_secs(30);
    while titles().last().is_none_or(|t| !t.contains("stopper")) {
        assert!(
            Instant::now() < deadline,
            "no chat after Cancel: {:?}",
            titles()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(pid_alive(first.pid), "Cancel stopped the relay");
    assert!(!shell.log().contains("stopping the local relay"));

    // Confirmed: the relay ends and its discovery file goes with it.
    std::thread::sleep(Duration::from_secs(1));
    let asked = titles().len();
    desktop::xdo::keys("ctrl+shift+s");
    let deadline = Instant::now() + Duration::from_secs(30);
    while titles().len() <= asked
        || !titles()
            .last()
            .is_some_and(|t| t.contains("stop the relay?"))
    {
        assert!(Instant::now() < deadline, "not asked again: {:?}", titles());
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    desktop::xdo::keys("Return");
    let stopped = shell.wait_for_line(&["local relay stopped"], Duration::from_secs(40));
    assert!(stopped.contains(&format!("pid={}", first.pid)), "{stopped}");
    assert!(!pid_alive(first.pid), "the relay still runs");
    assert!(!home.join("relay.json").exists(), "relay.json left behind");
    wait_for_window(&["(relay stopped)"], Duration::from_secs(30));
    shell.wait_for_line(&["page title", "relay stopped"], Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    let shot = screenshot("window-relay-stopped");
    assert!(distinct_colours(&shot) >= 16, "blank stopped page");

    // "Start it again" (focused): a new relay, on the same port.
    desktop::xdo::keys("Return");
    let deadline = Instant::now() + Duration::from_secs(40);
    let second = loop {
        if let Some(d) = relay.discovery()
            && d.pid != first.pid
            && pid_alive(d.pid)
        {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "not started again:\n{}",
            shell.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(second.port, first.port, "the origin changed");
    wait_for_window(&["loopchat — stopper @"], Duration::from_secs(30));
    assert!(!shell.log().contains(&first.token), "token in the logs");

    // Quitting still leaves it running.
    shell.stop();
    assert!(pid_alive(second.pid), "quitting stopped the relay");
}

/// Every page title the window reported, in order.
fn shell_titles(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("page title"))
        .map(str::to_owned)
        .collect()
}

/// Two shells started at the same moment on a home without a relay: the
/// relay's lock lets one `loopchat serve` win, and both windows show the
/// chat of that one relay.
fn two_shells_started_together_start_one_relay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("loopchat");
    std::fs::create_dir_all(home.join("user-home")).expect("home");
    let relay = StartedRelay { home: home.clone() };

    let mut a = start_window(&home, &["--session", "twin-a"]);
    let mut b = start_window(&home, &["--session", "twin-b"]);
    let found_a = a.wait_for_line(&["local relay found"], Duration::from_secs(40));
    let found_b = b.wait_for_line(&["local relay found"], Duration::from_secs(40));
    a.wait_for_line(&["page title", "twin-a"], Duration::from_secs(60));
    b.wait_for_line(&["page title", "twin-b"], Duration::from_secs(60));
    wait_for_window(&["twin-a @"], Duration::from_secs(30));
    wait_for_window(&["twin-b @"], Duration::from_secs(30));

    let discovery = relay.discovery().expect("a live relay.json");
    let port = format!("port={}", discovery.port);
    assert!(found_a.contains(&port), "{found_a}");
    assert!(found_b.contains(&port), "{found_b}");
    assert_eq!(
        relay.serving_pids(),
        vec![discovery.pid],
        "exactly one relay serves the home"
    );
    let started: Vec<String> = [&a, &b]
        .iter()
        .filter_map(|s| {
            s.log()
                .lines()
                .find(|l| l.contains("local relay started"))
                .map(str::to_owned)
        })
        .collect();
    eprintln!("  started lines: {started:?}");
    assert!(!started.is_empty(), "neither shell started the relay");
    let relay_log = std::fs::read_to_string(home.join("relay.log")).unwrap_or_default();
    if started.len() == 2 {
        // Both spawned one: the loser said why it stepped aside.
        assert!(relay_log.contains("another relay"), "{relay_log}");
    }
    let shot = screenshot("window-two-shells");
    assert!(distinct_colours(&shot) >= 16, "blank windows");
    a.stop();
    b.stop();
    assert!(pid_alive(discovery.pid));
}

fn window_shows_a_remote_chat_through_the_tunnel() {
    let host = SshHost::start();
    let relay = Relay::start(&host.fx.path("remote/.loopchat"), None);
    let local_home = host.fx.path("local");
    std::fs::create_dir_all(local_home.join("user-home")).expect("home");
    let destination = user_destination(host.sshd.port);
    let mut shell = start_window(
        &local_home,
        &remote_args(&host, &relay.discovery_path(), "remotetest"),
    );
    let reachable = shell.wait_for_line(&["remote relay reachable"], Duration::from_secs(30));
    assert!(
        reachable.contains(&format!("remote_port={}", relay.port)),
        "{reachable}"
    );
    assert!(
        reachable.contains(&destination),
        "tunnel target not logged: {reachable}"
    );
    let loaded = shell.wait_for_line(&["page loaded", "/webchat/"], Duration::from_secs(60));
    // Through the tunnel's local port, not the relay's.
    assert!(!loaded.contains(&format!(":{}/", relay.port)), "{loaded}");
    // That port is remembered for the host, for the next start.
    let settings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(local_home.join("shell.json")).expect("shell.json"))
            .expect("shell.json");
    let port = settings["tunnelPorts"][destination.as_str()]
        .as_u64()
        .unwrap_or_else(|| panic!("no tunnel port remembered: {settings}"));
    assert!(loaded.contains(&format!("127.0.0.1:{port}/")), "{loaded}");
    shell.wait_for_line(&["page title", "remotetest"], Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    let tree = window_tree();
    assert!(
        tree.lines()
            .any(|l| l.contains("remotetest @") && l.contains(&destination)),
        "title should show the session and the SSH target:\n{tree}"
    );
    let shot = screenshot("window-remote-chat");
    assert!(distinct_colours(&shot) >= 16, "blank remote window");
    assert!(!shell.log().contains(&relay.token), "token in the logs");
    shell.stop();
    assert!(
        pid_alive(relay.pid),
        "closing the window stopped the remote relay"
    );
}

/// An unknown host in the window is a question with the fingerprint (the
/// headless `tunnel` refuses instead), and so is an encrypted key's
/// passphrase. The test answers with the keyboard (XTest via libxdo):
/// Return on the focused "Trust" button, then the passphrase.
fn window_asks_about_an_unknown_host_and_a_passphrase() {
    let fx = Fixture::new();
    let key = fx.client_key("id_locked", "correct horse");
    let sshd = Sshd::start(&fx, "sshd");
    let known_hosts = fx.path("known_hosts");
    std::fs::write(&known_hosts, "").expect("known_hosts");
    let relay = Relay::start(&fx.path("remote/.loopchat"), None);
    let local_home = fx.path("local");
    std::fs::create_dir_all(local_home.join("user-home")).expect("home");
    let mut shell = start_window(
        &local_home,
        &[
            "--remote",
            &format!("127.0.0.1:{}", sshd.port),
            "--identity",
            &key.display().to_string(),
            "--known-hosts",
            &known_hosts.display().to_string(),
            "--remote-discovery",
            &relay.discovery_path().display().to_string(),
            "--session",
            "asked",
        ],
    );
    shell.wait_for_line(&["page title", "unknown host"], Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let shot = screenshot("window-unknown-host");
    assert!(distinct_colours(&shot) >= 16, "blank question page");
    // Nothing is recorded before the user says so.
    assert_eq!(std::fs::read_to_string(&known_hosts).expect("kh"), "");

    desktop::xdo::keys("Return");
    shell.wait_for_line(&["page title", "passphrase"], Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    desktop::xdo::type_text("correct horse");
    desktop::xdo::keys("Return");

    shell.wait_for_line(&["page title", "asked"], Duration::from_secs(30));
    let recorded = std::fs::read_to_string(&known_hosts).expect("kh");
    assert!(
        recorded.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", sshd.port)),
        "{recorded}"
    );
    assert!(
        !shell.log().contains("correct horse"),
        "passphrase in the logs"
    );
    shell.stop();
}

/// The window's flags for `session` of the relay whose discovery file is
/// `discovery` on `host`.
fn remote_args(host: &SshHost, discovery: &Path, session: &str) -> Vec<String> {
    let mut args = host.remote_args(discovery);
    args.extend(["--session".to_owned(), session.to_owned()]);
    args
}

/// Remote mode, no relay on the host but `loopchat` on its PATH: the shell
/// asks before anything runs there; Cancel starts nothing; Retry asks
/// again, and yes starts `loopchat serve` detached over the same SSH
/// connection, after which discovery finds it and the chat shows.
fn window_offers_to_start_a_remote_relay() {
    let bin_dir = Path::new(shell_bin())
        .parent()
        .expect("target dir")
        .to_owned();
    // The remote PATH (as sshd sets it for the session) has the relay.
    let path = format!("SetEnv=PATH={}:/usr/bin:/bin", bin_dir.display());
    let host = SshHost::start_with(&[&path]);
    let remote_home = host.fx.path("remote/.loopchat");
    let relay = StartedRelay {
        home: remote_home.clone(),
    };
    let local_home = host.fx.path("local");
    std::fs::create_dir_all(local_home.join("user-home")).expect("home");
    let mut shell = start_window(
        &local_home,
        &remote_args(&host, &remote_home.join("relay.json"), "remotestart"),
    );

    shell.wait_for_line(&["page title", "start a relay?"], Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(1));
    let shot = screenshot("window-remote-start-question");
    assert!(distinct_colours(&shot) >= 16, "blank question page");
    assert!(relay.serving_pids().is_empty(), "started before asking");
    assert!(
        !remote_home.exists(),
        "touched the remote home before asking"
    );

    // Cancel: nothing runs there, and the error page says why.
    desktop::xdo::keys("Tab");
    desktop::xdo::keys("Return");
    shell.wait_for_line(&["cannot show the chat"], Duration::from_secs(30));
    shell.wait_for_line(&["page title", "unreachable"], Duration::from_secs(30));
    assert!(relay.serving_pids().is_empty(), "started after Cancel");
    assert!(!shell.log().contains("starting the remote relay"));

    // Retry (Reload over the error page) asks again; yes starts it.
    std::thread::sleep(Duration::from_millis(500));
    desktop::xdo::keys("ctrl+r");
    let asked = shell.count_lines(&["start a relay?"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while shell.count_lines(&["start a relay?"]) <= asked {
        assert!(
            Instant::now() < deadline,
            "not asked again:\n{}",
            shell.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    desktop::xdo::keys("Return");
    let started = shell.wait_for_line(&["remote relay started"], Duration::from_secs(40));
    shell.wait_for_line(&["page title", "remotestart"], Duration::from_secs(60));
    let discovery = relay.discovery().expect("the started relay's relay.json");
    assert!(
        started.contains(&format!("remote_port={}", discovery.port)),
        "{started}"
    );
    assert_eq!(relay.serving_pids(), vec![discovery.pid]);
    // Detached from the SSH session: its own session.
    assert_eq!(session_of_pid(discovery.pid), discovery.pid);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(remote_home.join("relay.log"))
        .expect("relay.log")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "relay.log mode");
    wait_for_window(&["remotestart @"], Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let shot = screenshot("window-remote-started-chat");
    assert!(distinct_colours(&shot) >= 16, "blank chat");
    assert!(!shell.log().contains(&discovery.token), "token in the logs");

    // Closing the shell (and with it the SSH session) leaves it running.
    shell.stop();
    assert!(
        pid_alive(discovery.pid),
        "the remote relay died with the shell"
    );
}

/// Remote mode, no relay and no `loopchat` on the remote PATH: nothing is
/// offered or installed; the error page gives the install command.
fn window_shows_how_to_install_a_missing_remote_relay() {
    let host = SshHost::start_with(&["SetEnv=PATH=/usr/bin:/bin"]);
    let remote_home = host.fx.path("remote/.loopchat");
    let local_home = host.fx.path("local");
    std::fs::create_dir_all(local_home.join("user-home")).expect("home");
    let mut shell = start_window(
        &local_home,
        &remote_args(&host, &remote_home.join("relay.json"), "noinstall"),
    );
    let error = shell.wait_for_line(&["cannot show the chat"], Duration::from_secs(60));
    assert!(error.contains("step=discovery"), "{error}");
    let log = shell.log();
    assert!(
        log.contains("cargo install --locked --path relay"),
        "no install command: {log}"
    );
    assert!(!log.contains("start a relay?"), "offered without a binary");
    shell.wait_for_line(&["page title", "unreachable"], Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(1));
    let shot = screenshot("window-remote-install-hint");
    assert!(distinct_colours(&shot) >= 16, "blank error page");
    assert!(!remote_home.exists(), "touched the remote home");
    shell.stop();
}

/// The welcome tour in remote mode: its CLI step reports the remote host's
/// PATH, asked over the shell's SSH connection, and not this machine's.
/// Each case has `loopchat` on exactly one side, so a shell that looked at
/// its own PATH would report the opposite.
fn the_tours_cli_step_looks_at_the_remote_hosts_path() {
    let bin_dir = Path::new(shell_bin())
        .parent()
        .expect("target dir")
        .to_owned();
    let with_loopchat = format!("{}:/usr/bin:/bin", bin_dir.display());
    for (remote_path, local_path, expected) in [
        (
            with_loopchat.as_str(),
            "/usr/bin:/bin",
            format!("path=\"{}/loopchat\"", bin_dir.display()),
        ),
        (
            "/usr/bin:/bin",
            with_loopchat.as_str(),
            "path=\"none\"".to_owned(),
        ),
    ] {
        let host = SshHost::start_with(&[&format!("SetEnv=PATH={remote_path}")]);
        let relay = Relay::start(&host.fx.path("remote/.loopchat"), None);
        let local_home = host.fx.path("local");
        std::fs::create_dir_all(local_home.join("user-home")).expect("home");
        let destination = user_destination(host.sshd.port);
        let mut args = remote_args(&host, &relay.discovery_path(), "tourcli");
        args.push("--onboarding".into());
        let mut shell = start_window_with_path(&local_home, &args, Some(local_path));
        shell.wait_for_line(&["showing the welcome tour"], Duration::from_secs(60));
        let step = shell.wait_for_line(&["the tour's CLI step"], Duration::from_secs(60));
        assert!(step.contains(&format!("host=\"{destination}\"")), "{step}");
        assert!(step.contains(&expected), "want {expected}: {step}");
        assert!(step.contains("error=\"none\""), "{step}");
        assert!(!shell.log().contains(&relay.token), "token in the logs");
        shell.stop();
    }
}
