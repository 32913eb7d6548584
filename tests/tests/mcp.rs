//! Issue 16 item 5: MCP servers, end to end — the real relay on the openai
//! backend, the suites' real llama.cpp server behind the forcing proxy
//! (tests/src/forcing.rs), and the real `@modelcontextprotocol/server-everything`
//! from npm (pinned in tests/mcp/package-lock.json) over stdio.
//!
//! The llama server handles one request at a time, so the end-to-end steps
//! run inside ONE `#[tokio::test]`, in order. `LOOPCHAT_SKIP_LLAMA=1` skips it.

use std::path::PathBuf;
use std::time::Duration;

use loopchat_tests::forcing::{Force, Proxy};
use loopchat_tests::llama::Llama;
use loopchat_tests::{Api, Relay, RelayOptions, SseReader, loopchat_bin};
use serde_json::{Value, json};

/// The server's entry point (installed by scripts/install-test-deps.sh).
fn everything_js() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        p.exists(),
        "{} is missing: run scripts/install-test-deps.sh",
        p.display()
    );
    p
}

fn stdio_config(ws: &std::path::Path) -> String {
    format!(
        r#"
[agent.openai]
max_tokens = 6

[tools]
workspace = "{ws}"
max_steps = 4
approval_timeout_secs = 30

[tools.policy]
everything__echo = "allow"
changing__add-tool = "allow"
changing__added = "allow"

[[mcp_servers]]
name = "everything"
command = "node"
args = ["{js}", "stdio"]

[[mcp_servers]]
name = "changing"
command = "node"
args = ["{changing}"]

[[mcp_servers]]
name = "broken"
command = "/nonexistent/loopchat-mcp-server"
"#,
        ws = ws.display(),
        js = everything_js().display(),
        changing = everything_js()
            .ancestors()
            .nth(5)
            .unwrap()
            .join("changing-server.mjs")
            .display()
    )
}

struct Setup {
    relay: Relay,
    api: Api,
    _tmp: tempfile::TempDir,
}

fn start(proxy: &Proxy) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let relay = Relay::start_with(
        RelayOptions {
            home: Some(tmp.path().join("home")),
            ..Default::default()
        }
        .config(&stdio_config(&ws))
        .openai_at(&proxy.base_url()),
    );
    let api = relay.client();
    Setup {
        relay,
        api,
        _tmp: tmp,
    }
}

/// `GET /webchat/tools`, via the CLI as a user runs it.
fn cli_tools(relay: &Relay) -> Value {
    let out = std::process::Command::new(loopchat_bin())
        .args(["tools", "--json"])
        .env("LOOPCHAT_HOME", &relay.home)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn tool<'a>(listing: &'a Value, name: &str) -> Option<&'a Value> {
    listing["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
}

/// The server starts in the background; nothing announces it, so this
/// polls the listing (bounded) until `ok` accepts it.
async fn wait_listing(api: &Api, ok: impl Fn(&Value) -> bool) -> Value {
    // Generous: a server coming back may wait out a 30 s backoff.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (s, v) = api.get_json("/webchat/tools").await;
        assert_eq!(s, 200, "{v}");
        if ok(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the MCP server's tools never showed: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn available(v: &Value, name: &str) -> bool {
    tool(v, name).is_some_and(|t| t["available"] == true)
}

async fn messages(api: &Api, session: &str) -> Vec<Value> {
    let (s, info) = api
        .get_json(&format!("/webchat/info?session={session}&limit=200"))
        .await;
    assert_eq!(s, 200, "{info}");
    info["initialMessages"].as_array().unwrap().clone()
}

fn results(messages: &[Value]) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| m["role"] == "toolResult")
        .cloned()
        .collect()
}

/// The text blocks of a message (one text is sent as a plain string).
/// One turn in which the model, forced by the proxy, calls `tool` with
/// `args` and then answers in words: the session's tool results after it.
async fn forced_call(
    proxy: &Proxy,
    api: &Api,
    session: &str,
    tool: &'static str,
    args: Value,
) -> Vec<Value> {
    proxy.script(vec![Force::Call(tool, args), Force::Text]);
    let (st, v) = api
        .rpc(json!({"session": session, "text": "use the tool"}))
        .await;
    assert_eq!(st, 200, "{v}");
    results(&messages(api, session).await)
}

/// The PNG bytes of a result's image block, checked to be a PNG.
fn png_of(result: &Value) -> Vec<u8> {
    use base64::Engine;
    let content = result["content"].as_array().unwrap();
    let image = content
        .iter()
        .find(|c| c["type"] == "image")
        .unwrap_or_else(|| panic!("no image block: {content:?}"));
    assert_eq!(image["mimeType"], "image/png");
    let png = base64::engine::general_purpose::STANDARD
        .decode(image["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    png
}

fn texts(m: &Value) -> Vec<String> {
    if let Some(t) = m["content"].as_str() {
        return vec![t.to_owned()];
    }
    m["content"]
        .as_array()
        .unwrap_or_else(|| panic!("no content: {m}"))
        .iter()
        .filter_map(|p| p["text"].as_str().map(str::to_owned))
        .collect()
}

/// The `tool` messages of a request the relay sent to the model.
fn tool_messages(body: &Value) -> Vec<Value> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .cloned()
        .collect()
}

/// The pid of the relay's child whose command line has `marker`.
fn child_with(relay: &Relay, marker: &str) -> Option<i32> {
    let ppid = relay.pid();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
        let after = stat.rsplit_once(") ")?.1;
        let mut f = after.split_whitespace();
        let state = f.next()?;
        let parent: i32 = f.next()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        (parent == ppid && state != "Z" && String::from_utf8_lossy(&cmd).contains(marker))
            .then_some(pid)
    })
}

#[tokio::test]
async fn mcp_stdio_against_real_servers() {
    let Some(llama) = Llama::start().await else {
        return;
    };
    let proxy = Proxy::start(llama.addr()).await;
    let s = start(&proxy);
    listing(&s).await;
    echo_round_trip(&proxy, &s).await;
    tiny_image_after_approval(&proxy, &s).await;
    list_changed_is_honoured(&proxy, &s).await;
    broken_server_is_told_to_the_model(&proxy, &s).await;
    killed_server_is_restarted(&proxy, &s).await;
    assert_eq!(proxy.left(), 0);
}

/// The server's tools are listed as `everything__tool`, with the server as
/// source and the policy (configured allow, default ask); the broken one
/// lists nothing.
async fn listing(s: &Setup) {
    wait_listing(&s.api, |v| available(v, "everything__echo")).await;
    let v = cli_tools(&s.relay);
    let echo = tool(&v, "everything__echo").unwrap();
    assert_eq!(echo["source"], "everything");
    assert_eq!(echo["policy"], "allow");
    assert!(
        echo["description"].as_str().unwrap().contains("Echo"),
        "{echo}"
    );
    let img = tool(&v, "everything__get-tiny-image").unwrap();
    assert_eq!(img["policy"], "ask");
    assert_eq!(img["available"], true);
    assert_eq!(tool(&v, "read").unwrap()["source"], "builtin");
    assert!(
        !v["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["source"] == "broken"),
        "{v}"
    );
    // The human table names the source too.
    let out = std::process::Command::new(loopchat_bin())
        .args(["tools"])
        .env("LOOPCHAT_HOME", &s.relay.home)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.lines().any(|l| l.starts_with("everything__echo")
            && l.contains("everything")
            && l.ends_with("allow")),
        "{table}"
    );
}

/// `echo` (policy allow) runs at once; its text result is stored as the
/// toolResult and sent back to the model.
async fn echo_round_trip(proxy: &Proxy, s: &Setup) {
    let r = forced_call(
        proxy,
        &s.api,
        "echo",
        "everything__echo",
        json!({"message": "hello over mcp"}),
    )
    .await;
    let bodies = proxy.bodies();
    let first = &bodies[bodies.len() - 2];
    let offered: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    // What the relay offered (the proxy records the body before forcing).
    assert!(offered.contains(&"everything__echo"), "{offered:?}");
    assert!(offered.contains(&"everything__get-tiny-image"));
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["toolName"], "everything__echo", "{r:?}");
    assert_eq!(r[0]["isError"], false);
    assert_eq!(texts(&r[0]), ["Echo: hello over mcp"]);
    let told = tool_messages(bodies.last().unwrap());
    assert!(
        told[0]["content"]
            .to_string()
            .contains("Echo: hello over mcp"),
        "{told:?}"
    );
}

/// `get-tiny-image` asks first (default policy); approved, its text and
/// image blocks are stored in pi's shape.
async fn tiny_image_after_approval(proxy: &Proxy, s: &Setup) {
    proxy.script(vec![
        Force::Call("everything__get-tiny-image", json!({})),
        Force::Text,
    ]);
    let r = s
        .api
        .get("/webchat/events?session=image")
        .send()
        .await
        .unwrap();
    let mut sse = SseReader::new(r);
    let api = s.api.clone();
    let turn = tokio::spawn(async move {
        api.rpc(json!({"session": "image", "text": "show the image"}))
            .await
    });
    let call_id = loop {
        let (_, v) = sse.next().await.expect("events ended");
        if v["type"] == "tool.approval" {
            assert_eq!(v["name"], "everything__get-tiny-image");
            break v["callId"].as_str().unwrap().to_owned();
        }
    };
    let r = s
        .api
        .post("/webchat/approve")
        .json(&json!({"session": "image", "callId": call_id, "decision": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (st, v) = turn.await.unwrap();
    assert_eq!(st, 200, "{v}");
    let r = results(&messages(&s.api, "image").await);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["isError"], false);
    png_of(&r[0]);
    assert_eq!(
        texts(&r[0]),
        [
            "Here's the image you requested:",
            "The image above is the MCP logo."
        ]
    );
}

/// A tool the server adds later (it sends `tools/list_changed`) is offered
/// and runs; before, it was not there.
async fn list_changed_is_honoured(proxy: &Proxy, s: &Setup) {
    let v = wait_listing(&s.api, |v| available(v, "changing__add-tool")).await;
    assert!(tool(&v, "changing__added").is_none(), "{v}");
    let r = forced_call(proxy, &s.api, "changing", "changing__add-tool", json!({})).await;
    assert_eq!(texts(&r[0]), ["added"]);
    // The relay re-lists on the notification; nothing else would show it.
    wait_listing(&s.api, |v| available(v, "changing__added")).await;
    let r = forced_call(proxy, &s.api, "added", "changing__added", json!({})).await;
    let bodies = proxy.bodies();
    let offered = bodies[bodies.len() - 2]["tools"].to_string();
    assert!(offered.contains("changing__added"), "{offered}");
    assert_eq!(texts(&r[0]), ["the added tool ran"]);
}

/// A server that cannot start: a call of one of its tools gets a sentence,
/// the run goes on.
async fn broken_server_is_told_to_the_model(proxy: &Proxy, s: &Setup) {
    let r = forced_call(proxy, &s.api, "broken", "broken__anything", json!({})).await;
    assert_eq!(r[0]["isError"], true);
    let t = texts(&r[0]).join(" ");
    assert!(t.contains("broken"), "{t}");
    assert!(t.contains("is not running"), "{t}");
}

/// A server killed with SIGKILL is started again (a new process) and its
/// tools work again.
async fn killed_server_is_restarted(proxy: &Proxy, s: &Setup) {
    let before = child_with(&s.relay, "server-everything").expect("no MCP server process");
    // SAFETY: signalling a process of this test's relay.
    unsafe {
        libc::kill(before, libc::SIGKILL);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(pid) = child_with(&s.relay, "server-everything")
            && pid != before
        {
            let (_, v) = s.api.get_json("/webchat/tools").await;
            if available(&v, "everything__echo") {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the MCP server was not restarted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = forced_call(
        proxy,
        &s.api,
        "restarted",
        "everything__echo",
        json!({"message": "again"}),
    )
    .await;
    assert_eq!(texts(&r[0]), ["Echo: again"]);
}

/// server-everything's streamable HTTP transport on `port`, bound to
/// 127.0.0.1 (tests/mcp/loopback.mjs), once it listens.
async fn everything_http(port: u16) -> tokio::process::Child {
    use tokio::io::AsyncBufReadExt;
    let mcp = everything_js().ancestors().nth(5).unwrap().to_path_buf();
    let mut child = tokio::process::Command::new("node")
        .arg("--import")
        .arg(mcp.join("loopback.mjs"))
        .arg(everything_js())
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run node");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let listening = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("listening on port") {
                return;
            }
        }
        panic!("server-everything ended before it listened");
    };
    tokio::time::timeout(Duration::from_secs(60), listening)
        .await
        .expect("server-everything listened within 60 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

/// Between the relay and the HTTP server: forwards each request as it is
/// (streaming the answer back) and records its method and headers.
struct HeaderProxy {
    port: u16,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, reqwest::header::HeaderMap)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HeaderProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HeaderProxy {
    async fn start(upstream: u16) -> HeaderProxy {
        use axum::body::Body;
        use axum::response::Response;
        use futures_util::StreamExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let http = reqwest::Client::new();
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let http = http.clone();
            let record = record.clone();
            async move {
                let (parts, body) = req.into_parts();
                record
                    .lock()
                    .unwrap()
                    .push((parts.method.to_string(), parts.headers.clone()));
                let bytes = axum::body::to_bytes(body, 16 << 20)
                    .await
                    .unwrap_or_default();
                let url = format!(
                    "http://127.0.0.1:{upstream}{}",
                    parts.uri.path_and_query().map_or("/", |p| p.as_str())
                );
                let mut up = http.request(parts.method, url).body(bytes);
                for (k, v) in &parts.headers {
                    if k != "host" && k != "content-length" {
                        up = up.header(k, v);
                    }
                }
                match up.send().await {
                    Ok(r) => {
                        let mut out = Response::builder().status(r.status().as_u16());
                        for (k, v) in r.headers() {
                            if k != "content-length"
                                && k != "transfer-encoding"
                                && k != "connection"
                            {
                                out = out.header(k, v);
                            }
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
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        HeaderProxy { port, seen, task }
    }

    fn seen(&self) -> Vec<(String, reqwest::header::HeaderMap)> {
        self.seen.lock().unwrap().clone()
    }
}

const HEADER_SECRET: &str = "Bearer mcp-header-secret-4711";

/// Issue 16 item 5 over streamable HTTP: the same server, bound to loopback
/// and reached through [`HeaderProxy`], and a URL where nothing listens.
#[tokio::test]
async fn mcp_http_against_the_real_server() {
    let Some(llama) = Llama::start().await else {
        return;
    };
    let proxy = Proxy::start(llama.addr()).await;
    let server_port = loopchat_tests::llama::free_port();
    let mut server = everything_http(server_port).await;
    let headers = HeaderProxy::start(server_port).await;
    let dead_port = loopchat_tests::llama::free_port();
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let config = format!(
        r#"
[agent.openai]
max_tokens = 6

[tools]
workspace = "{ws}"
max_steps = 4

[tools.policy]
web__echo = "allow"
web__get-tiny-image = "allow"

[[mcp_servers]]
name = "web"
url = "http://127.0.0.1:{port}/mcp"
headers = {{ Authorization = "{HEADER_SECRET}", X-Loopchat-Test = "yes" }}

[[mcp_servers]]
name = "dead"
url = "http://127.0.0.1:{dead_port}/mcp"
"#,
        ws = ws.display(),
        port = headers.port,
    );
    let relay = Relay::start_with(
        RelayOptions {
            home: Some(tmp.path().join("home")),
            ..Default::default()
        }
        .config(&config)
        .openai_at(&proxy.base_url())
        // Everything the relay and rmcp log, to look for the header in.
        .env("RUST_LOG", "trace,rmcp=trace,hyper=info,h2=info"),
    );
    let api = relay.client();
    let s = Setup {
        relay,
        api: api.clone(),
        _tmp: tmp,
    };

    // Listed as web__…, with the server as source.
    let v = wait_listing(&api, |v| available(v, "web__echo")).await;
    assert_eq!(tool(&v, "web__echo").unwrap()["source"], "web");
    assert!(tool(&v, "web__get-tiny-image").is_some(), "{v}");

    // echo, end to end.
    let r = forced_call(
        &proxy,
        &api,
        "web-echo",
        "web__echo",
        json!({"message": "hello over http"}),
    )
    .await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["toolName"], "web__echo");
    assert_eq!(r[0]["isError"], false);
    assert_eq!(texts(&r[0]), ["Echo: hello over http"]);
    let told = tool_messages(proxy.bodies().last().unwrap());
    assert!(
        told[0]["content"]
            .to_string()
            .contains("Echo: hello over http"),
        "{told:?}"
    );

    // get-tiny-image: text and a PNG, in pi's shape.
    let r = forced_call(&proxy, &api, "web-image", "web__get-tiny-image", json!({})).await;
    assert_eq!(r[0]["isError"], false, "{r:?}");
    png_of(&r[0]);

    // The configured headers reached the server on every request, the
    // session's id on every one after `initialize`; none is in the log.
    let seen = headers.seen();
    assert!(seen.len() >= 4, "{} requests", seen.len());
    for (method, h) in &seen {
        assert_eq!(h["authorization"], HEADER_SECRET, "{method}");
        assert_eq!(h["x-loopchat-test"], "yes", "{method}");
    }
    let posts: Vec<_> = seen.iter().filter(|(m, _)| m == "POST").collect();
    assert!(posts[0].1.get("mcp-session-id").is_none());
    let session = posts[1].1["mcp-session-id"].clone();
    assert!(
        posts[1..]
            .iter()
            .all(|(_, h)| h["mcp-session-id"] == session)
    );
    let secret = HEADER_SECRET.trim_start_matches("Bearer ");
    assert!(!s.relay.logs().contains(secret), "the header is in the log");

    // Nothing listens at the dead URL: the relay serves on, and a call of
    // its tools is told why.
    let r = forced_call(&proxy, &api, "dead", "dead__anything", json!({})).await;
    assert_eq!(r[0]["isError"], true);
    let t = texts(&r[0]).join(" ");
    assert!(t.contains("dead") && t.contains("is not running"), "{t}");
    assert!(t.to_lowercase().contains("connect"), "no reason given: {t}");
    let logs = s.relay.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("mcp server failed to start") && l.contains("dead")),
        "{logs}"
    );

    // The server is killed: its tools become unavailable, and a call is
    // told so; it comes back (same port, a new process knowing no session):
    // the relay connects again on its own.
    server.kill().await.unwrap();
    let v = wait_listing(&api, |v| {
        tool(v, "web__echo").is_some_and(|t| t["available"] == false)
    })
    .await;
    assert_eq!(tool(&v, "web__get-tiny-image").unwrap()["available"], false);
    let r = forced_call(
        &proxy,
        &api,
        "web-down",
        "web__echo",
        json!({"message": "while down"}),
    )
    .await;
    assert_eq!(r[0]["isError"], true);
    assert!(texts(&r[0]).join(" ").contains("is not running"), "{r:?}");
    let before = headers.seen().len();
    let _server = everything_http(server_port).await;
    wait_listing(&api, |v| available(v, "web__echo")).await;
    let r = forced_call(
        &proxy,
        &api,
        "web-again",
        "web__echo",
        json!({"message": "again"}),
    )
    .await;
    assert_eq!(texts(&r[0]), ["Echo: again"]);
    // A new session was opened with the new process.
    let after = headers.seen();
    let new_session = after[before..]
        .iter()
        .find_map(|(m, h)| (m == "POST").then(|| h.get("mcp-session-id").cloned()))
        .flatten();
    assert_ne!(new_session.as_ref(), Some(&session));
    assert_eq!(proxy.left(), 0);
}

/// Configs the relay cannot use stop `serve` with a message naming them.
#[test]
fn bad_mcp_configs_are_refused_at_start() {
    for (config, want) in [
        (
            "[[mcp_servers]]\nname = \"a__b\"\ncommand = \"x\"\n",
            "a__b",
        ),
        ("[[mcp_servers]]\nname = \"x\"\n", "exactly one of command"),
        (
            "[[mcp_servers]]\nname = \"x\"\ncommand = \"a\"\n[[mcp_servers]]\nname = \"x\"\ncommand = \"b\"\n",
            "used twice",
        ),
        (
            "[[mcp_servers]]\nname = \"x\"\ncommand = \"a\"\nbogus = 1\n",
            "bogus",
        ),
        (
            "[[mcp_servers]]\nname = \"x\"\nurl = \"http://example.com/mcp\"\n",
            "use https",
        ),
        (
            "[[mcp_servers]]\nname = \"x\"\nurl = \"http://127.0.0.1:1/mcp\"\nheaders = { \"Bad Name\" = \"v\" }\n",
            "not a valid HTTP header name",
        ),
        (
            "[[mcp_servers]]\nname = \"x\"\nurl = \"http://127.0.0.1:1/mcp\"\nheaders = { X-Key = \"line\\nbreak-secret\" }\n",
            "the header X-Key",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("config.toml"), config).unwrap();
        let err = match Relay::spawn(&home, &[], &[]) {
            Ok(_) => panic!("the relay started with {config}"),
            Err(e) => e,
        };
        assert!(err.contains(want), "{config}: {err}");
        // A header's value is a secret: never quoted back.
        assert!(!err.contains("break-secret"), "{err}");
    }
}

// Benchmark (ignored): an MCP round trip through the relay — the
// `tool_run` timing of the relay's debug log, from the checked call handed
// to the MCP client to its pi-shaped result — over forced `echo` calls, with
// the server over stdio and over streamable HTTP (bound to 127.0.0.1).
// Compare with tests/mcp/bench-direct.mjs (the SDK client, no relay):
//   LOOPCHAT_BIN=target/release/loopchat cargo test -p loopchat-tests --test mcp bench_ -- --ignored --nocapture --test-threads 1
//   node tests/mcp/bench-direct.mjs 100
//   node tests/mcp/bench-direct.mjs 100 http
#[tokio::test]
#[ignore]
async fn bench_mcp_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let config = stdio_config(&ws).replace("max_steps = 4", "max_steps = 100");
    bench_round_trip(&config, "everything__echo", "stdio").await;
}

#[tokio::test]
#[ignore]
async fn bench_mcp_http_round_trip() {
    let port = loopchat_tests::llama::free_port();
    let _server = everything_http(port).await;
    let config = format!(
        "[agent.openai]\nmax_tokens = 6\n[tools]\nmax_steps = 100\n[tools.policy]\nweb__echo = \"allow\"\n\
         [[mcp_servers]]\nname = \"web\"\nurl = \"http://127.0.0.1:{port}/mcp\"\n"
    );
    bench_round_trip(&config, "web__echo", "http").await;
}

async fn bench_round_trip(config: &str, echo: &'static str, transport: &str) {
    let Some(llama) = Llama::start().await else {
        return;
    };
    let proxy = Proxy::start(llama.addr()).await;
    let tmp = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(
        RelayOptions {
            home: Some(tmp.path().join("home")),
            ..Default::default()
        }
        .config(config)
        .openai_at(&proxy.base_url())
        .env("RUST_LOG", "info,loopchat_relay::timing=debug"),
    );
    let api = relay.client();
    wait_listing(&api, |v| available(v, echo)).await;
    for round in 0..5 {
        let mut script: Vec<Force> = (0..22)
            .map(|_| Force::Call(echo, json!({"message": "hi"})))
            .collect();
        script.push(Force::Text);
        proxy.script(script);
        let (s, v) = api
            .rpc(json!({"session": format!("bench{round}"), "text": "go"}))
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let logs = relay.logs();
    let mut us: Vec<u64> = logs
        .lines()
        .filter(|l| l.contains("step=\"tool_run\"") || l.contains("step=tool_run "))
        .filter_map(|l| {
            let rest = &l[l.find(" us=")? + 4..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect();
    // The first calls warm the server's JIT, as in bench-direct.mjs.
    us.drain(..us.len().min(10));
    us.sort_unstable();
    assert!(!us.is_empty(), "no tool_run timings in the log");
    let q = |p: f64| us[((us.len() as f64 * p) as usize).min(us.len() - 1)] as f64 / 1000.0;
    println!(
        "relay echo round trip over {transport} (n={}): p50 {:.3} ms, p99 {:.3} ms",
        us.len(),
        q(0.5),
        q(0.99)
    );
}
