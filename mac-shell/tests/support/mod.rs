//! Test fixtures: a real OpenSSH sshd on a loopback port with its own host
//! key and authorized_keys, keys made with ssh-keygen, the real relay
//! binary (`loopchat serve`), and the shell's `tunnel --json` command.
//!
//! Everything lives in a temp dir; the shell runs with HOME pointing there,
//! so the user's own ~/.ssh is never read or written.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";

pub fn shell_bin() -> &'static str {
    env!("CARGO_BIN_EXE_loopchat-shell")
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

pub fn require_tools() {
    for tool in [
        SSHD,
        "/usr/bin/ssh-keygen",
        "/usr/bin/ssh-agent",
        "/usr/bin/ssh-add",
    ] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: install Debian's openssh-server and openssh-client"
        );
    }
    // Run as root, sshd needs its privilege separation directory.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let _ = std::fs::create_dir_all("/run/sshd");
    }
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ssh-keygen -t TYPE -N PASS -f PATH`; returns the public key line.
pub fn keygen(path: &Path, kind: &str, passphrase: &str) -> String {
    let _ = std::fs::remove_file(path);
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            kind,
            "-N",
            passphrase,
            "-C",
            "loopchat-test",
            "-f",
        ])
        .arg(path));
    std::fs::read_to_string(path.with_extension("pub"))
        .or_else(|_| std::fs::read_to_string(format!("{}.pub", path.display())))
        .expect("public key")
}

/// `SHA256:…` of a public key file, as ssh-keygen prints it.
pub fn fingerprint(pub_path: &Path) -> String {
    let out = run(Command::new("ssh-keygen").arg("-lf").arg(pub_path));
    out.split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_owned()
}

/// A test's scratch space.
pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        require_tools();
        Self {
            dir: tempfile::Builder::new()
                .prefix("loopchat-shell-test")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The fake HOME the shell runs with (empty ~/.ssh).
    pub fn home(&self) -> PathBuf {
        let home = self.path("home");
        std::fs::create_dir_all(home.join(".ssh")).expect("home");
        home
    }

    /// A client key pair, authorized on every sshd of this fixture.
    pub fn client_key(&self, name: &str, passphrase: &str) -> PathBuf {
        let key = self.path(name);
        let public = keygen(&key, "ed25519", passphrase);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("authorized_keys"))
            .expect("authorized_keys");
        f.write_all(public.as_bytes()).expect("authorized_keys");
        key
    }

    /// A known_hosts file trusting `sshd`.
    pub fn known_hosts_for(&self, name: &str, sshds: &[&Sshd]) -> PathBuf {
        let path = self.path(name);
        let mut text = String::new();
        for s in sshds {
            text.push_str(&s.known_hosts_line());
        }
        std::fs::write(&path, text).expect("known_hosts");
        path
    }
}

/// The user running the tests: the one sshd lets log in.
pub fn user_name() -> String {
    run(Command::new("id").arg("-un")).trim().to_owned()
}

/// `USER@127.0.0.1:PORT`, for the user running the tests.
pub fn user_destination(port: u16) -> String {
    format!("{}@127.0.0.1:{port}", user_name())
}

/// A host the shell reaches over SSH: a real sshd that takes the client
/// key and that the known_hosts file trusts, in a fixture of its own.
pub struct SshHost {
    pub sshd: Sshd,
    pub key: PathBuf,
    pub known_hosts: PathBuf,
    // Last, so that sshd stops before its directory is removed.
    pub fx: Fixture,
}

impl SshHost {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// `sshd_options`: as the `extra` of [`Sshd::start_with`].
    pub fn start_with(sshd_options: &[&str]) -> Self {
        let fx = Fixture::new();
        let key = fx.client_key("id_ed25519", "");
        let sshd = Sshd::start_with(&fx, "sshd", sshd_options);
        let known_hosts = fx.known_hosts_for("known_hosts", &[&sshd]);
        Self {
            sshd,
            key,
            known_hosts,
            fx,
        }
    }

    /// The shell's flags that reach, through this host, the relay whose
    /// discovery file is `discovery` there.
    pub fn remote_args(&self, discovery: &Path) -> Vec<String> {
        vec![
            "--remote".into(),
            user_destination(self.sshd.port),
            "--identity".into(),
            self.key.display().to_string(),
            "--known-hosts".into(),
            self.known_hosts.display().to_string(),
            "--remote-discovery".into(),
            discovery.display().to_string(),
        ]
    }
}

/// A real OpenSSH server on 127.0.0.1.
pub struct Sshd {
    pub port: u16,
    pub host_key: PathBuf,
    authorized_keys: PathBuf,
    pub log: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Sshd {
    pub fn start(fx: &Fixture, name: &str) -> Self {
        Self::start_with(fx, name, &[])
    }

    pub fn start_with(fx: &Fixture, name: &str, extra: &[&str]) -> Self {
        let host_key = fx.path(&format!("{name}_host_ed25519"));
        keygen(&host_key, "ed25519", "");
        let mut sshd = Self {
            port: free_port(),
            host_key,
            authorized_keys: fx.path("authorized_keys"),
            log: fx.path(&format!("{name}.log")),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        sshd.spawn();
        sshd
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("sshd log");
        let start_len = std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(SSHD);
        cmd.args(["-D", "-e", "-f", "/dev/null"]);
        // sshd keeps the first value given for an option: extras first.
        for opt in self.extra.iter().cloned().chain([
            format!("Port={}", self.port),
            "ListenAddress=127.0.0.1".into(),
            format!("HostKey={}", self.host_key.display()),
            format!("AuthorizedKeysFile={}", self.authorized_keys.display()),
            "PidFile=none".into(),
            "StrictModes=no".into(),
            "UsePAM=no".into(),
            "PasswordAuthentication=no".into(),
            "KbdInteractiveAuthentication=no".into(),
            "PermitRootLogin=prohibit-password".into(),
            "AllowTcpForwarding=yes".into(),
            "LogLevel=VERBOSE".into(),
        ]) {
            cmd.arg("-o").arg(opt);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        self.child = Some(cmd.spawn().expect("start sshd"));
        // Ready when it says it listens (a probe connection would show up
        // in the log as a client).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read(&self.log).unwrap_or_default();
            let fresh = String::from_utf8_lossy(&text[start_len as usize..]).into_owned();
            if fresh.contains("Server listening on 127.0.0.1 port") {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("sshd exited ({status}): {fresh}");
            }
            assert!(Instant::now() < deadline, "sshd did not start: {fresh}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn public_key(&self) -> String {
        std::fs::read_to_string(format!("{}.pub", self.host_key.display())).expect("host pub")
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(Path::new(&format!("{}.pub", self.host_key.display())))
    }

    /// `[127.0.0.1]:PORT ssh-ed25519 AAAA…`
    pub fn known_hosts_line(&self) -> String {
        let public = self.public_key();
        let mut parts = public.split_whitespace();
        let (kind, data) = (parts.next().expect("type"), parts.next().expect("key"));
        format!("[127.0.0.1]:{} {kind} {data}\n", self.port)
    }

    /// Kills the listener *and* its per-connection children (they call
    /// setsid, so they are not in its process group): the network is gone
    /// for every client, as when a server reboots.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id();
            kill_tree(pid, libc::SIGKILL);
            let _ = child.wait();
        }
    }

    /// Starts again on the same port with the same host key.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Signals `pid` and all its descendants (children first found via /proc).
pub fn kill_tree(pid: u32, signal: i32) {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        all.extend(children_of(all[i]));
        i += 1;
    }
    for p in all.iter().rev() {
        // SAFETY: plain kill(2).
        unsafe {
            libc::kill(*p as libc::pid_t, signal);
        }
    }
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid …" — comm may contain spaces.
        let Some(after) = stat.rsplit_once(')').map(|(_, a)| a) else {
            continue;
        };
        if after
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok())
            == Some(pid)
        {
            out.push(child);
        }
    }
    out
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie still "exists"; read its state.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .map(|(_, a)| a.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The relay binary (`loopchat-tests` finds it: the real `loopchat` of this
/// workspace, in the shell's target directory), for its client commands.
pub fn relay_command() -> Command {
    Command::new(loopchat_tests::loopchat_bin())
}

/// `loopchat notify …` against the relay of `home`; returns the alert's seq.
pub fn post_alert(home: &Path, title: &str, body: &str, extra: &[&str]) -> u64 {
    let stdout = run(relay_command()
        .args(["notify", "--json", "--title", title, "--body", body])
        .args(extra)
        .env("LOOPCHAT_HOME", home)
        .env_remove("LOOPCHAT_URL")
        .env_remove("LOOPCHAT_TOKEN"));
    let v: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("loopchat notify --json: {e}: {stdout}"));
    v["seq"].as_u64().expect("seq")
}

/// A running `loopchat serve` on a home of the test's choosing, started by
/// the one launcher (`loopchat_tests::Relay`). What is the shell's own: the
/// home outlives the relay (the shell reads it), and dropping the relay
/// stops it cleanly, so its discovery file is gone as after a real stop.
pub struct Relay {
    pub home: PathBuf,
    pub port: u16,
    pub token: String,
    pub pid: u32,
    relay: Option<loopchat_tests::Relay>,
}

impl Relay {
    pub fn start(home: &Path, port: Option<u16>) -> Self {
        Self::start_with_env(home, port, &[])
    }

    /// As [`Relay::start`], with extra environment variables (e.g.
    /// `LOOPCHAT_WS_PING_SECS`).
    pub fn start_with_env(home: &Path, port: Option<u16>, env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(home).expect("relay home");
        let mut opts = loopchat_tests::RelayOptions {
            home: Some(home.to_owned()),
            ..Default::default()
        };
        if let Some(p) = port {
            opts = opts.arg("--port").arg(&p.to_string());
        }
        for (k, v) in env {
            opts = opts.env(k, v);
        }
        let relay = loopchat_tests::Relay::start_with(opts);
        Self {
            home: home.to_path_buf(),
            port: relay.port,
            token: relay.token.clone(),
            pid: relay.pid() as u32,
            relay: Some(relay),
        }
    }

    /// Clean stop (SIGTERM): the relay removes its discovery file.
    pub fn stop(&mut self) {
        if let Some(mut relay) = self.relay.take() {
            relay.stop();
        }
    }

    pub fn discovery_path(&self) -> PathBuf {
        self.home.join(loopchat_proto::home::DISCOVERY_FILE)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `loopchat-shell tunnel --json …` running in the background.
pub struct Tunnel {
    child: Child,
    pub local_url: String,
    pub token: String,
    pub remote_port: u16,
    stderr: Arc<Mutex<String>>,
}

/// The outcome of a tunnel command that did not come up.
pub struct Refused {
    pub status: std::process::ExitStatus,
    pub stderr: String,
    pub elapsed: Duration,
}

pub fn tunnel_command(fx: &Fixture, args: &[&str]) -> Command {
    let mut cmd = Command::new(shell_bin());
    cmd.arg("tunnel")
        .arg("--json")
        .args(args)
        .env("HOME", fx.home())
        // shell.json (remembered tunnel ports) goes in the fixture's home.
        .env_remove("LOOPCHAT_HOME")
        .env_remove("SSH_AUTH_SOCK")
        .env_remove("LOOPCHAT_SSH_PASSPHRASE")
        .env("RUST_LOG", "warn,loopchat_shell=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

impl Tunnel {
    /// Starts the command and waits for its JSON line.
    pub fn start(cmd: Command) -> Result<Self, Refused> {
        Self::start_within(cmd, Duration::from_secs(30))
    }

    pub fn start_within(mut cmd: Command, limit: Duration) -> Result<Self, Refused> {
        let started = Instant::now();
        let mut child = cmd.spawn().expect("start loopchat-shell tunnel");
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let mut pipe = child.stderr.take().expect("stderr");
            let sink = stderr.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Ok(mut s) = sink.lock() {
                        s.push_str(&String::from_utf8_lossy(&buf[..n]));
                    }
                }
            });
        }
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(limit) {
            Ok(line) if !line.trim().is_empty() => {
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"));
                Ok(Self {
                    child,
                    local_url: v["localUrl"].as_str().expect("localUrl").to_owned(),
                    token: v["token"].as_str().expect("token").to_owned(),
                    remote_port: v["remotePort"].as_u64().expect("remotePort") as u16,
                    stderr,
                })
            }
            _ => {
                let deadline = Instant::now() + Duration::from_secs(10);
                let status = loop {
                    if let Ok(Some(s)) = child.try_wait() {
                        break s;
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        break child.wait().expect("wait");
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                std::thread::sleep(Duration::from_millis(100));
                let stderr = stderr.lock().map(|s| s.clone()).unwrap_or_default();
                Err(Refused {
                    status,
                    stderr,
                    elapsed: started.elapsed(),
                })
            }
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait.
    pub fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        self.child.wait().expect("wait")
    }

    pub fn try_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET (no client library: the test sees the bytes the
/// tunnel carries). Returns (status, body).
pub fn http_get(
    url: &str,
    token: Option<&str>,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("http only"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    if let Some(t) = token {
        request.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP response: {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head:?}")))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok((
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    ))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `/webchat/info` through `base` (…/webchat/), parsed.
pub fn info(base: &str, token: &str) -> std::io::Result<loopchat_proto::InfoResponse> {
    let (status, body) = http_get(&format!("{base}info"), Some(token), Duration::from_secs(30))?;
    if status != 200 {
        return Err(std::io::Error::other(format!("HTTP {status}: {body}")));
    }
    serde_json::from_str(&body).map_err(|e| std::io::Error::other(format!("{e}: {body}")))
}

/// Retries `f` until it succeeds or `limit` passes.
pub fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if Instant::now() >= deadline => panic!("gave up after {limit:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Records the welcome tour as completed for this build in `home`'s
/// shell.json (keeping what is there), so that a window opens the chat:
/// the suites that are not about the tour start as a returning user.
pub fn mark_tour_done(home: &Path) {
    let path = home.join("shell.json");
    let mut settings: serde_json::Value = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    if settings.get("onboarding").is_some() {
        return;
    }
    settings["onboarding"] = serde_json::json!({
        "welcomeVersion": loopchat_proto::WELCOME_VERSION,
        // The relay is built from this workspace: same version.
        "relayVersion": env!("CARGO_PKG_VERSION"),
    });
    std::fs::create_dir_all(home).expect("home");
    std::fs::write(&path, settings.to_string()).expect("shell.json");
}
