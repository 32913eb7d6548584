//! End-to-end tests of the SSH tunnel (`loopchat-shell tunnel --json`)
//! against a real OpenSSH sshd and the real relay (`loopchat serve`).
//!
//! Needs: Debian's openssh-server and openssh-client, and the relay built
//! (`cargo build -p loopchat-relay`). Runs as root or as a normal user.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

fn relay_home(fx: &Fixture) -> std::path::PathBuf {
    fx.path("remote-home/.loopchat")
}

/// The common case: one sshd, one key, a known host, the relay running.
struct Setup {
    fx: Fixture,
    sshd: Sshd,
    key: std::path::PathBuf,
    known_hosts: std::path::PathBuf,
    relay: Relay,
}

impl Setup {
    fn new() -> Self {
        let SshHost {
            sshd,
            key,
            known_hosts,
            fx,
        } = SshHost::start();
        let relay = Relay::start(&relay_home(&fx), None);
        Self {
            fx,
            sshd,
            key,
            known_hosts,
            relay,
        }
    }

    /// `tunnel --json` with this setup's flags, plus `extra`.
    fn command(&self, extra: &[&str]) -> Command {
        self.command_with_identity(Some(&self.key), extra)
    }

    /// As [`Setup::command`], logging in with `identity` instead of this
    /// setup's key; `None`: with what the agent offers only.
    fn command_with_identity(&self, identity: Option<&Path>, extra: &[&str]) -> Command {
        let mut cmd = self.command_without_discovery(identity, extra);
        cmd.arg("--remote-discovery")
            .arg(self.relay.discovery_path());
        cmd
    }

    fn command_without_discovery(&self, identity: Option<&Path>, extra: &[&str]) -> Command {
        let mut cmd = tunnel_command(&self.fx, &[]);
        cmd.args(["--remote", &user_destination(self.sshd.port)]);
        if let Some(identity) = identity {
            cmd.arg("--identity").arg(identity);
        }
        cmd.arg("--known-hosts").arg(&self.known_hosts).args(extra);
        cmd
    }
}

fn expect_up(cmd: Command) -> Tunnel {
    match Tunnel::start(cmd) {
        Ok(t) => t,
        Err(r) => panic!("tunnel did not come up ({}): {}", r.status, r.stderr),
    }
}

fn expect_refused(cmd: Command) -> Refused {
    match Tunnel::start(cmd) {
        Ok(t) => panic!("tunnel came up but should not have: {}", t.stderr()),
        Err(r) => {
            assert!(!r.status.success(), "should exit non-zero: {}", r.stderr);
            r
        }
    }
}

#[test]
fn key_auth_discovery_and_info_through_the_tunnel() {
    let s = Setup::new();
    let t = expect_up(s.command(&[]));
    // The JSON line: local URL on an ephemeral loopback port, the remote
    // relay's port and token, found without any port configuration.
    assert!(
        t.local_url.starts_with("http://127.0.0.1:"),
        "{}",
        t.local_url
    );
    assert!(t.local_url.ends_with("/webchat/"), "{}", t.local_url);
    assert_ne!(
        t.local_url,
        format!("http://127.0.0.1:{}/webchat/", s.relay.port)
    );
    assert_eq!(t.remote_port, s.relay.port);
    assert_eq!(t.token, s.relay.token);

    let info = info(&t.local_url, &t.token).expect("info through the tunnel");
    assert!(info.ok);
    assert_eq!(info.port, s.relay.port);
    assert_eq!(info.session_key, "main");

    // Without the token the relay says 401: the tunnel adds nothing.
    let (status, _) = http_get(
        &format!("{}info", t.local_url),
        None,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(status, 401);
    // The page itself comes through too.
    let (status, _) = http_get(&t.local_url, None, Duration::from_secs(10)).unwrap();
    assert!(
        status == 200 || status == 302 || status == 401,
        "page: {status}"
    );

    assert!(
        s.sshd.log_text().contains("Accepted publickey"),
        "{}",
        s.sshd.log_text()
    );
    // The token never reaches the logs.
    assert!(
        !t.stderr().contains(&t.token),
        "token leaked into logs: {}",
        t.stderr()
    );
}

#[test]
fn ssh_agent_auth() {
    let s = Setup::new();
    let sock = s.fx.path("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("ssh-agent");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "ssh-agent did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    run(Command::new("ssh-add")
        .arg(&s.key)
        .env("SSH_AUTH_SOCK", &sock));
    // Move the key away: only the agent can log in now.
    let moved = s.fx.path("moved-away");
    std::fs::rename(&s.key, &moved).unwrap();

    let mut cmd = s.command_with_identity(None, &[]);
    cmd.env("SSH_AUTH_SOCK", &sock);
    let t = expect_up(cmd);
    info(&t.local_url, &t.token).expect("info");
    assert!(t.stderr().contains("ssh-agent"), "{}", t.stderr());
    let _ = agent.kill();
    let _ = agent.wait();
}

#[test]
fn auth_failure_lists_methods_and_does_not_retry() {
    let s = Setup::new();
    let stranger = s.fx.path("stranger");
    keygen(&stranger, "ed25519", "");
    let r = expect_refused(s.command_with_identity(Some(&stranger), &[]));
    assert!(r.stderr.contains("auth failed"), "{}", r.stderr);
    assert!(
        r.stderr.contains("stranger (refused by the server)"),
        "{}",
        r.stderr
    );
    assert!(r.elapsed < Duration::from_secs(10), "took {:?}", r.elapsed);
    // One connection, not a storm.
    std::thread::sleep(Duration::from_millis(300));
    let connections = s
        .sshd
        .log_text()
        .matches("Connection from 127.0.0.1")
        .count();
    assert_eq!(connections, 1, "{}", s.sshd.log_text());
}

#[test]
fn changed_host_key_is_refused_with_both_fingerprints() {
    let s = Setup::new();
    // known_hosts holds another key for this host:port.
    let other = s.fx.path("other_host_key");
    keygen(&other, "ed25519", "");
    let other_pub = std::fs::read_to_string(format!("{}.pub", other.display())).unwrap();
    let mut parts = other_pub.split_whitespace();
    let line = format!(
        "# a comment\n[127.0.0.1]:{} {} {}\n",
        s.sshd.port,
        parts.next().unwrap(),
        parts.next().unwrap()
    );
    std::fs::write(&s.known_hosts, &line).unwrap();
    let expected = fingerprint(std::path::Path::new(&format!("{}.pub", other.display())));
    let offered = s.sshd.fingerprint();

    let r = expect_refused(s.command(&["--accept-new"]));
    assert!(r.stderr.contains("host key failed"), "{}", r.stderr);
    assert!(r.stderr.contains("CHANGED"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&expected),
        "expected fp {expected} missing: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&offered),
        "offered fp {offered} missing: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains(&format!(
            "{}:2: [127.0.0.1]:{}",
            s.known_hosts.display(),
            s.sshd.port
        )),
        "known_hosts line missing: {}",
        r.stderr
    );
    // --accept-new never overwrites a changed key.
    assert_eq!(std::fs::read_to_string(&s.known_hosts).unwrap(), line);
    assert!(!s.sshd.log_text().contains("Accepted publickey"));
}

#[test]
fn unknown_host_refused_then_accepted_with_accept_new() {
    let s = Setup::new();
    std::fs::write(&s.known_hosts, "").unwrap();
    let r = expect_refused(s.command(&[]));
    assert!(r.stderr.contains("unknown host"), "{}", r.stderr);
    assert!(r.stderr.contains(&s.sshd.fingerprint()), "{}", r.stderr);
    assert!(r.stderr.contains("--accept-new"), "{}", r.stderr);
    assert_eq!(std::fs::read_to_string(&s.known_hosts).unwrap(), "");

    let t = expect_up(s.command(&["--accept-new"]));
    info(&t.local_url, &t.token).expect("info");
    drop(t);
    let recorded = std::fs::read_to_string(&s.known_hosts).unwrap();
    assert!(
        recorded.starts_with(&format!("[127.0.0.1]:{} ssh-ed25519 ", s.sshd.port)),
        "{recorded}"
    );
    // Now known: no flag needed.
    let t = expect_up(s.command(&[]));
    info(&t.local_url, &t.token).expect("info");
}

#[test]
fn hashed_known_hosts_entries_work() {
    let s = Setup::new();
    run(Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&s.known_hosts));
    let text = std::fs::read_to_string(&s.known_hosts).unwrap();
    assert!(text.starts_with("|1|"), "{text}");
    assert!(!text.contains("127.0.0.1"), "{text}");
    let t = expect_up(s.command(&[]));
    info(&t.local_url, &t.token).expect("info");
}

#[test]
fn encrypted_key_with_passphrase() {
    let s = Setup::new();
    let locked = s.fx.client_key("id_locked", "correct horse");
    let mut cmd = s.command_with_identity(Some(&locked), &[]);
    cmd.env("LOOPCHAT_SSH_PASSPHRASE", "correct horse");
    let t = expect_up(cmd);
    info(&t.local_url, &t.token).expect("info");
    drop(t);

    let mut cmd = s.command_with_identity(Some(&locked), &[]);
    cmd.env("LOOPCHAT_SSH_PASSPHRASE", "wrong");
    let r = expect_refused(cmd);
    assert!(r.stderr.contains("wrong passphrase"), "{}", r.stderr);
    assert!(r.stderr.contains("auth failed"), "{}", r.stderr);
}

#[test]
fn proxy_jump_through_a_second_sshd() {
    let fx = Fixture::new();
    let key = fx.client_key("id_ed25519", "");
    let jump = Sshd::start_with(&fx, "jump", &["LogLevel=DEBUG1"]);
    let target = Sshd::start(&fx, "target");
    let known_hosts = fx.known_hosts_for("known_hosts", &[&jump, &target]);
    let relay = Relay::start(&fx.path("remote-home/.loopchat"), None);
    let config = fx.path("ssh_config");
    let user = user_name();
    std::fs::write(
        &config,
        format!(
            "Host bastion\n  HostName 127.0.0.1\n  Port {}\n  User {user}\n  IdentityFile {}\n\n\
             Host chatbox\n  HostName 127.0.0.1\n  Port {}\n  User {user}\n  IdentityFile {}\n  ProxyJump bastion\n",
            jump.port,
            key.display(),
            target.port,
            key.display()
        ),
    )
    .unwrap();
    let mut cmd = tunnel_command(&fx, &[]);
    cmd.args(["--remote", "chatbox", "--ssh-config"])
        .arg(&config)
        .arg("--known-hosts")
        .arg(&known_hosts)
        .arg("--remote-discovery")
        .arg(relay.discovery_path());
    let t = expect_up(cmd);
    let info = info(&t.local_url, &t.token).expect("info via the jump host");
    assert_eq!(info.port, relay.port);
    let jump_log = jump.log_text();
    assert!(jump_log.contains("Accepted publickey"), "{jump_log}");
    assert!(
        jump_log.contains(&format!("to 127.0.0.1 port {}", target.port)),
        "the jump host did not carry the connection to the target: {jump_log}"
    );
    assert!(target.log_text().contains("Accepted publickey"));
}

#[test]
fn missing_and_stale_discovery_files_are_explained() {
    let s = Setup::new();
    let r = expect_refused(s.command_without_discovery(
        Some(&s.key),
        &["--remote-discovery", "/nonexistent/it's here/relay.json"],
    ));
    assert!(r.stderr.contains("discovery failed"), "{}", r.stderr);
    assert!(r.stderr.contains("loopchat serve"), "{}", r.stderr);
    assert!(r.stderr.contains("No such file"), "{}", r.stderr);

    // A relay that died without cleaning up leaves a stale file.
    let stale = s.fx.path("stale.json");
    let mut d: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.relay.discovery_path()).unwrap()).unwrap();
    d["port"] = free_port().into();
    std::fs::write(&stale, d.to_string()).unwrap();
    let mut cmd = s.command_without_discovery(Some(&s.key), &[]);
    cmd.arg("--remote-discovery").arg(&stale);
    let r = expect_refused(cmd);
    assert!(r.stderr.contains("stale"), "{}", r.stderr);
}

#[test]
fn discovery_path_with_spaces_and_quotes() {
    let host = SshHost::start();
    let relay = Relay::start(&host.fx.path("odd home/it's $HOME"), None);
    let mut cmd = tunnel_command(&host.fx, &[]);
    cmd.args(host.remote_args(&relay.discovery_path()));
    let t = expect_up(cmd);
    assert_eq!(t.remote_port, relay.port);
}

#[test]
fn sshd_killed_and_restarted_same_local_url_works_again() {
    let mut s = Setup::new();
    let t = expect_up(s.command(&[]));
    let url = t.local_url.clone();
    info(&url, &t.token).expect("info before");

    s.sshd.kill();
    // A connection made while the link is down waits for it.
    let waiting_url = url.clone();
    let token = t.token.clone();
    let waiting = std::thread::spawn(move || info(&waiting_url, &token));
    std::thread::sleep(Duration::from_millis(1500));
    s.sshd.restart();

    let during = waiting.join().unwrap();
    assert!(
        during.is_ok(),
        "the waiting connection failed: {during:?}\n{}",
        t.stderr()
    );
    let again = eventually(Duration::from_secs(45), || {
        info(&url, &t.token).map_err(|e| e.to_string())
    });
    assert_eq!(again.port, s.relay.port);
    assert!(t.stderr().contains("SSH link lost"), "{}", t.stderr());
    assert!(t.stderr().contains("re-established"), "{}", t.stderr());
}

#[test]
fn remote_relay_restarted_on_another_port_is_rediscovered() {
    let mut s = Setup::new();
    let t = expect_up(s.command(&[]));
    let first = info(&t.local_url, &t.token).expect("info before");
    assert_eq!(first.port, s.relay.port);

    let home = s.relay.home.clone();
    s.relay.stop();
    let new_port = free_port();
    s.relay = Relay::start(&home, Some(new_port));
    assert_eq!(s.relay.port, new_port);

    // Same local URL, same token (the relay keeps it across restarts).
    let after = eventually(Duration::from_secs(30), || {
        info(&t.local_url, &t.token).map_err(|e| e.to_string())
    });
    assert_eq!(after.port, new_port);
    assert!(t.stderr().contains("new_port"), "{}", t.stderr());
}

#[test]
fn closing_the_tunnel_leaves_the_remote_relay_running() {
    let s = Setup::new();
    let t = expect_up(s.command(&[]));
    info(&t.local_url, &t.token).expect("info");
    let status = t.stop();
    assert!(status.success(), "tunnel exit: {status}");
    let t = expect_up(s.command(&[]));
    // SIGKILL too: nothing runs on the remote side on our behalf.
    let pid = t.pid();
    kill_tree(pid, libc::SIGKILL);
    drop(t);
    std::thread::sleep(Duration::from_millis(300));
    assert!(pid_alive(s.relay.pid), "the relay died with the tunnel");
    let (status, _) = http_get(
        &format!("http://127.0.0.1:{}/healthz", s.relay.port),
        None,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(s.relay.discovery_path().exists());
}

/// The tunnel's local port is remembered per host in shell.json and taken
/// again when free, so the browser's origin (and the token, outbox and
/// drafts it keeps there) survives a restart; when it is taken the tunnel
/// still comes up, on another port, and the remembered one is kept.
#[test]
fn the_local_port_is_remembered_and_reused_when_free() {
    let s = Setup::new();
    let home = s.fx.path("shell-home");
    let home_arg = home.display().to_string();
    let destination = user_destination(s.sshd.port);
    let port_of = |url: &str| -> u16 {
        url.trim_start_matches("http://127.0.0.1:")
            .split('/')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"))
    };
    let remembered = || -> Option<u64> {
        let text = std::fs::read_to_string(home.join("shell.json")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&text).expect("shell.json is JSON");
        v["tunnelPorts"][destination.as_str()].as_u64()
    };
    assert_eq!(remembered(), None);

    let t = expect_up(s.command(&["--home", &home_arg]));
    let first = port_of(&t.local_url);
    assert_eq!(remembered(), Some(u64::from(first)), "not remembered");
    info(&t.local_url, &t.token).expect("info");
    assert!(t.stop().success());

    // Restarted: the same origin.
    let t = expect_up(s.command(&["--home", &home_arg]));
    assert_eq!(port_of(&t.local_url), first, "{}", t.stderr());
    info(&t.local_url, &t.token).expect("info on the same port");
    assert!(t.stop().success());

    // Someone else holds it: another port, a warning, the tunnel works,
    // and the remembered port is not replaced by the stopgap.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", first)).expect("hold the port");
    let t = expect_up(s.command(&["--home", &home_arg]));
    let other = port_of(&t.local_url);
    assert_ne!(other, first);
    assert!(
        t.stderr().contains("remembered tunnel port is taken"),
        "{}",
        t.stderr()
    );
    info(&t.local_url, &t.token).expect("info on the stopgap port");
    assert_eq!(remembered(), Some(u64::from(first)));
    assert!(t.stop().success());
    drop(squatter);

    // Free again: back on it.
    let t = expect_up(s.command(&["--home", &home_arg]));
    assert_eq!(port_of(&t.local_url), first, "{}", t.stderr());
    assert!(!t.stderr().contains(&t.token), "token in the logs");
}

#[test]
fn bad_destination_and_missing_config_fail_fast() {
    let fx = Fixture::new();
    let mut cmd = tunnel_command(&fx, &[]);
    cmd.args(["--remote", "host:99999"]);
    let r = expect_refused(cmd);
    assert!(r.stderr.contains("port"), "{}", r.stderr);

    let mut cmd = tunnel_command(&fx, &[]);
    cmd.args(["--remote", "host", "--ssh-config", "/nonexistent/config"]);
    let r = expect_refused(cmd);
    assert!(r.stderr.contains("/nonexistent/config"), "{}", r.stderr);

    // Nothing listens there: connect fails, says so, exits.
    let mut cmd = tunnel_command(&fx, &[]);
    cmd.args(["--remote", &format!("127.0.0.1:{}", free_port())]);
    let r = expect_refused(cmd);
    assert!(r.stderr.contains("connect failed"), "{}", r.stderr);
}

/// `RUST_LOG=trace` means the shell's own crates: dependencies (russh,
/// tungstenite, hyper) stay at info, so the bytes they carry — the
/// discovery file with the token, HTTP through the tunnel — are not logged.
#[test]
fn a_bare_trace_level_keeps_dependencies_at_info() {
    let s = Setup::new();
    let mut cmd = s.command(&[]);
    cmd.env("RUST_LOG", "trace");
    let t = expect_up(cmd);
    info(&t.local_url, &t.token).expect("info through the tunnel");
    std::thread::sleep(Duration::from_millis(300));
    let log = t.stderr();
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the shell's own debug lines are missing: {log}"
    );
    for line in log.lines() {
        let dependency_debug = (line.contains(" DEBUG ") || line.contains(" TRACE "))
            && !line.contains("loopchat_shell");
        assert!(!dependency_debug, "a dependency logged below info: {line}");
    }
    assert!(!log.contains(&t.token), "token in the logs");
}
