//! Issue 3: the `openai` backend against a REAL OpenAI-compatible server —
//! llama-cpp-python serving a tiny generated model (tests/support/llama).
//!
//! Between the relay and the server sits a small recording proxy (this file)
//! that forwards every byte, records request bodies and the moment the relay
//! closes its connection, and can be switched to fault modes: corrupt the
//! request (the real server then answers 500), inject garbage or an error
//! object into the stream, cut the connection, move content into
//! `reasoning_content`, or accept and never answer.
//!
//! The server handles one request at a time, so every test that talks to it
//! runs inside ONE `#[tokio::test]`, in order. `LOOPCHAT_SKIP_LLAMA=1` skips
//! those with a printed reason; without it a missing venv is a failure.
//!
//! Benchmark (ignored): `cargo build -p loopchat-relay --release &&
//! cargo test -p loopchat-tests --release --test openai_backend -- --ignored --nocapture`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use loopchat_tests::llama::{Llama, free_port};
use loopchat_tests::{Api, Relay, RelayOptions, SseReader};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

const MODEL: &str = "tiny-llama";
const SYSTEM_PROMPT: &str = "You are the loopchat test model.";
const API_KEY: &str = "sk-loopchat-e2e-0123456789";
/// Tokens per completion for the llama relay (each token is one SSE chunk).
const MAX_TOKENS: usize = 300;

// ---------------------------------------------------------------------------
// The recording proxy

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Forward everything as it is.
    Pass,
    /// Rewrite `"role":"user"` to an invalid role: the real server answers 500.
    CorruptRole,
    /// Replace content chunk N with data that is not JSON.
    Garbage(usize),
    /// Replace content chunk N with an `{"error":…}` object.
    StreamError(usize),
    /// Close both connections instead of forwarding content chunk N.
    Cut(usize),
    /// Move the text of the first N content chunks into
    /// `reasoning_content` (even chunks) or `reasoning` (odd ones).
    Reasoning(usize),
    /// Accept, read the request, never answer.
    Silent,
    /// Raise the request's `max_tokens` to this, so that the server is
    /// still generating when a test acts mid-stream however loaded the
    /// machine is.
    MaxTokens(usize),
}

struct Recorded {
    /// When the request was complete at the proxy.
    at: Instant,
    head: String,
    body: Value,
}

#[derive(Default)]
struct ResponseLog {
    status: u16,
    /// When each content chunk was forwarded to the relay.
    content_at: Vec<Instant>,
}

#[derive(Default)]
struct ProxyLog {
    requests: Vec<Recorded>,
    responses: Vec<ResponseLog>,
    /// Text moved into reasoning by [`Mode::Reasoning`].
    moved: String,
}

struct Shared {
    upstream: Option<SocketAddr>,
    mode: Mutex<Mode>,
    log: Mutex<ProxyLog>,
    /// When the client (the relay) closed a connection while a response
    /// was pending or streaming.
    closes: watch::Sender<Vec<Instant>>,
}

struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    async fn start(upstream: Option<SocketAddr>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            upstream,
            mode: Mutex::new(Mode::Pass),
            log: Mutex::default(),
            closes: watch::channel(Vec::new()).0,
        });
        let s = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(connection(sock, s.clone()));
            }
        });
        Proxy { port, shared, task }
    }

    fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    fn log(&self) -> std::sync::MutexGuard<'_, ProxyLog> {
        self.shared.log.lock().unwrap()
    }

    fn last_body(&self) -> Value {
        self.log()
            .requests
            .last()
            .expect("a request reached the proxy")
            .body
            .clone()
    }

    fn closes(&self) -> watch::Receiver<Vec<Instant>> {
        self.shared.closes.subscribe()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// `head` with its Content-Length set to `len`.
fn with_content_length(head: &str, len: usize) -> String {
    head.split("\r\n")
        .map(|line| match line.split_once(':') {
            Some((k, _)) if k.trim().eq_ignore_ascii_case("content-length") => {
                format!("{k}: {len}")
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// Reads until `buf` holds `n` bytes; false on EOF.
async fn fill(rd: &mut OwnedReadHalf, buf: &mut Vec<u8>, n: usize) -> bool {
    while buf.len() < n {
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
    true
}

/// Reads up to and including `delim`; `None` on EOF.
async fn read_until(rd: &mut OwnedReadHalf, buf: &mut Vec<u8>, delim: &[u8]) -> Option<Vec<u8>> {
    loop {
        if let Some(pos) = find(buf, delim) {
            return Some(buf.drain(..pos + delim.len()).collect());
        }
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// One HTTP request (head, body); `None` when the client closed.
async fn read_request(rd: &mut OwnedReadHalf, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let head = String::from_utf8(read_until(rd, buf, b"\r\n\r\n").await?).ok()?;
    let len: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
    if !fill(rd, buf, len).await {
        return None;
    }
    Some((head, buf.drain(..len).collect()))
}

/// Resolves when the client closes its side (it sends nothing while it
/// waits for a response).
async fn client_closed(rd: &mut OwnedReadHalf, buf: &mut Vec<u8>) {
    loop {
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

async fn connection(client: TcpStream, sh: Arc<Shared>) {
    let _ = client.set_nodelay(true);
    let (mut crd, mut cwr) = client.into_split();
    let mut cbuf = Vec::new();
    let mut upstream: Option<(OwnedReadHalf, OwnedWriteHalf)> = None;
    let mut ubuf = Vec::new();
    while let Some((head, mut body)) = read_request(&mut crd, &mut cbuf).await {
        let mode = *sh.mode.lock().unwrap();
        sh.log.lock().unwrap().requests.push(Recorded {
            at: Instant::now(),
            head: head.clone(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        if mode == Mode::Silent {
            client_closed(&mut crd, &mut cbuf).await;
            sh.closes.send_modify(|v| v.push(Instant::now()));
            return;
        }
        if mode == Mode::CorruptRole
            && let Some(pos) = find(&body, br#""role":"user""#)
        {
            // Same length, so Content-Length still holds.
            body[pos..pos + 13].copy_from_slice(br#""role":"uzer""#);
        }
        let mut head = head;
        if let Mode::MaxTokens(n) = mode
            && let Ok(mut request) = serde_json::from_slice::<Value>(&body)
        {
            request["max_tokens"] = json!(n);
            body = serde_json::to_vec(&request).unwrap();
            head = with_content_length(&head, body.len());
        }
        if upstream.is_none() {
            let up = TcpStream::connect(sh.upstream.expect("an upstream"))
                .await
                .unwrap();
            let _ = up.set_nodelay(true);
            upstream = Some(up.into_split());
        }
        let (urd, uwr) = upstream.as_mut().unwrap();
        if uwr.write_all(head.as_bytes()).await.is_err() || uwr.write_all(&body).await.is_err() {
            return;
        }
        let keep = tokio::select! {
            keep = forward_response(urd, &mut ubuf, &mut cwr, mode, &sh) => keep,
            () = client_closed(&mut crd, &mut cbuf) => {
                sh.closes.send_modify(|v| v.push(Instant::now()));
                false
            }
        };
        if !keep {
            // Dropping both halves closes the upstream connection too: the
            // server sees the disconnect.
            return;
        }
    }
}

/// Forwards one response; false when the connection must end.
async fn forward_response(
    urd: &mut OwnedReadHalf,
    ubuf: &mut Vec<u8>,
    cwr: &mut OwnedWriteHalf,
    mode: Mode,
    sh: &Shared,
) -> bool {
    let Some(head) = read_until(urd, ubuf, b"\r\n\r\n").await else {
        return false;
    };
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    sh.log.lock().unwrap().responses.push(ResponseLog {
        status,
        ..Default::default()
    });
    let close = header(&head, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
    if cwr.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    if header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut sse = Rewriter {
            mode,
            pending: Vec::new(),
            content: 0,
        };
        loop {
            let Some(line) = read_until(urd, ubuf, b"\r\n").await else {
                return false;
            };
            let line = String::from_utf8_lossy(&line);
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16).unwrap();
            if size == 0 {
                // Trailers up to the empty line.
                while let Some(l) = read_until(urd, ubuf, b"\r\n").await {
                    if l == b"\r\n" {
                        break;
                    }
                }
                let rest = std::mem::take(&mut sse.pending);
                if !rest.is_empty() && write_chunk(cwr, &rest).await.is_err() {
                    return false;
                }
                return cwr.write_all(b"0\r\n\r\n").await.is_ok() && !close;
            }
            if !fill(urd, ubuf, size + 2).await {
                return false;
            }
            let data: Vec<u8> = ubuf.drain(..size + 2).take(size).collect();
            for out in sse.push(&data, sh) {
                match out {
                    Some(bytes) => {
                        if write_chunk(cwr, &bytes).await.is_err() {
                            return false;
                        }
                    }
                    None => return false, // Mode::Cut
                }
            }
        }
    } else if let Some(len) = header(&head, "content-length") {
        let len: usize = len.parse().unwrap();
        if !fill(urd, ubuf, len).await {
            return false;
        }
        let body: Vec<u8> = ubuf.drain(..len).collect();
        cwr.write_all(&body).await.is_ok() && !close
    } else {
        let mut rest = std::mem::take(ubuf);
        let _ = urd.read_to_end(&mut rest).await;
        let _ = cwr.write_all(&rest).await;
        false
    }
}

async fn write_chunk(w: &mut OwnedWriteHalf, data: &[u8]) -> std::io::Result<()> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    w.write_all(&out).await
}

/// Splits the decoded body into SSE events and applies the mode.
struct Rewriter {
    mode: Mode,
    pending: Vec<u8>,
    /// Content chunks seen so far.
    content: usize,
}

impl Rewriter {
    /// The events to send on (`None`: cut the connection here).
    fn push(&mut self, data: &[u8], sh: &Shared) -> Vec<Option<Vec<u8>>> {
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            let ends = [
                find(&self.pending, b"\r\n\r\n").map(|p| p + 4),
                find(&self.pending, b"\n\n").map(|p| p + 2),
            ];
            let Some(end) = ends.into_iter().flatten().min() else {
                return out;
            };
            let event: Vec<u8> = self.pending.drain(..end).collect();
            let text = String::from_utf8_lossy(&event).into_owned();
            let json: Option<Value> = text
                .trim()
                .strip_prefix("data:")
                .and_then(|d| serde_json::from_str(d.trim()).ok());
            let content = json
                .as_ref()
                .and_then(|v| v["choices"][0]["delta"]["content"].as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned);
            let Some(content) = content else {
                out.push(Some(event));
                continue;
            };
            let k = self.content;
            self.content += 1;
            let replaced = match self.mode {
                Mode::Garbage(n) if k == n => Some(b"data: {this is not json\n\n".to_vec()),
                Mode::StreamError(n) if k == n => Some(
                    b"data: {\"error\":{\"message\":\"simulated backend failure\",\"type\":\"server_error\"}}\n\n"
                        .to_vec(),
                ),
                Mode::Cut(n) if k == n => {
                    out.push(None);
                    return out;
                }
                Mode::Reasoning(n) if k < n => {
                    let mut v = json.unwrap();
                    let delta = v["choices"][0]["delta"].as_object_mut().unwrap();
                    delta.remove("content");
                    let name = if k & 1 == 0 { "reasoning_content" } else { "reasoning" };
                    delta.insert(name.into(), content.clone().into());
                    sh.log.lock().unwrap().moved.push_str(&content);
                    Some(format!("data: {v}\r\n\r\n").into_bytes())
                }
                _ => None,
            };
            sh.log
                .lock()
                .unwrap()
                .responses
                .last_mut()
                .unwrap()
                .content_at
                .push(Instant::now());
            out.push(Some(replaced.unwrap_or(event)));
        }
    }
}

// ---------------------------------------------------------------------------
// Relay helpers

/// A relay on the openai backend pointed at `base_url`, with `config` as
/// its config.toml.
fn openai_relay(
    base_url: &str,
    config: &str,
    extra_env: &[(&str, &str)],
) -> (Relay, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = RelayOptions {
        home: Some(tmp.path().join("home")),
        ..Default::default()
    }
    .config(config)
    .env("LOOPCHAT_AGENT", "openai")
    .env("LOOPCHAT_OPENAI_BASE_URL", base_url)
    .env("LOOPCHAT_OPENAI_MODEL", MODEL);
    for (k, v) in extra_env {
        opts = opts.env(k, v);
    }
    (Relay::start_with(opts), tmp)
}

/// A streaming rpc: every event with its arrival time, through `done` or
/// `error`.
async fn stream_turn(api: &Api, body: Value) -> Vec<(Instant, Value)> {
    let r = api.post("/webchat/rpc").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut sse = SseReader::new(r);
    let mut out = Vec::new();
    while let Some((_, v)) = sse.next().await {
        let end = v["type"] == "done" || v["type"] == "error";
        out.push((Instant::now(), v));
        if end {
            return out;
        }
    }
    panic!("the rpc stream ended without done/error: {out:?}");
}

fn of_type<'a>(events: &'a [(Instant, Value)], t: &str) -> Vec<&'a (Instant, Value)> {
    events.iter().filter(|(_, v)| v["type"] == t).collect()
}

fn joined(events: &[(Instant, Value)], t: &str) -> String {
    of_type(events, t)
        .iter()
        .map(|(_, v)| v["text"].as_str().unwrap())
        .collect()
}

async fn last_messages(api: &Api, session: &str) -> Vec<Value> {
    let (s, info) = api
        .get_json(&format!("/webchat/info?session={session}"))
        .await;
    assert_eq!(s, 200, "{info}");
    info["initialMessages"].as_array().unwrap().clone()
}

/// The session's live events, subscribed before a turn is sent.
async fn subscribe(api: &Api, session: &str) -> SseReader {
    let r = api
        .get(&format!("/webchat/events?session={session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    SseReader::new(r)
}

/// The next `run.end` of a subscription.
async fn next_run_end(sse: &mut SseReader) -> Value {
    while let Some((_, v)) = sse.next().await {
        if v["type"] == "run.end" {
            return v;
        }
    }
    panic!("the event stream ended before run.end");
}

/// A failed turn: rpc answers `status`/`code` with a message containing
/// `needle`; the run ended with state `error` and that message; the user's
/// message is stored; the relay is still up. Returns the message.
async fn assert_failed_turn(
    api: &Api,
    session: &str,
    status: u16,
    code: &str,
    needle: &str,
) -> String {
    let text = format!("question for {session}");
    let mut events = subscribe(api, session).await;
    let (s, v) = api.rpc(json!({"text": text, "session": session})).await;
    assert_eq!((s, v["code"].as_str()), (status, Some(code)), "{v}");
    assert_eq!(v["ok"], false);
    let error = v["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains(needle),
        "{error:?} should contain {needle:?}"
    );
    let end = next_run_end(&mut events).await;
    assert_eq!(end["state"], "error", "{end}");
    // The run's error is the backend's message; the HTTP error says which
    // part failed in front of it.
    let run_error = end["error"].as_str().unwrap();
    assert!(run_error.contains(needle), "{end}");
    assert!(error.ends_with(run_error), "{error:?} vs {end}");
    let messages = last_messages(api, session).await;
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["content"], text.as_str());
    let (s, h) = api.get_json("/healthz").await;
    assert_eq!((s, &h["ok"]), (200, &json!(true)));
    error
}

// ---------------------------------------------------------------------------
// Against the real server

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_backend_against_llama() {
    let Some(llama) = Llama::start().await else {
        return;
    };
    let proxy = Proxy::start(Some(llama.addr())).await;
    let config =
        format!("[agent.openai]\nmax_tokens = {MAX_TOKENS}\nsystem_prompt = \"{SYSTEM_PROMPT}\"\n");
    let (relay, _home) = openai_relay(
        &proxy.base_url(),
        &config,
        &[("LOOPCHAT_OPENAI_API_KEY", API_KEY)],
    );
    let api = relay.client();

    streaming_deltas(&api, &proxy).await;
    non_streaming(&api, &proxy).await;
    history_is_sent(&api, &proxy).await;
    abort_stops_generation(&api, &proxy, &llama).await;
    thinking_mapping(&api, &proxy).await;
    upstream_errors(&api, &proxy).await;

    assert!(
        !relay.logs().contains(API_KEY),
        "the API key reached the relay's logs"
    );
}

/// Test 1: Deltas stream incrementally and add up to the stored reply.
async fn streaming_deltas(api: &Api, proxy: &Proxy) {
    let sent = Instant::now();
    let events = stream_turn(
        api,
        json!({"text": "Tell me a long story.", "session": "stream", "stream": true}),
    )
    .await;
    let deltas = of_type(&events, "delta");
    assert!(deltas.len() > 10, "only {} deltas", deltas.len());
    // One delta per chunk the server sent, and the first one reached the
    // client before the server had produced the last one.
    let (status, content_at) = {
        let log = proxy.log();
        let r = log.responses.last().unwrap();
        (r.status, r.content_at.clone())
    };
    assert_eq!(status, 200);
    let last_generated = *content_at.last().unwrap();
    assert!(
        deltas[0].0 < last_generated,
        "the first delta arrived {:?} after the request, only after the last token was generated ({:?})",
        deltas[0].0 - sent,
        last_generated - sent
    );
    let spread = deltas.last().unwrap().0 - deltas[0].0;
    assert!(
        spread > Duration::from_millis(20),
        "all deltas arrived within {spread:?}: not streamed"
    );
    assert_eq!(deltas.len(), content_at.len());
    assert_eq!(
        deltas.len(),
        MAX_TOKENS,
        "each completion runs to max_tokens"
    );

    let done = &events.last().unwrap().1;
    assert_eq!(done["type"], "done", "{done}");
    let text = joined(&events, "delta");
    assert!(!text.trim().is_empty());
    assert_eq!(done["message"]["content"], text.as_str());
    assert_eq!(done["payloads"][0]["text"], text.as_str());
    let stored = last_messages(api, "stream").await;
    let last = stored.last().unwrap();
    assert_eq!(
        (last["role"].as_str(), last["content"].as_str()),
        (Some("assistant"), Some(text.as_str()))
    );
    assert!(last.get("stopReason").is_none(), "{last}");
    let end = of_type(&events, "run.end")[0];
    assert_eq!(end.1["state"], "final");

    // What went to the server.
    let log = proxy.log();
    let req = log.requests.last().unwrap();
    assert!(
        req.head.starts_with("POST /v1/chat/completions "),
        "{}",
        req.head
    );
    assert_eq!(
        header(&req.head, "authorization"),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    assert_eq!(req.body["model"], MODEL);
    assert_eq!(req.body["stream"], true);
    assert_eq!(req.body["max_tokens"], MAX_TOKENS);
    assert!(
        req.body.get("reasoning_effort").is_none(),
        "thinking off sends no reasoning_effort"
    );
    assert_eq!(
        req.body["messages"],
        json!([{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "Tell me a long story."}])
    );
}

/// Test 2: A non-streaming rpc returns the whole reply.
async fn non_streaming(api: &Api, proxy: &Proxy) {
    let (s, v) = api
        .rpc(json!({"text": "Hello there", "session": "plain"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let text = v["payloads"][0]["text"].as_str().unwrap();
    assert!(!text.trim().is_empty());
    assert_eq!(v["message"]["content"], text);
    assert_eq!(v["message"]["role"], "assistant");
    let stored = last_messages(api, "plain").await;
    assert_eq!(stored.last().unwrap()["content"], text);
    // The whole completion: every chunk the server sent.
    let chunks = proxy.log().responses.last().unwrap().content_at.len();
    assert_eq!(chunks, MAX_TOKENS);
}

/// Test 3: The second turn carries the first one.
async fn history_is_sent(api: &Api, proxy: &Proxy) {
    let (s, first) = api
        .rpc(json!({"text": "first question alpha", "session": "hist"}))
        .await;
    assert_eq!(s, 200, "{first}");
    let reply1 = first["payloads"][0]["text"].as_str().unwrap().to_owned();
    let (s, second) = api
        .rpc(json!({"text": "second question beta", "session": "hist"}))
        .await;
    assert_eq!(s, 200, "{second}");
    let body = proxy.last_body();
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": "first question alpha"},
            {"role": "assistant", "content": reply1},
            {"role": "user", "content": "second question beta"},
        ])
    );
}

/// Test 4: Abort ends the run, keeps what streamed, and closes the upstream
/// request so that the server stops generating.
async fn abort_stops_generation(api: &Api, proxy: &Proxy, llama: &Llama) {
    // Ten times the configured length: however slow this machine is, the
    // server is still generating when the abort lands, so "closed before
    // the end" below cannot pass by luck or fail by load.
    const LONG: usize = 10 * MAX_TOKENS;
    proxy.set_mode(Mode::MaxTokens(LONG));
    let disconnects_before = llama.output().matches("disconnected").count();
    let closes_before = proxy.closes().borrow().len();
    let r = api
        .post("/webchat/rpc")
        .json(&json!({"text": "Talk for a while.", "session": "abort", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut sse = SseReader::new(r);
    let mut text = String::new();
    let mut deltas = 0;
    while deltas < 3 {
        let (_, v) = sse.next().await.expect("events");
        assert_ne!(v["type"], "run.end", "{v}");
        if v["type"] == "delta" {
            text.push_str(v["text"].as_str().unwrap());
            deltas += 1;
        }
    }
    let aborted_at = Instant::now();
    let r = api
        .post("/webchat/abort")
        .json(&json!({"session": "abort"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut stored = None;
    let end = loop {
        let (_, v) = sse.next().await.expect("events until run.end");
        match v["type"].as_str().unwrap() {
            "delta" => text.push_str(v["text"].as_str().unwrap()),
            "message" if v["message"]["role"] == "assistant" => stored = Some(v["message"].clone()),
            "run.end" => break v,
            _ => {}
        }
    };
    assert_eq!(end["state"], "aborted", "{end}");
    let stored = stored.expect("the partial reply is stored");
    assert_eq!(stored["stopReason"], "aborted");
    assert_eq!(
        stored["content"],
        text.as_str(),
        "stored content = the deltas received"
    );
    let last = last_messages(api, "abort").await.pop().unwrap();
    assert_eq!(
        (&last["content"], &last["stopReason"]),
        (&json!(text), &json!("aborted"))
    );

    // The relay closed its upstream connection after the abort…
    let mut closes = proxy.closes();
    let closed = tokio::time::timeout(
        Duration::from_secs(30),
        closes.wait_for(|c| c.len() > closes_before),
    )
    .await
    .expect("the relay never closed the upstream connection after the abort")
    .unwrap()[closes_before];
    proxy.set_mode(Mode::Pass);
    let after = closed.saturating_duration_since(aborted_at);
    // …before the server had finished…
    let generated = proxy.log().responses.last().unwrap().content_at.len();
    assert!(
        generated < LONG,
        "the server generated all {generated} tokens"
    );
    // …and the server noticed and stopped.
    llama
        .wait_output("disconnected", disconnects_before + 1)
        .await;
    eprintln!(
        "abort: upstream closed {after:?} after the abort request, after {generated} of {LONG} tokens"
    );
}

/// Test 6: `reasoning_content`/`reasoning` become thinking events and a
/// thinking part; `thinking` on rpc becomes `reasoning_effort`.
async fn thinking_mapping(api: &Api, proxy: &Proxy) {
    proxy.set_mode(Mode::Reasoning(6));
    let events = stream_turn(
        api,
        json!({"text": "Think first.", "session": "think", "stream": true, "thinking": "high"}),
    )
    .await;
    proxy.set_mode(Mode::Pass);
    let moved = std::mem::take(&mut proxy.log().moved);
    assert_eq!(of_type(&events, "thinking").len(), 6);
    assert_eq!(joined(&events, "thinking"), moved);
    let text = joined(&events, "delta");
    assert_eq!(of_type(&events, "delta").len(), MAX_TOKENS - 6);
    let done = &events.last().unwrap().1;
    assert_eq!(done["type"], "done", "{done}");
    let expected = json!([{"type": "thinking", "thinking": moved}, {"type": "text", "text": text}]);
    assert_eq!(done["message"]["content"], expected);
    assert_eq!(
        last_messages(api, "think").await.pop().unwrap()["content"],
        expected
    );
    assert_eq!(proxy.last_body()["reasoning_effort"], "high");

    for level in ["minimal", "low", "medium"] {
        let (s, v) = api
            .rpc(json!({"text": "again", "session": format!("think-{level}"), "thinking": level}))
            .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(proxy.last_body()["reasoning_effort"], level);
    }
    let (s, _) = api
        .rpc(json!({"text": "no thinking", "session": "think-off", "thinking": "off"}))
        .await;
    assert_eq!(s, 200);
    assert!(proxy.last_body().get("reasoning_effort").is_none());
}

/// Test 5: Failures of a real server, and of the stream, map to 502.
async fn upstream_errors(api: &Api, proxy: &Proxy) {
    let url = format!("{}/chat/completions", proxy.base_url());

    // The real server rejects the request body: HTTP 500 with its message.
    proxy.set_mode(Mode::CorruptRole);
    let e = assert_failed_turn(api, "err-500", 502, "agent_error", "HTTP 500").await;
    assert!(
        e.contains(&format!("{url} answered HTTP 500 Internal Server Error: ")),
        "{e}"
    );
    assert!(
        e.contains("Input should be"),
        "the server's error.message is shown: {e}"
    );

    proxy.set_mode(Mode::Garbage(5));
    let e = assert_failed_turn(api, "err-garbage", 502, "agent_error", "not JSON").await;
    assert!(e.contains("{this is not json"), "{e}");

    proxy.set_mode(Mode::StreamError(3));
    assert_failed_turn(
        api,
        "err-object",
        502,
        "agent_error",
        "simulated backend failure",
    )
    .await;

    proxy.set_mode(Mode::Cut(5));
    assert_failed_turn(api, "err-cut", 502, "agent_error", "mid-reply").await;

    // A partial reply before the failure is kept, marked as an error.
    let last = last_messages(api, "err-cut").await.pop().unwrap();
    assert_eq!(last["role"], "assistant");
    assert_eq!(last["stopReason"], "error");
    assert!(!last["content"].as_str().unwrap().is_empty());

    // And the next turn works again.
    proxy.set_mode(Mode::Pass);
    let (s, v) = api
        .rpc(json!({"text": "are you back?", "session": "err-cut"}))
        .await;
    assert_eq!(s, 200, "{v}");
}

// ---------------------------------------------------------------------------
// Failures that need no model server

/// Test 5: Nothing listens at the configured URL.
#[tokio::test]
async fn backend_refused() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/v1");
    let (relay, _home) = openai_relay(&base, "", &[]);
    let api = relay.client();
    let e = assert_failed_turn(
        &api,
        "refused",
        502,
        "agent_error",
        &format!("{base}/chat/completions"),
    )
    .await;
    assert!(e.contains("nothing is listening"), "{e}");

    // The same over a streaming rpc: run.end error, then an error event.
    let events = stream_turn(
        &api,
        json!({"text": "again", "session": "refused-2", "stream": true}),
    )
    .await;
    let end = &of_type(&events, "run.end")[0].1;
    assert_eq!(end["state"], "error");
    let last = &events.last().unwrap().1;
    assert_eq!(
        (last["type"].as_str(), last["code"].as_str()),
        (Some("error"), Some("agent_error"))
    );
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .ends_with(end["error"].as_str().unwrap()),
        "{last}"
    );
}

/// Test 5: A backend that accepts and never answers: idle timeout → 504, and
/// the relay closes the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_silent_times_out() {
    let proxy = Proxy::start(None).await;
    proxy.set_mode(Mode::Silent);
    let (relay, _home) = openai_relay(
        &proxy.base_url(),
        "[agent.openai]\nidle_timeout_secs = 1\nconnect_timeout_secs = 1\n",
        &[],
    );
    let api = relay.client();
    let started = Instant::now();
    let e = assert_failed_turn(&api, "silent", 504, "agent_timeout", "no response").await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "timed out only after {took:?}"
    );
    assert!(e.contains(&proxy.base_url()), "{e}");
    let mut closes = proxy.closes();
    tokio::time::timeout(Duration::from_secs(5), closes.wait_for(|c| !c.is_empty()))
        .await
        .expect("the relay kept the timed-out connection open")
        .unwrap();
}

// ---------------------------------------------------------------------------
// Benchmark

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A streaming request straight to the server: arrival time of each content
/// chunk (relative to the send), and the text.
async fn direct_stream(
    http: &reqwest::Client,
    base: &str,
    messages: &Value,
    max_tokens: usize,
) -> (Vec<Duration>, String) {
    use loopchat_proto::sse::SseStream;
    let start = Instant::now();
    let r = http
        .post(format!("{base}/chat/completions"))
        .json(&json!({
            "model": MODEL,
            "messages": messages,
            "stream": true,
            "max_tokens": max_tokens,
            "temperature": 0.0,
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let mut events = SseStream::new(Box::pin(r.bytes_stream()));
    let (mut times, mut text) = (Vec::new(), String::new());
    while let Some(data) = events.next().await {
        let data = data.unwrap();
        if data.trim() == "[DONE]" {
            break;
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        if let Some(t) = v["choices"][0]["delta"]["content"]
            .as_str()
            .filter(|s| !s.is_empty())
        {
            times.push(start.elapsed());
            text.push_str(t);
        }
    }
    (times, text)
}

/// The same through the relay: arrival time of each `delta`, and the reply.
async fn relay_stream(api: &Api, text: &str, session: &str) -> (Vec<Duration>, String) {
    let start = Instant::now();
    let events = stream_turn(
        api,
        json!({"text": text, "session": session, "stream": true}),
    )
    .await;
    let done = &events.last().unwrap().1;
    assert_eq!(done["type"], "done", "{done}");
    let times = of_type(&events, "delta")
        .iter()
        .map(|(t, _)| *t - start)
        .collect();
    (
        times,
        done["message"]["content"].as_str().unwrap().to_owned(),
    )
}

struct Ttft {
    direct: Vec<Duration>,
    relay: Vec<Duration>,
    /// relay − direct of each pair, ms.
    paired: Vec<f64>,
}

impl Ttft {
    fn print(mut self, what: &str) {
        self.direct.sort();
        self.relay.sort();
        self.paired.sort_by(f64::total_cmp);
        let n = self.direct.len();
        let p = |v: &[Duration], q| ms(percentile(v, q));
        let pp = |q: f64| self.paired[((n as f64 - 1.0) * q).round() as usize];
        println!("TTFT, {what} ({n} alternating pairs, max_tokens 4, temperature 0):");
        println!(
            "  direct to the server : p50 {:6.2} ms  p90 {:6.2} ms",
            p(&self.direct, 0.5),
            p(&self.direct, 0.9)
        );
        println!(
            "  through the relay    : p50 {:6.2} ms  p90 {:6.2} ms",
            p(&self.relay, 0.5),
            p(&self.relay, 0.9)
        );
        println!(
            "  added p50 {:+.2} ms (difference of the p50s); per pair: p50 {:+.2} ms, p90 {:+.2} ms",
            p(&self.relay, 0.5) - p(&self.direct, 0.5),
            pp(0.5),
            pp(0.9)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test -p loopchat-tests --release --test openai_backend -- --ignored --nocapture"]
async fn bench_ttft_overhead() {
    let Some(llama) = Llama::start().await else {
        return;
    };
    let direct_base = format!("http://127.0.0.1:{}/v1", llama.port);
    let http = reqwest::Client::new();
    let text = "Say something short.";
    let one = json!([{"role": "user", "content": text}]);
    let (relay, _home) = openai_relay(
        &direct_base,
        "[agent.openai]\nmax_tokens = 4\ntemperature = 0.0\n",
        &[],
    );
    let api = relay.client();
    // Warm-up: the first requests after a start are slower on both paths.
    for i in 0..3 {
        direct_stream(&http, &direct_base, &one, 4).await;
        relay_stream(&api, text, &format!("warm-{i}")).await;
    }
    let n = 50;

    // A turn in an existing session, the usual case. Both paths send the
    // same prompt: the session's history (the last 40 messages, as the
    // relay sends it) and the new message. Who goes first alternates.
    // The server reuses its KV cache for a prompt it has just seen, so the
    // second path of a pair would skip the prompt evaluation (about 150 ms
    // once the window slides) that the first pays. An untimed request with
    // the same prompt first puts both timed paths on a cache hit, so the
    // difference is the relay's own.
    let mut history: Vec<Value> = Vec::new();
    let mut t = Ttft {
        direct: vec![],
        relay: vec![],
        paired: vec![],
    };
    for i in 0..n {
        let mut messages = history.clone();
        messages.push(json!({"role": "user", "content": text}));
        let messages = Value::from(messages[messages.len().saturating_sub(40)..].to_vec());
        direct_stream(&http, &direct_base, &messages, 4).await;
        let (d, r) = if i % 2 == 0 {
            let d = direct_stream(&http, &direct_base, &messages, 4).await;
            (d, relay_stream(&api, text, "bench").await)
        } else {
            let r = relay_stream(&api, text, "bench").await;
            (direct_stream(&http, &direct_base, &messages, 4).await, r)
        };
        assert_eq!(
            d.1, r.1,
            "both paths got the same prompt, so the same reply"
        );
        history.push(json!({"role": "user", "content": text}));
        history.push(json!({"role": "assistant", "content": r.1}));
        t.paired.push(ms(r.0[0]) - ms(d.0[0]));
        t.direct.push(d.0[0]);
        t.relay.push(r.0[0]);
    }
    t.print("turn in an existing session");

    // The first turn of a new session also creates it (an index write).
    let mut t = Ttft {
        direct: vec![],
        relay: vec![],
        paired: vec![],
    };
    for i in 0..n {
        let (d, r) = if i % 2 == 0 {
            let d = direct_stream(&http, &direct_base, &one, 4).await;
            (d, relay_stream(&api, text, &format!("new-{i}")).await)
        } else {
            let r = relay_stream(&api, text, &format!("new-{i}")).await;
            (direct_stream(&http, &direct_base, &one, 4).await, r)
        };
        t.paired.push(ms(r.0[0]) - ms(d.0[0]));
        t.direct.push(d.0[0]);
        t.relay.push(r.0[0]);
    }
    t.print("first turn of a new session");
    drop(relay);

    // Per delta: 300-token streams through a recording proxy in front of the
    // server. The proxy timestamps each chunk as it hands it to the relay,
    // the client each delta it gets from the relay: the difference is the
    // relay's latency for that very delta, in the same run. (Comparing with
    // a separate direct run instead measures mostly the server's own speed
    // variation between runs, tens of ms over 300 tokens.)
    let proxy = Proxy::start(Some(llama.addr())).await;
    let (relay, _home2) = openai_relay(
        &proxy.base_url(),
        &format!("[agent.openai]\nmax_tokens = {MAX_TOKENS}\ntemperature = 0.0\n"),
        &[],
    );
    let api = relay.client();
    relay_stream(&api, text, "warm-long").await;
    let mut lat = Vec::new();
    let mut split = (Vec::new(), Vec::new());
    // Mean latency of the first and the last 50 deltas of each stream: a
    // relay that fell behind would show a growing backlog.
    let mut ends = Vec::new();
    let runs = 5;
    for i in 0..runs {
        let start = Instant::now();
        let events = stream_turn(
            &api,
            json!({"text": text, "session": format!("long-{i}"), "stream": true}),
        )
        .await;
        let got: Vec<Instant> = of_type(&events, "delta").iter().map(|(t, _)| *t).collect();
        let (reached, fed) = {
            let log = proxy.log();
            (
                log.requests.last().unwrap().at,
                log.responses.last().unwrap().content_at.clone(),
            )
        };
        assert_eq!(got.len(), fed.len());
        split.0.push(reached - start);
        split.1.push(got[0].saturating_duration_since(fed[0]));
        let this: Vec<f64> = got
            .iter()
            .zip(&fed)
            .map(|(g, f)| ms(g.saturating_duration_since(*f)))
            .collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        ends.push((
            mean(&this[..50]),
            mean(&this[this.len() - 50..]),
            mean(&this),
        ));
        lat.extend(
            got.iter()
                .zip(&fed)
                .map(|(g, f)| g.saturating_duration_since(*f)),
        );
    }
    lat.sort();
    split.0.sort();
    split.1.sort();
    println!(
        "Per delta, {runs} × {MAX_TOKENS}-token streams through a proxy ({} deltas):",
        lat.len()
    );
    println!(
        "  chunk leaves the proxy → delta at the client: p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  max {:.3} ms",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.9)),
        ms(percentile(&lat, 0.99)),
        ms(*lat.last().unwrap())
    );
    for (i, (first, last, all)) in ends.iter().enumerate() {
        println!(
            "  run {i}: mean latency {all:.3} ms; first 50 deltas {first:.3} ms, last 50 deltas {last:.3} ms"
        );
    }
    println!(
        "  first turn of a new session (median): rpc sent → request at the server {:.2} ms; first chunk → first delta {:.2} ms",
        ms(percentile(&split.0, 0.5)),
        ms(percentile(&split.1, 0.5))
    );
}
