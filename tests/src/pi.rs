//! The real pi agent (npm `@mariozechner/pi-coding-agent`, pinned in
//! tests/pi) for the pi suites: its binary, an isolated agent directory
//! whose `models.json` points at the suite's llama server, and a forwarding
//! proxy that can force a tool call out of the tiny model.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

/// `tests/pi/node_modules/.bin/pi` (installed by scripts/install-test-deps.sh).
pub fn pi_bin() -> PathBuf {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pi/node_modules/.bin/pi");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/install-test-deps.sh",
        bin.display()
    );
    bin
}

/// The provider name the agent directory defines.
pub const PROVIDER: &str = "llama";

/// A `PI_CODING_AGENT_DIR` of its own, with one provider: the model server
/// at `base_url` (ending in `/v1`).
pub fn agent_dir(parent: &Path, base_url: &str) -> PathBuf {
    let dir = parent.join("pi-agent");
    std::fs::create_dir_all(&dir).unwrap();
    let models = json!({"providers": {PROVIDER: {
        "baseUrl": base_url,
        "api": "openai-completions",
        "apiKey": "unused",
        "compat": {"supportsDeveloperRole": false, "supportsReasoningEffort": false},
        // pi's view of the window: large enough that it never compacts
        // (the server's own is 4096 tokens, and these turns stay short).
        // `reasoning`, so that pi keeps a thinking level other than off (the
        // compat flag keeps `reasoning_effort` out of the request).
        "models": [{"id": crate::llama::MODEL, "contextWindow": 131072, "maxTokens": 48, "reasoning": true}],
    }}});
    std::fs::write(dir.join("models.json"), models.to_string()).unwrap();
    dir
}

/// The environment that isolates pi (no network, no telemetry, its own
/// agent directory).
pub fn pi_env(agent_dir: &Path) -> Vec<(String, String)> {
    vec![
        (
            "PI_CODING_AGENT_DIR".into(),
            agent_dir.to_str().unwrap().into(),
        ),
        ("PI_OFFLINE".into(), "1".into()),
        ("PI_TELEMETRY".into(), "0".into()),
    ]
}

#[derive(Default)]
struct ProxyState {
    /// Force this (tool name, `command` value) on the next request whose
    /// last message is the user's.
    force: Option<(String, String)>,
    requests: Vec<Value>,
    /// When the server's answer to each request had been forwarded whole.
    ended: Vec<std::time::Instant>,
}

/// Between pi and the llama server: forwards every request (and streams the
/// answer back), records the bodies, and on demand forces a tool call the
/// way the tiny model can make one: `tool_choice` naming the tool and a
/// schema whose only argument is an `enum` of one value. It also sends
/// `content: ""` where a request has `null` beside `tool_calls`, which the
/// server answers with 500.
#[derive(Clone)]
pub struct ForcingProxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
}

impl ForcingProxy {
    pub async fn start(upstream: SocketAddr) -> ForcingProxy {
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let http = reqwest::Client::new();
        let app_state = state.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let state = app_state.clone();
            let http = http.clone();
            async move { forward(req, upstream, &http, &state).await }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ForcingProxy { addr, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn force(&self, tool: &str, command: &str) {
        self.state.lock().unwrap().force = Some((tool.into(), command.into()));
    }

    pub fn requests(&self) -> Vec<Value> {
        self.state.lock().unwrap().requests.clone()
    }

    /// When each answer had been forwarded whole, in order.
    pub fn ended(&self) -> Vec<std::time::Instant> {
        self.state.lock().unwrap().ended.clone()
    }
}

async fn forward(
    req: axum::extract::Request,
    upstream: SocketAddr,
    http: &reqwest::Client,
    state: &Arc<Mutex<ProxyState>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let mut body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if let Some(messages) = body["messages"].as_array_mut() {
        for m in messages.iter_mut() {
            if m["role"] == "assistant" && m["content"].is_null() {
                m["content"] = "".into();
            }
        }
    }
    // pi asks for `max_completion_tokens`, which this server ignores.
    if let Some(n) = body.get("max_completion_tokens").cloned() {
        body["max_tokens"] = n;
    }
    {
        let mut st = state.lock().unwrap();
        let last_is_user = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .is_some_and(|m| m["role"] == "user");
        if last_is_user && let Some((tool, command)) = st.force.take() {
            if let Some(tools) = body["tools"].as_array_mut() {
                tools.retain(|t| t["function"]["name"] == tool.as_str());
                for t in tools.iter_mut() {
                    t["function"]["parameters"] = json!({
                        "type": "object",
                        "properties": {"command": {"type": "string", "enum": [command]}},
                        "required": ["command"],
                    });
                }
            }
            body["tool_choice"] = json!({"type": "function", "function": {"name": tool}});
        }
        st.requests.push(body.clone());
    }
    let url = format!("http://{upstream}{}", parts.uri);
    let sent = http
        .request(parts.method, url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await;
    match sent {
        Ok(r) => {
            let status = r.status();
            let ct = r
                .headers()
                .get("content-type")
                .cloned()
                .unwrap_or_else(|| axum::http::HeaderValue::from_static("application/json"));
            use futures_util::StreamExt;
            let state = state.clone();
            let body = r
                .bytes_stream()
                .chain(futures_util::stream::once(async move {
                    state.lock().unwrap().ended.push(std::time::Instant::now());
                    Ok::<_, reqwest::Error>(axum::body::Bytes::new())
                }));
            let mut resp = axum::response::Response::new(axum::body::Body::from_stream(body));
            *resp.status_mut() = status;
            resp.headers_mut().insert("content-type", ct);
            resp
        }
        Err(e) => (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}

/// The pids of pi processes whose parent is `parent`.
pub fn pi_children(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces, so split after ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<i32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // pi sets its process title to "pi", which replaces the cmdline.
        let is_pi = cmdline.trim() == "pi" || cmdline.contains("--mode rpc");
        if is_pi && !stat.contains(") Z ") {
            out.push(pid);
        }
    }
    out
}
