//! The home directory as a trust boundary (issue 12, items 3 and 5): one
//! relay per home, enforced by a lock the kernel drops with the process, and
//! a home (or token, config, tokens file) that another user could have
//! prepared is refused before anything in it is read or written.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use loopchat_tests::{Relay, RelayOptions, loopchat_bin, read_discovery, serve_command};

/// What became of a `loopchat serve`.
enum Served {
    /// It printed its URL line: it is running.
    Started { child: Child, url_line: String },
    /// It exited without printing one.
    Refused { status: ExitStatus, stderr: String },
}

fn serve_cmd(home: &Path) -> Command {
    serve_command(&[], home)
}

/// Waits for `child` to print its URL line or to exit; a relay prints the
/// line once it listens, so whichever comes first decides.
fn outcome(mut child: Child) -> Served {
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().and_then(Result::ok);
        let _ = tx.send(first);
        for _ in lines {}
    });
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    match rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the relay neither started nor exited within 30 s")
    {
        Some(url_line) => Served::Started { child, url_line },
        None => {
            let status = child.wait().expect("wait");
            Served::Refused {
                status,
                stderr: errors.join().expect("stderr reader"),
            }
        }
    }
}

fn serve(home: &Path) -> Served {
    outcome(serve_cmd(home).spawn().expect("spawn loopchat serve"))
}

/// The relay must refuse `home`; returns its stderr.
#[track_caller]
fn refused(home: &Path, case: &str) -> String {
    match serve(home) {
        Served::Started {
            mut child,
            url_line,
        } => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{case}: the relay started anyway: {url_line}");
        }
        Served::Refused { status, stderr } => {
            assert!(!status.success(), "{case}: exit status {status}");
            stderr
        }
    }
}

fn stop(mut child: Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

// ------------------------------------------------------- one relay per home

/// A second `serve` on a home that has a relay exits non-zero naming the
/// running relay's pid and URL; the first keeps serving, and its
/// discovery file is untouched (before the lock, the second took another
/// port, overwrote it, and deleted it when stopped).
#[tokio::test]
async fn a_second_relay_on_the_same_home_is_refused() {
    let relay = Relay::start();
    let before = std::fs::read(relay.home.join("relay.json")).expect("relay.json");
    let first = read_discovery(&relay.home).expect("discovery");

    let stderr = refused(&relay.home, "a second serve");
    assert!(
        stderr.contains(&format!("pid {}", first.pid)),
        "the refusal does not name the running relay's pid: {stderr}"
    );
    assert!(
        stderr.contains(&first.base_url),
        "the refusal does not name the running relay's URL: {stderr}"
    );
    assert!(
        !stderr.contains(&relay.token),
        "the refusal shows the token: {stderr}"
    );

    assert_eq!(
        std::fs::read(relay.home.join("relay.json")).expect("relay.json"),
        before,
        "the refused relay changed the discovery file"
    );
    let (s, v) = relay
        .client()
        .rpc(serde_json::json!({"text": "still the only one"}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        std::fs::read_to_string(relay.home.join("relay.lock"))
            .expect("relay.lock")
            .trim(),
        first.pid.to_string(),
        "the lock file names the relay holding it"
    );
}

/// `kill -9` leaves no lock behind: the kernel drops it with the process,
/// and the next relay on the home starts (and may replace the dead one's
/// discovery file).
#[tokio::test]
async fn a_relay_killed_with_sigkill_leaves_no_lock_behind() {
    let mut relay = Relay::start();
    let dead_pid = relay.pid();
    relay.kill9();
    assert!(
        relay.home.join("relay.json").exists(),
        "kill -9 cleans nothing up"
    );
    relay.restart();
    assert_ne!(relay.pid(), dead_pid);
    assert_eq!(
        read_discovery(&relay.home).expect("discovery").pid as i32,
        relay.pid()
    );
    let (s, v) = relay
        .client()
        .rpc(serde_json::json!({"text": "after the crash"}))
        .await;
    assert_eq!(s, 200, "{v}");
}

/// Two relays started at the same instant on a fresh home: exactly one
/// runs, the other says another relay has the home. Rounds, because the
/// window the lock closes is the few milliseconds of start-up.
#[test]
fn two_relays_started_at_once_one_runs() {
    for round in 0..8 {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        let a = serve_cmd(&home).spawn().expect("spawn a");
        let b = serve_cmd(&home).spawn().expect("spawn b");
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| outcome(a));
            let b = s.spawn(|| outcome(b));
            (a.join().expect("a"), b.join().expect("b"))
        });
        match (a, b) {
            (Served::Started { child, .. }, Served::Refused { status, stderr, .. })
            | (Served::Refused { status, stderr, .. }, Served::Started { child, .. }) => {
                assert!(
                    !status.success(),
                    "round {round}: the loser exited {status}"
                );
                assert!(
                    stderr.contains("another relay"),
                    "round {round}: the loser does not say why: {stderr}"
                );
                let d = read_discovery(&home).expect("discovery");
                assert_eq!(
                    d.pid,
                    child.id(),
                    "round {round}: relay.json names the loser"
                );
                stop(child);
            }
            (Served::Started { child: a, .. }, Served::Started { child: b, .. }) => {
                stop(a);
                stop(b);
                panic!("round {round}: both relays started on one home");
            }
            (Served::Refused { stderr: a, .. }, Served::Refused { stderr: b, .. }) => {
                panic!("round {round}: neither relay started:\n{a}\n{b}");
            }
        }
    }
}

// ------------------------------------------------------------- StrictModes

/// The uid the tests give to "another user". Only root can chown to it; as
/// any other user the cases that need it are skipped with a note.
const OTHER_UID: u32 = 65534;

fn chown(path: &Path, uid: u32) -> bool {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path; -1 leaves the group unchanged.
    unsafe { libc::lchown(c.as_ptr(), uid, u32::MAX) == 0 }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The attack of the issue: another user creates the home world-writable
/// and puts their own token (and config) in it. The owner's relay must
/// refuse it before it reads the token or writes anything, and say why.
#[test]
fn a_home_prepared_by_another_user_is_refused_before_anything_is_read() {
    if !is_root() {
        eprintln!("skipped: needs root to create files owned by another uid");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("x");
    std::fs::create_dir(&home).expect("mkdir");
    let planted = "attackers-own-token-0123456789abcdefghijklmno";
    std::fs::write(home.join("token"), format!("{planted}\n")).expect("token");
    std::fs::write(home.join("config.toml"), "port = 0\n").expect("config");
    for p in [home.join("token"), home.join("config.toml")] {
        chmod(&p, 0o644);
        assert!(chown(&p, OTHER_UID));
    }
    chmod(&home, 0o777);
    assert!(chown(&home, OTHER_UID));

    let stderr = refused(&home, "a home owned by another user");
    assert!(stderr.contains(&home.display().to_string()), "{stderr}");
    assert!(stderr.contains(&format!("uid {OTHER_UID}")), "{stderr}");
    assert!(
        stderr.contains("chown") && stderr.contains("remove"),
        "{stderr}"
    );
    assert!(!stderr.contains(planted), "{stderr}");
    let mut left: Vec<String> = std::fs::read_dir(&home)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["config.toml", "token"],
        "the refused relay wrote in the home"
    );
    let mode = std::fs::metadata(&home).expect("meta").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o777, "the refused relay changed the foreign home");
}

/// `LOOPCHAT_HOME=/tmp/x/home` where `/tmp/x` belongs to another user: they
/// could swap the home for their own at any time, so it is refused, and
/// nothing is created below it.
#[test]
fn a_home_below_another_users_directory_is_refused() {
    if !is_root() {
        eprintln!("skipped: needs root to create files owned by another uid");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let theirs = tmp.path().join("x");
    std::fs::create_dir(&theirs).expect("mkdir");
    chmod(&theirs, 0o755);
    assert!(chown(&theirs, OTHER_UID));
    let home = theirs.join("home");
    let stderr = refused(&home, "a home below another user's directory");
    assert!(stderr.contains(&theirs.display().to_string()), "{stderr}");
    assert!(stderr.contains(&format!("uid {OTHER_UID}")), "{stderr}");
    assert!(!home.exists(), "the refused relay created the home");
}

/// One's own home that group or others can write is refused with the
/// command that fixes it (chmodding it silently would keep whatever others
/// put in it); one that is only readable by others (0755, a common umask)
/// is tightened to 0700 and used.
#[test]
fn an_own_home_others_can_write_is_refused_and_a_readable_one_tightened() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).expect("mkdir");
    for mode in [0o777, 0o775, 0o1777] {
        chmod(&home, mode);
        let stderr = refused(&home, &format!("an own home with mode {mode:o}"));
        assert!(stderr.contains(&format!("mode {mode:04o}")), "{stderr}");
        assert!(
            stderr.contains(&format!("chmod 700 {}", home.display())),
            "the refusal does not say how to fix it: {stderr}"
        );
    }
    chmod(&home, 0o755);
    let relay = Relay::start_with(RelayOptions {
        home: Some(home.clone()),
        ..Default::default()
    });
    let mode = std::fs::metadata(&home).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    drop(relay);
}

/// A directory above the home that others can write without the sticky bit
/// lets them rename the home away: refused. `/tmp` itself (sticky) is fine,
/// which every other test shows.
#[test]
fn a_home_below_a_writable_directory_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let shared = tmp.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    chmod(&shared, 0o777);
    let home = shared.join("home");
    let stderr = refused(&home, "a home below a world-writable directory");
    assert!(
        stderr.contains(&format!("chmod go-w {}", shared.display())),
        "{stderr}"
    );
    assert!(!home.exists());
}

/// The files that decide who gets in and what runs: the token, `tokens.json`
/// and the config. Each is refused if someone else owns it or can write it;
/// the token files also if others can read them.
#[test]
fn token_config_and_tokens_files_others_control_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("home");
    // A first run creates the token; the cases then loosen one file each.
    match serve(&home) {
        Served::Started { child, .. } => stop(child),
        Served::Refused { stderr, .. } => panic!("a fresh home was refused: {stderr}"),
    }
    let created = Command::new(loopchat_bin())
        .args(["token", "create", "--scope", "notify"])
        .env("LOOPCHAT_HOME", &home)
        .output()
        .expect("token create");
    assert!(created.status.success(), "{created:?}");
    std::fs::write(home.join("config.toml"), "").expect("config");
    chmod(&home.join("config.toml"), 0o644);

    let cases: &[(&str, u32, &str)] = &[
        ("token", 0o644, "can read it"),
        ("token", 0o620, "can write it"),
        ("tokens.json", 0o604, "can read it"),
        ("config.toml", 0o664, "can write it"),
    ];
    for (file, mode, problem) in cases {
        let path = home.join(file);
        let good = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        chmod(&path, *mode);
        let stderr = refused(&home, &format!("{file} with mode {mode:o}"));
        assert!(stderr.contains(&path.display().to_string()), "{stderr}");
        assert!(stderr.contains(problem), "{file}: {stderr}");
        assert!(stderr.contains("chmod"), "{file}: no fix given: {stderr}");
        chmod(&path, good);
    }
    if is_root() {
        let token = home.join("token");
        assert!(chown(&token, OTHER_UID));
        let stderr = refused(&home, "a token owned by another user");
        assert!(stderr.contains(&format!("uid {OTHER_UID}")), "{stderr}");
        assert!(chown(&token, 0));
    }
    // All fixed: it starts again.
    match serve(&home) {
        Served::Started { child, .. } => stop(child),
        Served::Refused { stderr, .. } => panic!("the repaired home was refused: {stderr}"),
    }
}

/// The client side of the same attack: another user's home holds a
/// `relay.json` that points at their own server. `loopchat send` must refuse
/// the home instead of sending the message (and the token the file names)
/// there; the planted server sees no connection at all.
#[test]
fn clients_refuse_a_discovery_file_another_user_planted() {
    if !is_root() {
        eprintln!("skipped: needs root to create files owned by another uid");
        return;
    }
    let theirs = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    theirs.set_nonblocking(true).expect("nonblocking");
    let port = theirs.local_addr().expect("addr").port();
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = tmp.path().join("x");
    std::fs::create_dir(&home).expect("mkdir");
    let discovery = serde_json::json!({
        "version": 1, "pid": std::process::id(), "port": port,
        "baseUrl": format!("http://127.0.0.1:{port}/webchat/"),
        "token": "planted", "startedAt": "2026-01-01T00:00:00Z", "store": "/nowhere",
    });
    std::fs::write(home.join("relay.json"), discovery.to_string()).expect("relay.json");
    chmod(&home.join("relay.json"), 0o644);
    assert!(chown(&home.join("relay.json"), OTHER_UID));
    chmod(&home, 0o755);
    assert!(chown(&home, OTHER_UID));

    let mut child = Command::new(loopchat_bin())
        .args(["send", "a secret for my own relay"])
        .env("LOOPCHAT_HOME", &home)
        .env_remove("LOOPCHAT_URL")
        .env_remove("LOOPCHAT_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("loopchat send");
    // A client that trusts the file connects and then waits for an answer
    // that never comes; bounded, so the test fails instead of hanging.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let connected = theirs.accept().is_ok();
    assert!(!connected, "the client connected to the planted relay");
    let status = status.expect("the client hung on the planted relay");
    assert!(!status.success());
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert!(
        stderr.contains("refusing") && stderr.contains(&format!("uid {OTHER_UID}")),
        "{stderr}"
    );
}
