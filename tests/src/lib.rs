//! Test harness: starts the real `loopchat` binary in a private home on a
//! real port and talks to it over real sockets.
//!
//! "Listening" is observed, not guessed: the relay prints its URL line on
//! stdout only after its socket is bound and its discovery file written.
//! That is the one readiness rule of every launcher (this one, which the
//! shell's tests use too, `tests/web/harness.mjs` and the scripts): wait for
//! the first stdout line, then read the discovery file (or run `loopchat
//! info --json`, which prints it) for the port and the token.

pub mod forcing;
pub mod llama;
pub mod pi;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use loopchat_proto::Discovery;
use loopchat_proto::sse::{Event as SseEvent, SseStream};
use serde_json::Value;

/// The workspace's target directory, derived from this test binary's path
/// (`target/<profile>/deps/<test>-<hash>`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_owned()
}

pub fn loopchat_bin() -> PathBuf {
    let bin = std::env::var_os("LOOPCHAT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("loopchat"));
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p loopchat-relay)",
        bin.display()
    );
    bin
}

/// A running relay with its own home.
pub struct Relay {
    pub child: Child,
    pub home: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub port: u16,
    pub token: String,
    pub url_line: String,
    env: Vec<(String, String)>,
    /// Command prefix the binary runs under (see [`RelayOptions::wrapper`]).
    wrapper: Vec<String>,
    /// stderr (logs) of the process so far, collected by a thread.
    logs: std::sync::Arc<std::sync::Mutex<String>>,
}

#[derive(Default, Clone)]
pub struct RelayOptions {
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    pub home: Option<PathBuf>,
    /// A command prefix to run the binary under, e.g. `nsenter … --` to
    /// start it inside another mount namespace. Kept for [`Relay::restart`].
    pub wrapper: Vec<String>,
    /// Written to the home's `config.toml` before the relay starts.
    pub config: Option<String>,
}

impl RelayOptions {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.into());
        self
    }
    /// The OpenAI backend at `base_url` (a forcing proxy in front of the
    /// suites' llama.cpp server, say), asking for the model `tiny-llama`.
    pub fn openai_at(self, base_url: &str) -> Self {
        self.env("LOOPCHAT_AGENT", "openai")
            .env("LOOPCHAT_OPENAI_BASE_URL", base_url)
            .env("LOOPCHAT_OPENAI_MODEL", "tiny-llama")
    }
}

/// `loopchat serve` on `home` as every test starts it: the test's own
/// `LOOPCHAT_*` settings removed, stdout and stderr piped, under an optional
/// command prefix that must exec the binary. For tests that need the bare
/// process (exit status, races between two relays); the rest use [`Relay`].
pub fn serve_command(wrapper: &[String], home: &Path) -> Command {
    let mut cmd = match wrapper.split_first() {
        None => Command::new(loopchat_bin()),
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(loopchat_bin());
            c
        }
    };
    cmd.arg("serve")
        .env("LOOPCHAT_HOME", home)
        .env("RUST_LOG", "info")
        .env_remove("LOOPCHAT_AGENT")
        .env_remove("LOOPCHAT_URL")
        .env_remove("LOOPCHAT_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

impl Relay {
    pub fn start() -> Relay {
        Self::start_with(RelayOptions::default())
    }

    pub fn start_with(opts: RelayOptions) -> Relay {
        let (tmp, home) = match &opts.home {
            Some(h) => (None, h.clone()),
            None => {
                let t = tempfile::tempdir().expect("tempdir");
                let h = t.path().join("home");
                (Some(t), h)
            }
        };
        if let Some(toml) = &opts.config {
            std::fs::create_dir_all(&home).expect("home");
            std::fs::write(home.join("config.toml"), toml).expect("config.toml");
        }
        let mut relay = Self::spawn_wrapped(&opts.wrapper, &home, &opts.env, &opts.args)
            .unwrap_or_else(|e| panic!("{e}"));
        relay._tmp = tmp;
        relay
    }

    /// Starts a relay, returning its startup failure (stderr) instead of
    /// panicking.
    pub fn spawn(home: &Path, env: &[(String, String)], args: &[String]) -> Result<Relay, String> {
        Self::spawn_wrapped(&[], home, env, args)
    }

    /// [`Relay::spawn`] under a command prefix (`wrapper[0] wrapper[1..]
    /// loopchat serve …`); the prefix must exec the binary so that the
    /// child's pid is the relay's.
    pub fn spawn_wrapped(
        wrapper: &[String],
        home: &Path,
        env: &[(String, String)],
        args: &[String],
    ) -> Result<Relay, String> {
        let mut cmd = serve_command(wrapper, home);
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| format!("spawn loopchat: {e}"))?;
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (stderr_done, stderr_ended) = mpsc::channel::<()>();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut l = logs.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
                drop(stderr_done);
            });
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // keep draining so the relay never blocks on a full pipe
            for _ in lines {}
        });
        let url_line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // The relay is gone, so its stderr ends: read all of it (a
                // relay that refused to start says why there) before judging.
                // Bounded, in case a child it started still holds the pipe.
                let _ = stderr_ended.recv_timeout(Duration::from_secs(10));
                return Err(format!(
                    "relay did not start; stderr:\n{}",
                    logs.lock().unwrap()
                ));
            }
        };
        let d = read_discovery(home).map_err(|e| format!("discovery: {e}"))?;
        Ok(Relay {
            child,
            home: home.to_owned(),
            _tmp: None,
            port: d.port,
            token: d.token,
            url_line,
            env: env.to_vec(),
            wrapper: wrapper.to_vec(),
            logs,
        })
    }

    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// SIGTERM and wait for exit; returns the exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        self.child.wait().ok().and_then(|s| s.code())
    }

    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }

    /// Starts a new relay process on the same home (and env), after this
    /// one has exited.
    pub fn restart(&mut self) {
        let tmp = self._tmp.take();
        let mut next = Self::spawn_wrapped(&self.wrapper, &self.home, &self.env, &[])
            .unwrap_or_else(|e| panic!("{e}"));
        next._tmp = tmp;
        *self = next;
    }

    pub fn client(&self) -> Api {
        Api {
            http: reqwest::Client::new(),
            origin: self.origin(),
            token: Some(self.token.clone()),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn read_discovery(home: &Path) -> anyhow::Result<Discovery> {
    let path = home.join(loopchat_proto::home::DISCOVERY_FILE);
    Ok(Discovery::parse(&std::fs::read(path)?)?)
}

/// An authenticated JSON client.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub origin: String,
    pub token: Option<String>,
}

impl Api {
    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.auth(self.http.get(format!("{}{path}", self.origin)))
    }
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.auth(self.http.post(format!("{}{path}", self.origin)))
    }
    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// `POST /webchat/rpc` and the answer as (status, JSON).
    pub async fn rpc(&self, body: Value) -> (u16, Value) {
        let r = self
            .post("/webchat/rpc")
            .json(&body)
            .send()
            .await
            .expect("rpc");
        let status = r.status().as_u16();
        (status, r.json().await.expect("rpc json"))
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).send().await.expect("get");
        let status = r.status().as_u16();
        (status, r.json().await.expect("json"))
    }
}

/// Events every stream carries whatever its session (alerts, the session
/// list's changes): they have no `id:` line, are not the session's log, and
/// fall between its events wherever they happen to (docs/protocol.md).
pub fn relay_wide(event: &Value) -> bool {
    event["type"] == "notification" || event["type"] == "sessions"
}

/// The session keys of a `/webchat/sessions` answer, in its order.
pub fn session_keys(list: &Value) -> Vec<String> {
    list["sessions"]
        .as_array()
        .expect("a sessions array")
        .iter()
        .map(|s| s["key"].as_str().expect("a key").to_owned())
        .collect()
}

/// Reads SSE events (the JSON of each `data:`) from a response, with the
/// relay's own reader (`loopchat_proto::sse`).
pub struct SseReader {
    inner: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<SseEvent, String>> + Send>>,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> Self {
        use futures_util::StreamExt;
        Self {
            inner: Box::pin(
                SseStream::with_ids(Box::pin(response.bytes_stream()))
                    .map(|r| r.map_err(|e| e.to_string())),
            ),
        }
    }

    /// Next event as (SSE id, JSON); `None` at the end of the stream.
    pub async fn next(&mut self) -> Option<(String, Value)> {
        use futures_util::StreamExt;
        let e = tokio::time::timeout(Duration::from_secs(30), self.inner.next())
            .await
            .expect("no SSE event within 30 s")?
            .expect("broken SSE stream");
        Some((
            e.id,
            serde_json::from_str(&e.data).expect("SSE data is JSON"),
        ))
    }

    /// Reads until an event of `kind` (inclusive), returning all read.
    pub async fn until(&mut self, kind: &str) -> Vec<Value> {
        let mut out = Vec::new();
        while let Some((_, v)) = self.next().await {
            let done = v["type"] == kind;
            out.push(v);
            if done {
                return out;
            }
        }
        panic!("stream ended before a {kind} event; got {out:?}");
    }
}

/// What [`scan_store`] found.
pub struct StoreScan {
    /// Complete lines in all transcripts.
    pub lines: usize,
    /// Transcripts that end with part of a line.
    pub torn: usize,
}

/// Parses every complete line of every transcript in `home`, and the index,
/// panicking at the first that does not parse. Bytes after a transcript's
/// last newline are counted, not parsed: a write cut off by a crash leaves
/// them unacknowledged, and the relay cuts them when it opens the file.
pub fn scan_store(home: &Path) -> StoreScan {
    let dir = home.join("sessions");
    let mut scan = StoreScan { lines: 0, torn: 0 };
    for entry in std::fs::read_dir(&dir).expect("sessions dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("jsonl") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read transcript");
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
        if complete < bytes.len() {
            scan.torn += 1;
        }
        for (i, line) in bytes[..complete]
            .split_inclusive(|b| *b == b'\n')
            .enumerate()
        {
            let line = &line[..line.len() - 1];
            serde_json::from_slice::<Value>(line).unwrap_or_else(|e| {
                panic!(
                    "{}:{}: {e}: {}",
                    path.display(),
                    i + 1,
                    String::from_utf8_lossy(line)
                )
            });
            scan.lines += 1;
        }
    }
    let index = std::fs::read(dir.join("sessions.json")).expect("index");
    serde_json::from_slice::<Value>(&index).expect("index parses");
    scan
}

/// Every line of every transcript in `home` parses as JSON, and every
/// transcript ends with a newline. Returns the number of lines.
pub fn assert_store_readable(home: &Path) -> usize {
    let scan = scan_store(home);
    assert_eq!(scan.torn, 0, "a transcript ends with part of a line");
    scan.lines
}

/// Every message of a session, oldest first, paging back through history.
pub async fn all_messages(api: &Api, session: &str) -> Vec<Value> {
    let (_, info) = api
        .get_json(&format!("/webchat/info?session={session}&limit=1000"))
        .await;
    let mut all: Vec<Value> = info["initialMessages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut more = info["hasMore"].as_bool().unwrap_or(false);
    while more {
        let before = all[0]["id"].as_str().unwrap().to_owned();
        let (s, page) = api
            .get_json(&format!(
                "/webchat/history?session={session}&before={before}&limit=1000"
            ))
            .await;
        assert_eq!(s, 200, "{page}");
        let mut older = page["messages"].as_array().cloned().unwrap_or_default();
        older.extend(all);
        all = older;
        more = page["hasMore"].as_bool().unwrap_or(false);
    }
    all
}
