//! The real llama.cpp (llama-cpp-python) server on the generated tiny model
//! (tests/support/llama), for suites that need a model, and a recording forwarding
//! proxy in front of it for suites that must see what a client sent.
//!
//! The server handles one request at a time: a suite runs everything that
//! talks to it inside one test. `LOOPCHAT_SKIP_LLAMA=1` skips with a printed
//! reason; without it a missing venv is a failure.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures_util::StreamExt;
use serde_json::Value;

pub const MODEL: &str = "tiny-llama";

pub fn cache_dir() -> PathBuf {
    match std::env::var_os("LOOPCHAT_TEST_CACHE") {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/loopchat-tests")
        }
    }
}

pub fn llama_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support/llama")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real server process; killed on drop.
pub struct Llama {
    child: Child,
    pub port: u16,
    output: Arc<Mutex<String>>,
}

impl Llama {
    /// `None` (with the reason printed) when `LOOPCHAT_SKIP_LLAMA=1`.
    pub async fn start() -> Option<Llama> {
        Self::start_with_aliases(&[]).await
    }

    /// The server with the model also served under each of `aliases`: it
    /// lists them all in `/v1/models` (after [`MODEL`]) and loads the one a
    /// request names.
    pub async fn start_with_aliases(aliases: &[&str]) -> Option<Llama> {
        if std::env::var("LOOPCHAT_SKIP_LLAMA").is_ok_and(|v| v == "1") {
            eprintln!("SKIPPED: LOOPCHAT_SKIP_LLAMA=1 is set, the llama server tests do not run");
            return None;
        }
        let venv = cache_dir().join("llama-venv");
        assert!(
            venv.join("bin/python").exists() && venv.join(".loopchat-stamp").exists(),
            "the llama test server is not set up ({} is missing or incomplete): \
             run tests/support/llama/setup.sh first (about 8 minutes on a fresh machine), \
             or set LOOPCHAT_SKIP_LLAMA=1 to skip these tests",
            venv.display()
        );
        let port = free_port();
        let mut child = Command::new(llama_dir().join("serve.sh"))
            .arg(port.to_string())
            .env("LLAMA_EXTRA_ALIASES", aliases.join(" "))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tests/support/llama/serve.sh");
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut o = output.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        let mut llama = Llama {
            child,
            port,
            output,
        };
        // An external process: poll until it answers, with a bounded deadline.
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let url = format!("http://127.0.0.1:{port}/v1/models");
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Some(llama);
            }
            if let Ok(Some(status)) = llama.child.try_wait() {
                panic!("the llama server exited ({status}):\n{}", llama.output());
            }
            assert!(
                Instant::now() < deadline,
                "the llama server did not answer within 120 s:\n{}",
                llama.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits (bounded: an external process) until its output has `needle`
    /// `count` times.
    pub async fn wait_output(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.output().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "the llama server never printed {needle:?} ({count}×):\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Llama {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the proxy changes a chat completion request before forwarding it.
pub type Rewrite = Arc<dyn Fn(&mut Value) + Send + Sync>;

struct ProxyState {
    upstream: SocketAddr,
    http: reqwest::Client,
    bodies: Mutex<Vec<Value>>,
    rewrite: Mutex<Option<Rewrite>>,
}

/// Forwards every request to the server, recording the JSON bodies (as the
/// client sent them) and streaming the answer back as it comes.
pub struct RecordingProxy {
    pub port: u16,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingProxy {
    pub async fn start(upstream: SocketAddr) -> RecordingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState {
            upstream,
            http: reqwest::Client::new(),
            bodies: Mutex::default(),
            rewrite: Mutex::default(),
        });
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(state.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RecordingProxy { port, state, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Every JSON request body so far, oldest first.
    pub fn bodies(&self) -> Vec<Value> {
        self.state.bodies.lock().unwrap().clone()
    }

    pub fn set_rewrite(&self, rewrite: Option<Rewrite>) {
        *self.state.rewrite.lock().unwrap() = rewrite;
    }
}

async fn forward(State(state): State<Arc<ProxyState>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let mut bytes = bytes.to_vec();
    if let Ok(mut json) = serde_json::from_slice::<Value>(&bytes) {
        state.bodies.lock().unwrap().push(json.clone());
        let rewrite = state.rewrite.lock().unwrap().clone();
        if let Some(rewrite) = rewrite {
            rewrite(&mut json);
            bytes = serde_json::to_vec(&json).unwrap();
        }
    }
    let url = format!(
        "http://{}{}",
        state.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut upstream = state.http.request(parts.method, url).body(bytes);
    if let Some(ct) = parts.headers.get("content-type") {
        upstream = upstream.header("content-type", ct);
    }
    match upstream.send().await {
        Ok(r) => {
            let mut out = Response::builder().status(r.status().as_u16());
            if let Some(ct) = r.headers().get("content-type") {
                out = out.header("content-type", ct);
            }
            let stream = r.bytes_stream().map(|c| c.map_err(std::io::Error::other));
            out.body(Body::from_stream(stream)).unwrap()
        }
        Err(e) => Response::builder()
            .status(502)
            .body(Body::from(e.to_string()))
            .unwrap(),
    }
}
