//! Desktop notifications end to end, with real parts only: the real relay
//! (`loopchat serve`, alerts posted with `loopchat notify`), the shell
//! (`loopchat-shell alerts`, the window, or the notifications module in
//! this process), a private session D-Bus and Debian's `dunst` as the
//! notification daemon. What the daemon received is read from a log its
//! `script` rule writes for every notification (id, app, urgency, summary,
//! body — the urgency is not in `dunstctl history`); a screenshot of the
//! popups is kept in `target/tmp/` for a human to look at.
//!
//! `harness = false`: `main` sets up the display, the bus and the daemon
//! before any thread starts (the bus address is an environment variable),
//! then runs the scenarios one after the other — one daemon, one screen.
//! It always runs under its own `xvfb-run` (1280x1024, so that the window
//! and the popups have known places), and its own `dbus-daemon`: the CI's
//! bus may already have a notification daemon, and a test must see exactly
//! what the shell sent. Needs: xvfb, xauth, dbus, dunst, imagemagick,
//! x11-utils, libxdo (scripts/install-test-deps.sh); a missing one fails
//! with its name, nothing is skipped.

#[path = "support/desktop.rs"]
mod desktop;
mod support;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use desktop::{Shell, screenshot, window_tree};
use support::{Relay, SshHost, post_alert};

const TESTS: &[desktop::Test<Desktop>] = &[
    (
        "two_shells_raise_an_alert_once_with_its_urgency",
        two_shells_raise_an_alert_once_with_its_urgency,
    ),
    ("paused_alerts_are_not_raised", paused_alerts_are_not_raised),
    (
        "an_image_reaches_the_popup_and_a_read_version_is_not_raised",
        an_image_reaches_the_popup_and_a_read_version_is_not_raised,
    ),
    (
        "a_focused_window_keeps_alerts_quiet",
        a_focused_window_keeps_alerts_quiet,
    ),
    (
        "alerts_missed_while_no_shell_ran_are_replayed_once",
        alerts_missed_while_no_shell_ran_are_replayed_once,
    ),
    (
        "a_restarted_relay_is_followed",
        a_restarted_relay_is_followed,
    ),
    (
        "remote_alerts_come_through_the_tunnel",
        remote_alerts_come_through_the_tunnel,
    ),
    (
        "the_window_stays_quiet_when_focused_and_a_click_opens_the_session",
        the_window_stays_quiet_when_focused_and_a_click_opens_the_session,
    ),
    (
        "the_welcome_tour_sends_a_real_test_alert_and_is_shown_once",
        the_welcome_tour_sends_a_real_test_alert_and_is_shown_once,
    ),
];

fn main() {
    // Still one thread when `Desktop::start` runs: safe to set the
    // environment every child inherits.
    desktop::main(
        TESTS,
        desktop::Display::OwnXvfb,
        Desktop::start,
        Desktop::clear,
    );
}

/// A private session bus with dunst on it.
struct Desktop {
    dir: tempfile::TempDir,
    bus: Child,
    dunst: Child,
}

/// One notification as the daemon received it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Received {
    id: String,
    app: String,
    urgency: String,
    summary: String,
    body: String,
}

impl Desktop {
    fn start() -> Self {
        for tool in [
            "dbus-daemon",
            "dbus-send",
            "dunst",
            "dunstctl",
            "import",
            "xwininfo",
        ] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "{tool} is missing: run scripts/install-test-deps.sh (dbus, dunst, imagemagick, x11-utils)"
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("loopchat-alerts-test")
            .tempdir()
            .expect("tempdir");
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .arg(format!(
                "--address=unix:path={}",
                dir.path().join("bus").display()
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start dbus-daemon");
        let mut address = String::new();
        BufReader::new(bus.stdout.take().expect("stdout"))
            .read_line(&mut address)
            .expect("bus address");
        let address = address.trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus-daemon said {address:?}");
        // SAFETY: main has not started any thread yet.
        unsafe {
            std::env::set_var("DBUS_SESSION_BUS_ADDRESS", &address);
        }

        let log = dir.path().join("received.log");
        let script = dir.path().join("log-notification.sh");
        // One record per notification: fields split by 0x1f, records ended
        // by 0x1e (bodies may hold newlines).
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s\\037%s\\037%s\\037%s\\037%s\\036' \
                 \"$DUNST_ID\" \"$DUNST_APP_NAME\" \"$DUNST_URGENCY\" \"$DUNST_SUMMARY\" \"$DUNST_BODY\" >> '{}'\n",
                log.display()
            ),
        )
        .expect("script");
        make_executable(&script);
        let config = dir.path().join("dunstrc");
        std::fs::write(
            &config,
            format!(
                "[global]\n    notification_limit = 0\n    idle_threshold = 0\n    history_length = 100\n    \
                 mouse_left_click = do_action, close_current\n\
                 [urgency_low]\n    timeout = 120\n\
                 [urgency_normal]\n    timeout = 120\n\
                 [log]\n    script = {}\n",
                script.display()
            ),
        )
        .expect("dunstrc");
        let dunst = Command::new("dunst")
            .arg("-config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dunst");
        let desktop = Self { dir, bus, dunst };
        // Ready once it owns the name. Asked with NameHasOwner, which never
        // starts anything: `dunstctl` (a method call to the name) lets the
        // bus *activate* the system's dunst (its D-Bus service file) when
        // ours has not claimed the name yet, and under load that one won
        // the name, without our logging script: every test then saw nothing.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let owned = Command::new("dbus-send")
                .args([
                    "--session",
                    "--print-reply=literal",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.Notifications",
                ])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("true"));
            if owned && dunstctl(&["is-paused"]).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dunst did not come up on the private bus"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        desktop
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("received.log")
    }

    /// Closes every popup and forgets what was received.
    fn clear(&self) {
        let _ = dunstctl(&["close-all"]);
        let _ = dunstctl(&["history-clear"]);
        std::thread::sleep(Duration::from_millis(200));
        let _ = std::fs::remove_file(self.log_path());
    }

    /// In the order the daemon received them: by its notification id. The
    /// log's own order is not that: dunst runs the `script` of each
    /// notification in its own process, and two of them started close
    /// together may append in either order (this made a test flaky).
    fn received(&self) -> Vec<Received> {
        let mut all = self.logged();
        all.sort_by_key(|r| r.id.parse::<u64>().unwrap_or(u64::MAX));
        all
    }

    fn logged(&self) -> Vec<Received> {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        text.split('\u{1e}')
            .filter(|r| !r.is_empty())
            .map(|r| {
                let f: Vec<&str> = r.split('\u{1f}').collect();
                assert_eq!(f.len(), 5, "bad record {r:?}");
                Received {
                    id: f[0].into(),
                    app: f[1].into(),
                    urgency: f[2].into(),
                    summary: f[3].into(),
                    body: f[4].into(),
                }
            })
            .collect()
    }

    /// Waits until at least `n` notifications were received, then a little
    /// longer (a second one would have arrived by then), and returns all.
    fn wait_received(&self, n: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.received().len() < n {
            assert!(
                Instant::now() < deadline,
                "the daemon received {:?}, expected {n}",
                self.received()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(800));
        self.received()
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        for child in [&mut self.dunst, &mut self.bus] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

fn dunstctl(args: &[&str]) -> Result<String, String> {
    let out = Command::new("dunstctl")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A returning user's shell (the welcome tour recorded as done).
fn start_shell(name: &str, home: &Path, args: &[impl AsRef<OsStr>]) -> Shell {
    support::mark_tour_done(home);
    start_shell_fresh(name, home, args)
}

/// The shell on `home` as it is (a first run shows the welcome tour).
fn start_shell_fresh(name: &str, home: &Path, args: &[impl AsRef<OsStr>]) -> Shell {
    let mut command = Shell::command(home, args);
    // Clicks in headless mode open a browser: none here.
    command.env("BROWSER", "true");
    Shell::spawn(name, &mut command)
}

/// `loopchat-shell alerts` on the local relay of `home`.
fn start_alerts(name: &str, home: &Path) -> Shell {
    std::fs::create_dir_all(home.join("user-home")).expect("home");
    start_shell(name, home, &["alerts"])
}

/// A relay that pings its WebSockets every second, so that a shell that
/// did not answer would be cut off within the test.
fn fast_ping_relay(home: &Path) -> Relay {
    Relay::start_with_env(home, None, &[("LOOPCHAT_WS_PING_SECS", "1")])
}

/// A home in `dir` whose window opens at 800x600, with its relay running,
/// and the pointer moved to where that window will be: X gives the window
/// under the pointer the focus.
fn window_home_under_the_pointer(dir: &Path) -> (PathBuf, Relay) {
    let home = dir.join("loopchat");
    std::fs::create_dir_all(home.join("user-home")).expect("home");
    std::fs::write(
        home.join("shell.json"),
        r#"{"window":{"width":800.0,"height":600.0}}"#,
    )
    .expect("shell.json");
    let relay = fast_ping_relay(&home);
    desktop::xdo::move_mouse(400, 300);
    (home, relay)
}

fn record(home: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(home.join("shell-alerts.json")).expect("record"))
        .expect("record JSON")
}

/// The average colour of a region of a screenshot, as "r,g,b" (0–255).
fn mean_colour(png: &Path, geometry: &str) -> (f64, f64, f64) {
    let out = Command::new("convert")
        .arg(png)
        .args(["-crop", geometry, "+repage", "-scale", "1x1!", "-format"])
        .arg("%[fx:255*r],%[fx:255*g],%[fx:255*b]")
        .arg("info:")
        .output()
        .expect("run `convert` (imagemagick)");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<f64> = text
        .trim()
        .split(',')
        .map(|x| x.parse().unwrap_or(-1.0))
        .collect();
    assert_eq!(v.len(), 3, "convert said {text:?}");
    (v[0], v[1], v[2])
}

/// dunst's popup window: (x, y, width, height), from `xwininfo -tree`.
fn dunst_popup() -> Option<(i32, i32, i32, i32)> {
    window_tree()
        .lines()
        .filter(|l| l.contains("\"Dunst\""))
        .filter_map(|l| {
            // … "Dunst": ("Dunst" "Dunst")  300x52+970+50  +970+50
            let geometry = l.split_whitespace().rev().nth(1)?;
            let (size, pos) = geometry.split_once('+')?;
            let (w, h) = size.split_once('x')?;
            let (x, y) = pos.split_once('+')?;
            Some((
                x.parse().ok()?,
                y.parse().ok()?,
                w.parse().ok()?,
                h.parse().ok()?,
            ))
        })
        .find(|(_, _, w, h)| *w > 10 && *h > 10)
}

// ---------------------------------------------------------------------------

/// Two `alerts` processes on the same home: one popup per alert, with the
/// title, body and urgency of the alert (priority 4 critical, 1 low, 3
/// normal). The relay pings every second: both shells answer, so each
/// keeps its one connection.
fn two_shells_raise_an_alert_once_with_its_urgency(desktop: &Desktop) {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("loopchat");
    let relay = fast_ping_relay(&home);
    let mut a = start_alerts("shell-a", &home);
    let mut b = start_alerts("shell-b", &home);
    a.wait_for_line(&["alert stream open"], Duration::from_secs(20));
    b.wait_for_line(&["alert stream open"], Duration::from_secs(20));
    // Several ping periods: a shell that did not answer would have been
    // cut off after three and reconnected.
    std::thread::sleep(Duration::from_secs(5));

    let seq = post_alert(
        &home,
        "Backup failed",
        "exit 3 on server1",
        &["--priority", "4"],
    );
    let s = format!("seq={seq} ");
    a.wait_for_line(&[&s], Duration::from_secs(10));
    b.wait_for_line(&[&s], Duration::from_secs(10));
    let got = desktop.wait_received(1);
    assert_eq!(got.len(), 1, "raised more than once: {got:?}");
    assert_eq!(
        (
            got[0].app.as_str(),
            got[0].urgency.as_str(),
            got[0].summary.as_str(),
            got[0].body.as_str()
        ),
        ("loopchat", "CRITICAL", "Backup failed", "exit 3 on server1")
    );
    assert_eq!(
        a.count_lines(&["alert raised", &s]) + b.count_lines(&["alert raised", &s]),
        1,
        "exactly one shell raises it"
    );
    assert_eq!(
        a.count_lines(&["already handled", &s]) + b.count_lines(&["already handled", &s]),
        1,
        "the other one knows it was raised"
    );

    let low = post_alert(&home, "Nightly report", "all green", &["--priority", "1"]);
    let normal = post_alert(
        &home,
        "Reply ready",
        "in session main",
        &["--session", "main"],
    );
    let got = desktop.wait_received(3);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        (got[1].summary.as_str(), got[1].urgency.as_str()),
        ("Nightly report", "LOW")
    );
    assert_eq!(
        (got[2].summary.as_str(), got[2].urgency.as_str()),
        ("Reply ready", "NORMAL")
    );
    std::thread::sleep(Duration::from_millis(500));
    let shot = screenshot("alerts-dunst-popups");
    // The critical popup (dunst paints it red) at the top right.
    let (x, y, w, h) = dunst_popup().expect("no dunst popup on screen");
    let (r, g, bl) = mean_colour(&shot, &format!("{w}x{}+{x}+{y}", h.min(40)));
    assert!(
        r > 80.0 && r > 2.0 * g && r > 2.0 * bl,
        "the critical popup is not on screen (mean colour {r},{g},{bl})"
    );

    // An update of an alert (same id, posted again) replaces its popup,
    // whichever shell raises the update.
    post_alert(&home, "Deploy 42", "10% rolled out", &["--id", "deploy:42"]);
    let first = desktop.wait_received(4)[3].clone();
    post_alert(
        &home,
        "Deploy 42",
        "done",
        &["--id", "deploy:42", "--priority", "4"],
    );
    let got = desktop.wait_received(5);
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(
        (got[4].id.as_str(), got[4].body.as_str()),
        (first.id.as_str(), "done")
    );
    assert_eq!(
        a.count_lines(&["alert raised", "replaced=true"])
            + b.count_lines(&["alert raised", "replaced=true"]),
        1
    );
    assert_eq!(
        dunstctl(&["count", "displayed"]).expect("dunstctl").trim(),
        "4",
        "the update added a popup instead of replacing it"
    );

    // One connection each, all along: pings were answered.
    assert_eq!(a.count_lines(&["alert stream open"]), 1, "{}", a.log());
    assert_eq!(b.count_lines(&["alert stream open"]), 1, "{}", b.log());
    assert_eq!(record(&home)["relays"]["local"]["lastSeq"], normal + 2);
    assert!(normal == low + 1 && low == seq + 1);
    assert!(
        !a.log().contains(&relay.token) && !b.log().contains(&relay.token),
        "token in the logs"
    );
    a.stop();
    b.stop();
}

/// "Pause alerts" (shell.json) is honoured as it changes, without a
/// restart; an alert handled while paused is not raised later either.
fn paused_alerts_are_not_raised(desktop: &Desktop) {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("loopchat");
    let _relay = fast_ping_relay(&home);
    std::fs::write(home.join("shell.json"), r#"{"alertsPaused":true}"#).expect("shell.json");
    let mut a = start_alerts("shell", &home);
    a.wait_for_line(&["alert stream open"], Duration::from_secs(20));
    let seq = post_alert(&home, "While paused", "shh", &["--priority", "5"]);
    a.wait_for_line(
        &["not raised: alerts are paused", &format!("[{seq}]")],
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(desktop.received(), vec![], "raised while paused");

    std::fs::write(home.join("shell.json"), r#"{"alertsPaused":false}"#).expect("shell.json");
    post_alert(&home, "After the pause", "hello", &[]);
    let got = desktop.wait_received(1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].summary, "After the pause");
    a.stop();
}

/// Issue 13: the image of an alert is fetched (main token) into
/// `shell-alert-images/` for the popup's `image-path` hint; when the alert
/// is then read in a window, the relay's read version is not raised again.
fn an_image_reaches_the_popup_and_a_read_version_is_not_raised(desktop: &Desktop) {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("loopchat");
    let relay = fast_ping_relay(&home);
    let mut a = start_alerts("shell", &home);
    a.wait_for_line(&["alert stream open"], Duration::from_secs(20));
    // A real 1x1 PNG.
    let png: &[u8] = &[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13, 0x49, 0x48, 0x44, 0x52, 0, 0,
        0, 1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89, 0, 0, 0, 13, 0x49, 0x44, 0x41,
        0x54, 0x78, 0xda, 0x63, 0xfc, 0xcf, 0xc0, 0x50, 0x0f, 0, 0x04, 0x85, 0x01, 0x80, 0x84,
        0xa9, 0x8c, 0x21, 0, 0, 0, 0, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ];
    let chart = dir.path().join("chart.png");
    std::fs::write(&chart, png).expect("chart");
    post_alert(
        &home,
        "With a chart",
        "see image",
        &["--id", "chart-1", "--image", chart.to_str().expect("utf-8")],
    );
    let got = desktop.wait_received(1);
    assert_eq!(got[0].summary, "With a chart");
    let images: Vec<_> = std::fs::read_dir(home.join("shell-alert-images"))
        .expect("the image was fetched")
        .flatten()
        .collect();
    assert_eq!(images.len(), 1);
    assert_eq!(std::fs::read(images[0].path()).expect("image"), png);

    let body = r#"{"ids":["chart-1"]}"#;
    let request = format!(
        "POST /webchat/notifications/read HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        relay.port,
        relay.token,
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", relay.port)).expect("connect");
    std::io::Write::write_all(&mut stream, request.as_bytes()).expect("send");
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#""marked":1"#), "{answer}");
    // Ordered after the read version: once this one is raised, the read
    // version has been handled (and was not raised).
    post_alert(&home, "Marker", "after the read", &[]);
    let got = desktop.wait_received(2);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[1].summary, "Marker",
        "the read version was raised: {got:?}"
    );
    a.stop();
}

/// The notifications module in this process, as the window runs it, with
/// its window focused: nothing is raised, and another shell on the same
/// relay stays quiet too; unfocused, the next alert is raised.
fn a_focused_window_keeps_alerts_quiet(desktop: &Desktop) {
    use loopchat_shell::notifications::{
        Focus, FreedesktopNotifications, Locator, Notifier, NotifierConfig, local_relay_key,
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("loopchat");
    let _relay = fast_ping_relay(&home);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let focus = Focus::new(true);
    let notifier = rt.block_on(async {
        Notifier::spawn(
            NotifierConfig {
                home: home.clone(),
                relay_key: local_relay_key(),
                locator: Locator::Local { home: home.clone() },
            },
            Arc::new(FreedesktopNotifications),
            focus.clone(),
            Arc::new(|_| {}),
        )
    });
    let wait_record = |what: &str, f: &dyn Fn(&serde_json::Value) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(bytes) = std::fs::read(home.join("shell-alerts.json"))
                && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
                && f(&v)
            {
                return;
            }
            assert!(Instant::now() < deadline, "the record never showed {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let me = u64::from(std::process::id());
    wait_record("this window's focus", &|v| {
        v["focused"]["local"]
            .as_array()
            .is_some_and(|a| a.iter().any(|p| p.as_u64() == Some(me)))
    });
    wait_record("the relay read", &|v| v["relays"]["local"].is_object());
    // Our subscriber's socket is open once the relay replays to it; give it
    // a moment (there is no log to read in-process).
    std::thread::sleep(Duration::from_secs(1));

    // Another shell, not focused, on the same relay.
    let mut other = start_alerts("other-shell", &home);
    other.wait_for_line(&["alert stream open"], Duration::from_secs(20));

    let seq = post_alert(
        &home,
        "Focused",
        "you are looking already",
        &["--priority", "4"],
    );
    wait_record("the alert handled", &|v| {
        v["relays"]["local"]["lastSeq"].as_u64() >= Some(seq)
    });
    // The other shell saw it too, and stood down: handled by the focused
    // one, or claimed while a window is focused.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(other.log().contains(&format!(
        "already handled by another shell relay=local seq={seq} "
    )) || other.log().contains(&format!("seqs=[{seq}]")))
    {
        assert!(Instant::now() < deadline, "other shell:\n{}", other.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        desktop.received(),
        vec![],
        "raised while a window is focused"
    );

    focus.set(false);
    wait_record("the focus gone", &|v| v["focused"]["local"].is_null());
    let seq = post_alert(&home, "Unfocused", "now it shows", &[]);
    let got = desktop.wait_received(1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].summary, "Unfocused");
    other.wait_for_line(&[&format!("seq={seq} ")], Duration::from_secs(10));
    drop(notifier);
    rt.shutdown_timeout(Duration::from_secs(2));
    other.stop();
}

/// Alerts posted while no shell ran are raised when one starts — once: a
/// second start raises nothing again; a long absence raises the three most
/// important and one "N more alerts".
fn alerts_missed_while_no_shell_ran_are_replayed_once(desktop: &Desktop) {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("loopchat");
    let _relay = fast_ping_relay(&home);
    // History from before the shell ever ran is not replayed.
    post_alert(&home, "Ancient", "before any shell", &[]);
    let mut first = start_alerts("first-run", &home);
    first.wait_for_line(&["first time on this relay"], Duration::from_secs(20));
    first.wait_for_line(&["alert stream open"], Duration::from_secs(20));
    first.stop();

    let missed = post_alert(&home, "Missed", "while no shell ran", &["--priority", "4"]);
    let mut second = start_alerts("second-run", &home);
    second.wait_for_line(
        &["alert raised", &format!("seq={missed} ")],
        Duration::from_secs(20),
    );
    second.wait_for_line(&["alert stream open"], Duration::from_secs(20));
    let got = desktop.wait_received(1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].summary.as_str(), got[0].urgency.as_str()),
        ("Missed", "CRITICAL")
    );
    second.stop();

    // Restarting raises nothing again.
    let mut third = start_alerts("third-run", &home);
    third.wait_for_line(&["alert stream open"], Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(desktop.received().len(), 1, "{:?}", desktop.received());
    third.stop();
    desktop.clear();

    // A long absence: eight alerts.
    let priorities = [3, 1, 5, 3, 2, 4, 3, 1];
    for (i, p) in priorities.iter().enumerate() {
        post_alert(
            &home,
            &format!("Away {i}"),
            &format!("number {i}"),
            &["--priority", &p.to_string()],
        );
    }
    let mut fourth = start_alerts("fourth-run", &home);
    fourth.wait_for_line(&["alerts summarized", "count=5"], Duration::from_secs(20));
    let got = desktop.wait_received(4);
    assert_eq!(got.len(), 4, "{got:?}");
    // The 5, the 4 and the newest 3, oldest first; then the summary.
    let titles: Vec<&str> = got.iter().map(|r| r.summary.as_str()).collect();
    assert_eq!(titles, ["Away 2", "Away 5", "Away 6", "5 more alerts"]);
    assert_eq!(got[3].body, "Away 7\nAway 4\nAway 3\nAway 1\nAway 0");
    assert_eq!(got[3].urgency, "NORMAL");
    std::thread::sleep(Duration::from_millis(300));
    screenshot("alerts-after-a-long-absence");
    fourth.stop();
}

/// The relay stops and comes back (another port): the shell reconnects by
/// itself and raises what is posted then.
fn a_restarted_relay_is_followed(desktop: &Desktop) {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("loopchat");
    let mut relay = fast_ping_relay(&home);
    let mut a = start_alerts("shell", &home);
    a.wait_for_line(&["alert stream open"], Duration::from_secs(20));
    relay.stop();
    a.wait_for_line(&["retrying"], Duration::from_secs(20));
    let _relay = fast_ping_relay(&home);
    a.wait_for_nth_line(2, &["alert stream open"], Duration::from_secs(40));
    post_alert(&home, "Back", "the relay restarted", &[]);
    let got = desktop.wait_received(1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].summary, "Back");
    a.stop();
}

/// Remote mode: `alerts --remote` through a real sshd to a relay whose
/// home is elsewhere.
fn remote_alerts_come_through_the_tunnel(desktop: &Desktop) {
    let host = SshHost::start();
    let remote_home = host.fx.path("remote/.loopchat");
    let relay = fast_ping_relay(&remote_home);
    let local_home = host.fx.path("local");
    std::fs::create_dir_all(local_home.join("user-home")).expect("home");
    let mut args = vec!["alerts".to_owned()];
    args.extend(host.remote_args(&relay.discovery_path()));
    let mut a = start_shell("remote-shell", &local_home, &args);
    let open = a.wait_for_line(&["alert stream open"], Duration::from_secs(30));
    assert!(open.contains("relay=ssh:"), "{open}");
    post_alert(&remote_home, "From afar", "via ssh", &["--priority", "5"]);
    let got = desktop.wait_received(1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0].summary.as_str(), got[0].urgency.as_str()),
        ("From afar", "CRITICAL")
    );
    // Recorded in the local home, under the remote relay's name.
    let rec = record(&local_home);
    let relays = rec["relays"].as_object().expect("relays");
    assert!(relays.keys().any(|k| k.starts_with("ssh:")), "{rec}");
    assert!(!a.log().contains(&relay.token), "token in the logs");
    a.stop();
}

/// The window: focused (the pointer is on it; X gives it the focus) it
/// raises nothing; with the pointer elsewhere it raises the alert, and a
/// click on the popup brings the window forward and opens the alert's
/// session in it.
fn the_window_stays_quiet_when_focused_and_a_click_opens_the_session(desktop: &Desktop) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (home, _relay) = window_home_under_the_pointer(dir.path());
    let mut w = start_shell("window", &home, &["--session", "first"]);
    w.wait_for_line(&["page title", "first"], Duration::from_secs(60));
    w.wait_for_line(&["alert stream open"], Duration::from_secs(20));
    w.wait_for_line(&["window focus", "focused=true"], Duration::from_secs(20));

    let seq = post_alert(
        &home,
        "Not now",
        "the window is focused",
        &["--session", "first"],
    );
    w.wait_for_line(
        &[
            "not raised: a loopchat window is focused",
            &format!("[{seq}]"),
        ],
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        desktop.received(),
        vec![],
        "raised while the window has the focus"
    );

    // The pointer leaves the window: so does the focus.
    desktop::xdo::move_mouse(1100, 900);
    w.wait_for_line(&["window focus", "focused=false"], Duration::from_secs(10));
    post_alert(
        &home,
        "Reply ready",
        "in session clicked",
        &["--session", "clicked"],
    );
    let got = desktop.wait_received(1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].summary, "Reply ready");
    std::thread::sleep(Duration::from_millis(500));
    screenshot("alerts-window-and-popup");

    let (x, y, pw, ph) = dunst_popup().expect("no dunst popup on screen");
    desktop::xdo::move_mouse(x + pw / 2, y + ph / 2);
    std::thread::sleep(Duration::from_millis(300));
    desktop::xdo::click(1);
    w.wait_for_line(&["alert clicked", "clicked"], Duration::from_secs(10));
    w.wait_for_line(
        &["opening an alert's page", "session=clicked"],
        Duration::from_secs(10),
    );
    w.wait_for_line(&["page title", "clicked"], Duration::from_secs(30));
    // Brought forward: the shell asked for the focus.
    w.wait_for_nth_line(
        2,
        &["window focus", "focused=true"],
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_secs(1));
    let tree = window_tree();
    assert!(
        tree.contains("clicked @"),
        "window title not updated:\n{tree}"
    );
    screenshot("alerts-window-after-click");
    w.stop();
}

fn settings(home: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(home.join("shell.json")).expect("shell.json"))
        .expect("shell.json is JSON")
}

/// The welcome tour in the window, driven with the keyboard: its steps in
/// order, the desktop status the shell reports (dunst answers), a test
/// alert that reaches the daemon although the window has the focus and
/// shows in the chat's alert panel, completion recorded in shell.json. Then
/// it is not shown again, is shown again when the recorded relay version
/// differs (and skipped with Escape), and `--onboarding` shows it anyway.
fn the_welcome_tour_sends_a_real_test_alert_and_is_shown_once(desktop: &Desktop) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (home, _relay) = window_home_under_the_pointer(dir.path());
    let mut w = start_shell_fresh("window", &home, &["--session", "tour"]);
    w.wait_for_line(&["showing the welcome tour"], Duration::from_secs(60));
    w.wait_for_line(
        &["page title", "Welcome (1/5): welcome"],
        Duration::from_secs(60),
    );
    w.wait_for_line(&["window focus", "focused=true"], Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    screenshot("welcome-1-welcome");
    for (key, title) in [("Return", "(2/5): what"), ("Return", "(3/5): cli")] {
        desktop::xdo::keys(key);
        w.wait_for_line(&["page title", title], Duration::from_secs(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    screenshot("welcome-3-cli");
    desktop::xdo::keys("Return");
    w.wait_for_line(
        &["page title", "(4/5): notifications"],
        Duration::from_secs(20),
    );
    // The live status has come in (the shell reports every second).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(desktop.received(), vec![], "nothing raised yet");
    // "Send a test alert" has the focus; the window has it too, which keeps
    // other alerts quiet, but not this one.
    desktop::xdo::keys("Return");
    let got = desktop.wait_received(1);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].summary, "loopchat test alert");
    assert_eq!(got[0].app, "loopchat");
    screenshot("welcome-4-notifications-sent");
    desktop::xdo::keys("Return");
    w.wait_for_line(&["page title", "(5/5): done"], Duration::from_secs(20));
    desktop::xdo::keys("Return");
    let completed = w.wait_for_line(&["welcome tour completed"], Duration::from_secs(20));
    // The chat, with the test alert unread in its panel (the title count).
    w.wait_for_line(&["page title", "(1) tour"], Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(800));
    screenshot("welcome-5-chat-with-the-test-alert");
    let recorded = settings(&home);
    let version = recorded["onboarding"]["relayVersion"]
        .as_str()
        .expect("relay version recorded")
        .to_owned();
    assert!(completed.contains(&version), "{completed}");
    assert_eq!(
        recorded["onboarding"]["welcomeVersion"],
        serde_json::json!(loopchat_proto::WELCOME_VERSION)
    );
    assert_eq!(recorded["window"]["width"], 800.0, "{recorded}");
    w.stop();

    // Shown once: the next start opens the chat.
    let mut w = start_shell("window", &home, &["--session", "tour"]);
    w.wait_for_line(&["page title", "tour — loopchat"], Duration::from_secs(60));
    assert!(
        !w.log().contains("showing the welcome tour"),
        "shown again: {}",
        w.log()
    );
    w.stop();

    // Another relay version recorded: shown again; Escape skips it.
    let mut changed = settings(&home);
    changed["onboarding"]["relayVersion"] = "0.0.0-older".into();
    std::fs::write(home.join("shell.json"), changed.to_string()).expect("shell.json");
    let mut w = start_shell("window", &home, &["--session", "tour"]);
    w.wait_for_line(&["page title", "Welcome (1/5)"], Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(500));
    desktop::xdo::keys("Escape");
    w.wait_for_line(&["welcome tour completed"], Duration::from_secs(20));
    w.wait_for_line(&["page title", "tour — loopchat"], Duration::from_secs(30));
    assert_eq!(
        settings(&home)["onboarding"]["relayVersion"],
        version.as_str()
    );
    w.stop();

    // --onboarding: shown although completed.
    let mut w = start_shell("window", &home, &["--session", "tour", "--onboarding"]);
    w.wait_for_line(&["page title", "Welcome (1/5)"], Duration::from_secs(60));
    w.stop();
}
