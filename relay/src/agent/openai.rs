//! The `openai` backend: any OpenAI-compatible `/v1/chat/completions` server
//! (llama.cpp's `llama-server`, Ollama, vLLM, LM Studio, OpenAI itself).
//!
//! One streaming request per turn: `POST {base_url}/chat/completions` with
//! `stream: true`. `choices[0].delta.content` becomes [`AgentEvent::Delta`],
//! `delta.reasoning_content` (or `delta.reasoning`) becomes
//! [`AgentEvent::Thinking`]; `[DONE]` or a `finish_reason` ends the reply.
//!
//! The request runs in a spawned task that forwards events over a channel.
//! When the pipeline drops the stream (abort), the task notices the closed
//! channel and drops the response, which closes the HTTP connection: the
//! server sees the disconnect and stops generating.
//!
//! Timeouts: `connect_timeout_secs` for the TCP/TLS connect, and
//! `idle_timeout_secs` for any silence while waiting for the response head
//! or between two chunks of the body. Both end the run as
//! [`AgentError::Timeout`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use loopchat_proto::{AgentInfo, ModelsResponse, Role, ThinkingLevel};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{
    Agent, AgentError, AgentEvent, AgentRequest, AgentStream, ChatTurn, ImageFile, ModelsFuture,
    SetupError,
};
use crate::config::OpenAiConfig;
use crate::diagnostics::{error_chain, read_start};
use crate::tools::ToolSpec;
use loopchat_proto::sse::{MAX_EVENT_BYTES, SseError, SseStream};

/// Bytes of an error response kept for the message.
const ERROR_BODY_KEEP: usize = 16 * 1024;
/// Characters of a server's text shown in an error message.
const SNIPPET: usize = 300;
/// How long the tail of a finished stream (`[DONE]`, the chunked
/// terminator) is read so that the connection can be reused.
const DRAIN: Duration = Duration::from_secs(2);

pub struct OpenAiAgent {
    config: Arc<OpenAiConfig>,
    client: reqwest::Client,
    /// `{base_url}/chat/completions`.
    endpoint: Arc<str>,
    /// The server's model list as last read, and when.
    models: Arc<tokio::sync::Mutex<Option<(std::time::Instant, ModelsResponse)>>>,
}

/// How long the server's model list is kept: the picker asks on every page
/// load and every turn that names a model checks it.
const MODELS_FRESH: Duration = Duration::from_secs(60);
/// A failed read is kept shorter, so a server that comes back is seen soon.
const MODELS_FAILED_FRESH: Duration = Duration::from_secs(5);
/// The longest wait for `GET /models`.
const MODELS_TIMEOUT: Duration = Duration::from_secs(5);
/// Model ids kept from one answer.
const MODELS_MAX: usize = 500;

impl OpenAiAgent {
    pub fn new(config: OpenAiConfig) -> Result<Self, SetupError> {
        let endpoint = endpoint(&config.base_url)?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs.max(1)))
            .tcp_nodelay(true)
            .build()
            .map_err(SetupError::HttpClient)?;
        Ok(Self {
            config: Arc::new(config),
            client,
            endpoint: endpoint.into(),
            models: Arc::default(),
        })
    }
}

/// The chat completions URL for a configured base URL (`…/v1`); a base URL
/// that already names the endpoint is taken as it is.
fn endpoint(base_url: &str) -> Result<String, SetupError> {
    let base = base_url.trim().trim_end_matches('/');
    let url = if base.ends_with("/chat/completions") {
        base.to_owned()
    } else {
        format!("{base}/chat/completions")
    };
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(url),
        _ => Err(SetupError::BadBaseUrl(base_url.to_owned())),
    }
}

impl Agent for OpenAiAgent {
    fn info(&self) -> AgentInfo {
        AgentInfo {
            backend: "openai".into(),
            model: Some(self.config.model.clone()),
        }
    }

    fn models(&self) -> ModelsFuture {
        let config = self.config.clone();
        let client = self.client.clone();
        let cache = self.models.clone();
        let url = self
            .endpoint
            .trim_end_matches("/chat/completions")
            .to_owned()
            + "/models";
        Box::pin(async move {
            let default = Some(config.model.clone());
            if !config.models.is_empty() {
                return ModelsResponse {
                    ok: true,
                    models: config.models.clone(),
                    default,
                    source: "config".into(),
                    error: None,
                };
            }
            // Held across the request: concurrent askers wait for one read.
            let mut cached = cache.lock().await;
            if let Some((at, list)) = cached.as_ref() {
                let fresh = if list.error.is_some() {
                    MODELS_FAILED_FRESH
                } else {
                    MODELS_FRESH
                };
                if at.elapsed() < fresh {
                    return list.clone();
                }
            }
            let (models, error) = match read_models(&client, &config, &url).await {
                Ok(m) => (m, None),
                Err(e) => {
                    tracing::warn!(url = %url, error = %e, "the model list could not be read");
                    (Vec::new(), Some(e))
                }
            };
            let list = ModelsResponse {
                ok: true,
                models,
                default,
                source: if error.is_some() { "none" } else { "server" }.into(),
                error,
            };
            *cached = Some((std::time::Instant::now(), list.clone()));
            list
        })
    }

    fn run(&self, request: AgentRequest) -> AgentStream {
        let (tx, rx) = mpsc::channel(64);
        let call = Call {
            client: self.client.clone(),
            config: self.config.clone(),
            url: self.endpoint.clone(),
        };
        tokio::spawn(async move {
            let outcome = tokio::select! {
                r = call.stream_reply(&request, &tx) => r,
                // The run was aborted: dropping stream_reply's future drops
                // the response and with it the connection.
                () = tx.closed() => return,
            };
            match outcome {
                Ok(Some(mut rest)) => {
                    // End the run now, then read the stream's tail so the
                    // connection goes back to the pool instead of being cut.
                    drop(tx);
                    let _ = tokio::time::timeout(DRAIN, async {
                        while let Some(Ok(_)) = rest.next().await {}
                    })
                    .await;
                }
                Ok(None) => {}
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}

/// `GET {base}/models`: the ids of `data` (OpenAI's list shape, which
/// llama.cpp, Ollama, vLLM and LM Studio answer with too).
async fn read_models(
    client: &reqwest::Client,
    config: &OpenAiConfig,
    url: &str,
) -> Result<Vec<String>, String> {
    let mut builder = client.get(url).timeout(MODELS_TIMEOUT);
    if let Some(key) = config.api_key.as_deref().filter(|k| !k.is_empty()) {
        builder = builder.bearer_auth(key);
    }
    let response = builder.send().await.map_err(|e| {
        if e.is_timeout() {
            format!("{url} did not answer within {} s", MODELS_TIMEOUT.as_secs())
        } else {
            format!("cannot read {url}: {}", error_chain(&e))
        }
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    let v: Value = response
        .json()
        .await
        .map_err(|_| format!("{url} did not answer with a JSON model list"))?;
    let Some(data) = v.get("data").and_then(Value::as_array) else {
        return Err(format!(
            "{url} did not answer with a model list (no `data`)"
        ));
    };
    Ok(data
        .iter()
        .filter_map(|m| m.get("id")?.as_str())
        .filter(|id| !id.is_empty() && id.chars().count() <= 200)
        .take(MODELS_MAX)
        .map(str::to_owned)
        .collect())
}

type Sender = mpsc::Sender<Result<AgentEvent, AgentError>>;

/// What can go wrong while reading the body.
#[derive(Debug)]
enum ReadError {
    Http(reqwest::Error),
    Idle,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(e) => f.write_str(&error_chain(e)),
            Self::Idle => f.write_str("idle timeout"),
        }
    }
}

type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, ReadError>> + Send>>;
type EventStream = Pin<Box<dyn Stream<Item = Result<String, SseError<ReadError>>> + Send>>;

struct Call {
    client: reqwest::Client,
    config: Arc<OpenAiConfig>,
    url: Arc<str>,
}

impl Call {
    /// Streams one reply into `tx`. On a complete reply, returns what is left
    /// of the event stream (to be drained) — or `None` when it is used up.
    async fn stream_reply(
        &self,
        request: &AgentRequest,
        tx: &Sender,
    ) -> Result<Option<EventStream>, AgentError> {
        let images = load_images(&request.history).await;
        let body = request_body(
            &self.config,
            request.model.as_deref(),
            &request.history,
            request.thinking,
            &images,
            &request.tools,
        );
        tracing::debug!(url = %self.url, model = %body["model"], run = %request.run_id, "openai request");
        let mut builder = self
            .client
            .post(&*self.url)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .json(&body);
        if let Some(key) = self.config.api_key.as_deref().filter(|k| !k.is_empty()) {
            builder = builder.bearer_auth(key);
        }
        if let Some(t) = request.tools_ended_at {
            tracing::debug!(target: "loopchat_relay::timing", step = "tool_end_to_request", us = t.elapsed().as_micros() as u64, "tool step cost");
        }
        // The head must come within connect + idle time.
        let head_wait =
            Duration::from_secs(self.config.connect_timeout_secs.max(1) + self.idle().as_secs());
        let response = match tokio::time::timeout(head_wait, builder.send()).await {
            Err(_) => {
                return Err(AgentError::Timeout(format!(
                    "{} sent no response within {} s",
                    self.url,
                    head_wait.as_secs()
                )));
            }
            Ok(Err(e)) => return Err(self.send_error(&e)),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let is_json = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let mut body = self.body_stream(response);
        if !status.is_success() {
            let bytes = read_start(&mut body, ERROR_BODY_KEEP).await;
            return Err(AgentError::Failed(http_error_message(
                &self.url, status, &bytes,
            )));
        }
        if is_json {
            // A server that ignores `stream: true` answers with one JSON
            // completion.
            return self.whole_reply(body, tx).await.map(|()| None);
        }

        let mut events: EventStream = Box::pin(SseStream::new(body));
        let mut seen_any = false;
        let mut calls = CallAssembler::default();
        loop {
            let (out, complete) = match step(events.next().await, seen_any) {
                Step::More(out) => (out, false),
                Step::Complete(out) => (out, true),
                Step::Failed(f) => return Err(failure(&self.url, f, |e| self.read_error(e))),
            };
            seen_any = true;
            let mut events_out = out.events;
            calls.add_all(out.pieces);
            if complete {
                events_out.extend(calls.finish().into_iter().map(AgentEvent::ToolCall));
            }
            for e in events_out {
                if tx.send(Ok(e)).await.is_err() {
                    return Ok(None);
                }
            }
            if complete {
                // The counts come after the end of the reply (OpenAI's
                // trailing usage chunk): read the tail for them, bounded.
                let tail = tokio::time::timeout(DRAIN, async {
                    while let Some(Ok(data)) = events.next().await {
                        match parse_data(&data) {
                            Ok(Parsed::Chunk { events: late, .. }) => {
                                for e in late {
                                    if matches!(e, AgentEvent::Usage { .. }) {
                                        let _ = tx.send(Ok(e)).await;
                                    }
                                }
                            }
                            Ok(Parsed::Done) | Err(_) => return,
                        }
                    }
                })
                .await;
                return Ok(tail.is_err().then_some(events));
            }
        }
    }

    fn idle(&self) -> Duration {
        Duration::from_secs(self.config.idle_timeout_secs.max(1))
    }

    /// The response body as byte chunks, failing after `idle` of silence.
    fn body_stream(&self, response: reqwest::Response) -> BodyStream {
        let idle = self.idle();
        let inner = Box::pin(response.bytes_stream());
        Box::pin(futures_util::stream::unfold(
            Some(inner),
            move |state| async move {
                let mut inner = state?;
                match tokio::time::timeout(idle, inner.next()).await {
                    Ok(Some(Ok(b))) => Some((Ok(b), Some(inner))),
                    Ok(Some(Err(e))) => Some((Err(ReadError::Http(e)), None)),
                    Ok(None) => None,
                    Err(_) => Some((Err(ReadError::Idle), None)),
                }
            },
        ))
    }

    /// A non-streamed completion (`choices[0].message`).
    async fn whole_reply(&self, mut body: BodyStream, tx: &Sender) -> Result<(), AgentError> {
        let mut bytes = Vec::new();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(b) => bytes.extend_from_slice(&b),
                Err(e) => return Err(self.read_error(e)),
            }
        }
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            AgentError::Failed(format!(
                "{} answered with JSON that could not be read: {}",
                self.url,
                snippet(&String::from_utf8_lossy(&bytes))
            ))
        })?;
        if let Some(m) = error_detail(&v) {
            return Err(AgentError::Failed(format!(
                "{} reported an error: {m}",
                self.url
            )));
        }
        let message = &v["choices"][0]["message"];
        if let Some(t) = reasoning_of(message) {
            let _ = tx.send(Ok(AgentEvent::Thinking(t))).await;
        }
        if let Some(t) = text_of(&message["content"]) {
            let _ = tx.send(Ok(AgentEvent::Delta(t))).await;
        }
        let mut calls = CallAssembler::default();
        calls.add_all(call_pieces(&message["tool_calls"]));
        for c in calls.finish() {
            let _ = tx.send(Ok(AgentEvent::ToolCall(c))).await;
        }
        if let Some(u) = usage_of(&v) {
            let _ = tx.send(Ok(u)).await;
        }
        Ok(())
    }

    fn send_error(&self, e: &reqwest::Error) -> AgentError {
        let url = &self.url;
        if e.is_connect() {
            if e.is_timeout() {
                return AgentError::Timeout(format!(
                    "could not connect to {url} within {} s",
                    self.config.connect_timeout_secs.max(1)
                ));
            }
            if has_io_kind(e, std::io::ErrorKind::ConnectionRefused) {
                return AgentError::Failed(format!(
                    "cannot connect to {url}: nothing is listening there (connection refused). \
                     Is the model server running? Check [agent.openai] base_url or LOOPCHAT_OPENAI_BASE_URL"
                ));
            }
            return AgentError::Failed(format!("cannot connect to {url}: {}", error_chain(e)));
        }
        if e.is_timeout() {
            return AgentError::Timeout(format!("{url} sent no response in time"));
        }
        AgentError::Failed(format!("the request to {url} failed: {}", error_chain(e)))
    }

    fn read_error(&self, e: ReadError) -> AgentError {
        match e {
            ReadError::Idle => AgentError::Timeout(format!(
                "{} sent nothing for {} s (idle timeout)",
                self.url,
                self.idle().as_secs()
            )),
            ReadError::Http(e) => AgentError::Failed(format!(
                "the connection to {} broke mid-reply: {}",
                self.url,
                error_chain(&e)
            )),
        }
    }
}

fn has_io_kind(e: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == kind
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// `text` trimmed and cut to [`SNIPPET`] characters.
fn snippet(text: &str) -> String {
    let t = text.trim();
    let mut out: String = t.chars().take(SNIPPET).collect();
    if out.len() < t.len() {
        out.push('…');
    }
    out
}

/// The human message of an error response: `error.message` (OpenAI,
/// llama.cpp, vLLM), `error` as a string (Ollama), `detail` (FastAPI) or
/// `message`.
fn error_detail(v: &Value) -> Option<String> {
    let e = v.get("error")?;
    let m = match e {
        Value::String(s) => s.clone(),
        Value::Object(o) => match o.get("message") {
            Some(Value::String(s)) => s.clone(),
            _ => e.to_string(),
        },
        Value::Null => return None,
        other => other.to_string(),
    };
    Some(m)
}

fn http_error_message(url: &str, status: reqwest::StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let detail = serde_json::from_str::<Value>(&text).ok().and_then(|v| {
        error_detail(&v).or_else(|| {
            ["detail", "message"].iter().find_map(|k| {
                v.get(*k)
                    .map(|d| d.as_str().map_or_else(|| d.to_string(), str::to_owned))
            })
        })
    });
    let detail = match detail {
        Some(d) => snippet(&d),
        None if text.trim().is_empty() => "(empty body)".to_owned(),
        None => snippet(&text),
    };
    let hint = match status.as_u16() {
        401 | 403 => " — check the API key (LOOPCHAT_OPENAI_API_KEY or [agent.openai] api_key_env)",
        404 => " — check [agent.openai] base_url (it usually ends in /v1) and model",
        // The relay offers tools by default; some servers refuse them.
        _ if detail.to_ascii_lowercase().contains("tool") => {
            " — the server may not support tools (start llama-server with --jinja, or set [tools] enabled = false)"
        }
        _ => "",
    };
    format!("{url} answered HTTP {status}: {detail}{hint}")
}

/// Image files of the history as `data:` URLs, read once per request. An
/// unreadable file is left out (with a warning) rather than failing every
/// later turn of the session.
async fn load_images(history: &[ChatTurn]) -> HashMap<PathBuf, String> {
    let mut out = HashMap::new();
    for image in history
        .iter()
        .filter(|t| t.role == Role::User)
        .flat_map(|t| &t.images)
    {
        if out.contains_key(&image.path) {
            continue;
        }
        match tokio::fs::read(&image.path).await {
            Ok(bytes) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
                out.insert(
                    image.path.clone(),
                    format!("data:{};base64,{b64}", image.mime_type),
                );
            }
            Err(e) => {
                tracing::warn!(path = %image.path.display(), error = %e, "attachment left out of the model request");
            }
        }
    }
    out
}

fn role_name(role: Role) -> Option<&'static str> {
    Some(match role {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::System => "system",
        Role::ToolResult => return None,
    })
}

/// `thinking` as the `reasoning_effort` value; `None` for off.
fn reasoning_effort(thinking: ThinkingLevel) -> Option<&'static str> {
    match thinking {
        ThinkingLevel::Off => None,
        level => Some(level.as_str()),
    }
}

/// The JSON body of a streaming chat completion request. `images` maps an
/// attachment path to its `data:` URL (see [`load_images`]).
fn request_body(
    config: &OpenAiConfig,
    model: Option<&str>,
    history: &[ChatTurn],
    thinking: ThinkingLevel,
    images: &HashMap<PathBuf, String>,
    tools: &[ToolSpec],
) -> Value {
    let answered = answered_calls(history);
    let mut messages = Vec::with_capacity(history.len() + 1);
    if let Some(system) = config
        .system_prompt
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        messages.push(json!({"role": "system", "content": system}));
    }
    for turn in history {
        if turn.role == Role::ToolResult {
            if let Some(id) = turn
                .tool_call_id
                .as_deref()
                .filter(|id| answered.contains(*id))
            {
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": turn.text}));
                if !turn.data_images.is_empty() {
                    // Tool messages carry text only; the images follow as
                    // the user's, as pi does for this API.
                    let mut parts = vec![
                        json!({"type": "text", "text": "Attached image(s) from tool result:"}),
                    ];
                    parts.extend(
                        turn.data_images
                            .iter()
                            .map(|u| json!({"type": "image_url", "image_url": {"url": u}})),
                    );
                    messages.push(json!({"role": "user", "content": parts}));
                }
            }
            continue;
        }
        let Some(role) = role_name(turn.role) else {
            continue;
        };
        let calls: Vec<&super::ToolCall> = turn
            .tool_calls
            .iter()
            .filter(|c| answered.contains(c.id.as_str()))
            .collect();
        if turn.role == Role::Assistant && !calls.is_empty() {
            let calls: Vec<Value> = calls
                .iter()
                .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                .collect();
            // `content: ""`, not null: llama.cpp's Python server answers
            // 500 to a null content.
            messages.push(json!({"role": "assistant", "content": turn.text, "tool_calls": calls}));
            continue;
        }
        let urls: Vec<&String> = if turn.role == Role::User {
            turn.images
                .iter()
                .filter_map(|i: &ImageFile| images.get(&i.path))
                .collect()
        } else {
            Vec::new()
        };
        let content = if urls.is_empty() {
            Value::String(turn.text.clone())
        } else {
            let mut parts = Vec::with_capacity(urls.len() + 1);
            if !turn.text.trim().is_empty() {
                parts.push(json!({"type": "text", "text": turn.text}));
            }
            for url in urls {
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            Value::Array(parts)
        };
        messages.push(json!({"role": role, "content": content}));
    }
    let mut body = Map::new();
    body.insert("model".into(), model.unwrap_or(&config.model).into());
    body.insert("messages".into(), messages.into());
    body.insert("stream".into(), true.into());
    // The token counts of the reply, for its stats (Decision 81).
    body.insert("stream_options".into(), json!({"include_usage": true}));
    if let Some(n) = config.max_tokens {
        body.insert("max_tokens".into(), n.into());
    }
    if let Some(t) = config.temperature {
        // Through the decimal form, so 0.7 goes out as 0.7, not 0.699999988.
        let t: f64 = t.to_string().parse().unwrap_or(f64::from(t));
        body.insert("temperature".into(), t.into());
    }
    if let Some(effort) = reasoning_effort(thinking) {
        body.insert("reasoning_effort".into(), effort.into());
    }
    if !tools.is_empty() {
        let list: Vec<Value> = tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
        body.insert("tools".into(), list.into());
    }
    Value::Object(body)
}

/// The ids of tool calls that have both their call and their result in the
/// history. Only those are sent: the API refuses a result without its call
/// and a call without its result (a history window can cut between them,
/// and a run killed mid-step leaves a call unanswered).
fn answered_calls(history: &[ChatTurn]) -> std::collections::HashSet<&str> {
    let results: std::collections::HashSet<&str> = history
        .iter()
        .filter(|t| t.role == Role::ToolResult)
        .filter_map(|t| t.tool_call_id.as_deref())
        .collect();
    history
        .iter()
        .flat_map(|t| &t.tool_calls)
        .map(|c| c.id.as_str())
        .filter(|id| results.contains(id))
        .collect()
}

/// A piece of a streamed tool call (`delta.tool_calls[i]`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct CallPiece {
    index: usize,
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

/// The pieces of a `tool_calls` array (a delta's or a whole message's).
fn call_pieces(v: &Value) -> Vec<CallPiece> {
    let Some(list) = v.as_array() else {
        return Vec::new();
    };
    list.iter()
        .enumerate()
        .filter_map(|(pos, c)| {
            let f = c.get("function")?;
            let index = c
                .get("index")
                .and_then(Value::as_u64)
                .map_or(pos, |i| i as usize);
            let nonempty = |v: Option<&Value>| {
                v.and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            let arguments = match f.get("arguments") {
                Some(Value::String(s)) => s.clone(),
                // Some servers send the arguments as an object.
                Some(o @ Value::Object(_)) => o.to_string(),
                _ => String::new(),
            };
            Some(CallPiece {
                index,
                id: nonempty(c.get("id")),
                name: nonempty(f.get("name")),
                arguments,
            })
        })
        .collect()
}

/// Tool calls assembled from their pieces, by index. The first id wins;
/// a name is taken once and a repeated one (some servers repeat id and
/// name in every chunk) is not appended again; arguments are appended.
#[derive(Debug, Default)]
struct CallAssembler {
    calls: Vec<(usize, Option<String>, String, String)>,
}

/// Arguments kept for one call; more is cut (the model is told the JSON is
/// invalid) rather than held.
const MAX_CALL_ARGUMENT_BYTES: usize = 4 * 1024 * 1024;

impl CallAssembler {
    fn add_all(&mut self, pieces: Vec<CallPiece>) {
        for p in pieces {
            let pos = match self.calls.iter().position(|c| c.0 == p.index) {
                Some(pos) => pos,
                None => {
                    self.calls
                        .push((p.index, None, String::new(), String::new()));
                    self.calls.len() - 1
                }
            };
            let call = &mut self.calls[pos];
            if call.1.is_none() {
                call.1 = p.id;
            }
            if let Some(name) = p.name
                && call.2 != name
            {
                call.2.push_str(&name);
            }
            if call.3.len() + p.arguments.len() <= MAX_CALL_ARGUMENT_BYTES {
                call.3.push_str(&p.arguments);
            }
        }
    }

    /// The calls in index order; a call without an id gets one, and ids are
    /// made unique within the reply.
    fn finish(&mut self) -> Vec<super::ToolCall> {
        let mut calls = std::mem::take(&mut self.calls);
        calls.sort_by_key(|c| c.0);
        let mut seen = std::collections::HashSet::new();
        calls
            .into_iter()
            .map(|(index, id, name, arguments)| {
                let mut id = id.unwrap_or_else(|| format!("call_{index}"));
                while !seen.insert(id.clone()) {
                    id.push('_');
                }
                super::ToolCall {
                    id,
                    name,
                    arguments,
                }
            })
            .collect()
    }
}

/// What one item of the reply's event stream means for the run.
#[derive(Debug)]
enum Step<E> {
    /// Events to pass on; the reply goes on.
    More(Out),
    /// The last events: `[DONE]` or a `finish_reason` ended the reply.
    Complete(Out),
    Failed(Failure<E>),
}

/// What one chunk adds: events to pass on and pieces of tool calls.
#[derive(Debug, Default, PartialEq)]
struct Out {
    events: Vec<AgentEvent>,
    pieces: Vec<CallPiece>,
}

/// Why a streamed reply failed, before it is worded for the user.
#[derive(Debug)]
enum Failure<E> {
    Stream(SseError<E>),
    /// A `data:` payload that is not a completion chunk (the sentence).
    Data(String),
    /// The stream ended after some events but before the reply was complete.
    EndedEarly,
    /// The stream ended without any event.
    Empty,
}

/// Reads the next item of the event stream (`None`: it ended); `seen_any`
/// tells whether an event came before. Pure, so that the fuzz target and
/// [`Call::stream_reply`] read a reply the same way.
fn step<E>(item: Option<Result<String, SseError<E>>>, seen_any: bool) -> Step<E> {
    let data = match item {
        Some(Ok(e)) => e,
        Some(Err(e)) => return Step::Failed(Failure::Stream(e)),
        None if seen_any => return Step::Failed(Failure::EndedEarly),
        None => return Step::Failed(Failure::Empty),
    };
    match parse_data(&data) {
        Err(detail) => Step::Failed(Failure::Data(detail)),
        Ok(Parsed::Done) => Step::Complete(Out::default()),
        Ok(Parsed::Chunk {
            events,
            pieces,
            finished,
        }) => {
            let out = Out { events, pieces };
            if finished {
                Step::Complete(out)
            } else {
                Step::More(out)
            }
        }
    }
}

/// A failure as the run's error; `transport` words the body's own errors.
fn failure<E>(url: &str, f: Failure<E>, transport: impl FnOnce(E) -> AgentError) -> AgentError {
    match f {
        Failure::Stream(SseError::Transport(e)) => transport(e),
        Failure::Stream(SseError::Utf8) => {
            AgentError::Failed(format!("{url} sent a reply stream that is not valid UTF-8"))
        }
        Failure::Stream(SseError::TooLarge) => AgentError::Failed(format!(
            "{url} sent a reply stream with an event of more than {} MiB; \
             it is not read further",
            MAX_EVENT_BYTES >> 20
        )),
        Failure::Data(detail) => AgentError::Failed(format!("{url}: {detail}")),
        Failure::EndedEarly => AgentError::Failed(format!(
            "the reply stream from {url} ended before the reply was complete \
             (no finish_reason and no [DONE]): the server dropped the connection mid-reply"
        )),
        Failure::Empty => AgentError::Failed(format!(
            "{url} closed the stream without sending anything \
             (the prompt may be too long for the model's context)"
        )),
    }
}

/// A whole streamed reply body, given as the chunks it arrived in, read the
/// way [`Call::stream_reply`] reads one: the events passed on, then `Ok` for
/// a complete reply or the run's error. Bytes after the end are not looked
/// at (the real run only drains them).
#[cfg(feature = "fuzzing")]
pub(crate) fn decode_reply<B: AsRef<[u8]>>(
    url: &str,
    chunks: impl IntoIterator<Item = B>,
) -> (Vec<AgentEvent>, Result<(), AgentError>) {
    use futures_util::FutureExt as _;
    let mut events = SseStream::new(futures_util::stream::iter(
        chunks.into_iter().map(Ok::<B, std::convert::Infallible>),
    ));
    let mut out = Vec::new();
    let mut seen_any = false;
    let mut calls = CallAssembler::default();
    loop {
        // An iterator-backed stream is always ready.
        let Some(item) = events.next().now_or_never() else {
            unreachable!("an in-memory stream is never pending");
        };
        match step(item, seen_any) {
            Step::More(e) => {
                out.extend(e.events);
                calls.add_all(e.pieces);
            }
            Step::Complete(e) => {
                out.extend(e.events);
                calls.add_all(e.pieces);
                out.extend(calls.finish().into_iter().map(AgentEvent::ToolCall));
                return (out, Ok(()));
            }
            Step::Failed(f) => return (out, Err(failure(url, f, |e| match e {}))),
        }
        seen_any = true;
    }
}

/// One `data:` payload of the stream.
#[derive(Debug, PartialEq)]
enum Parsed {
    /// `[DONE]`.
    Done,
    Chunk {
        events: Vec<AgentEvent>,
        pieces: Vec<CallPiece>,
        /// A `finish_reason` was set: the reply is complete.
        finished: bool,
    },
}

/// Reads one SSE `data` payload. The error is a sentence for the user.
fn parse_data(data: &str) -> Result<Parsed, String> {
    let data = data.trim();
    if data == "[DONE]" {
        return Ok(Parsed::Done);
    }
    let v: Value = serde_json::from_str(data).map_err(|_| {
        format!(
            "the reply stream carried data that is not JSON: {}",
            snippet(data)
        )
    })?;
    if !v.is_object() {
        return Err(format!(
            "the reply stream carried JSON that is not a completion chunk: {}",
            snippet(data)
        ));
    }
    if let Some(m) = error_detail(&v) {
        return Err(format!("the server reported an error mid-reply: {m}"));
    }
    let mut events = Vec::new();
    let mut pieces = Vec::new();
    let mut finished = false;
    // `choices` is empty in a trailing usage chunk.
    if let Some(choice) = v.get("choices").and_then(|c| c.get(0)) {
        let delta = &choice["delta"];
        if let Some(t) = reasoning_of(delta) {
            events.push(AgentEvent::Thinking(t));
        }
        if let Some(t) = text_of(&delta["content"]) {
            events.push(AgentEvent::Delta(t));
        }
        pieces = call_pieces(&delta["tool_calls"]);
        finished = choice
            .get("finish_reason")
            .is_some_and(|r| r.as_str().is_some_and(|s| !s.is_empty()));
    }
    events.extend(usage_of(&v));
    Ok(Parsed::Chunk {
        events,
        pieces,
        finished,
    })
}

/// The counts of a chunk's or completion's `usage` (with llama.cpp's
/// `timings.predicted_per_second` when it is there).
fn usage_of(v: &Value) -> Option<AgentEvent> {
    let u = v.get("usage")?;
    let output = u.get("completion_tokens")?.as_u64()?;
    Some(AgentEvent::Usage {
        input: u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
        output,
        tokens_per_sec: v
            .get("timings")
            .and_then(|t| t.get("predicted_per_second"))
            .and_then(Value::as_f64)
            .filter(|r| r.is_finite() && *r > 0.0),
    })
}

/// Reasoning text of a delta or message: `reasoning_content` (llama.cpp,
/// DeepSeek, vLLM) or `reasoning` (Ollama, OpenRouter, newer vLLM).
fn reasoning_of(v: &Value) -> Option<String> {
    text_of(&v["reasoning_content"]).or_else(|| text_of(&v["reasoning"]))
}

/// Non-empty text of a content value: a string, or an array of text parts.
fn text_of(v: &Value) -> Option<String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn turn(role: Role, text: &str) -> ChatTurn {
        ChatTurn {
            role,
            text: text.into(),
            images: vec![],
            ..ChatTurn::new(Role::User, String::new())
        }
    }

    fn config(base_url: &str) -> OpenAiConfig {
        OpenAiConfig {
            base_url: base_url.into(),
            model: "m".into(),
            ..OpenAiConfig::default()
        }
    }

    #[test]
    fn endpoint_from_base_url() {
        assert_eq!(
            endpoint("http://h:1/v1").unwrap(),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            endpoint("http://h:1/v1/ ").unwrap(),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            endpoint("https://api.openai.com/v1/chat/completions").unwrap(),
            "https://api.openai.com/v1/chat/completions"
        );
        assert!(endpoint("127.0.0.1:8080/v1").is_err());
        assert!(endpoint("ftp://h/v1").is_err());
        assert!(OpenAiAgent::new(config("nope")).is_err());
    }

    #[test]
    fn body_minimal() {
        let body = request_body(
            &config("http://h/v1"),
            None,
            &[turn(Role::User, "hi")],
            ThinkingLevel::Off,
            &HashMap::new(),
            &[],
        );
        assert_eq!(
            body,
            json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": [{"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn body_full() {
        let mut c = config("http://h/v1");
        c.system_prompt = Some("Be brief.".into());
        c.max_tokens = Some(300);
        c.temperature = Some(0.7);
        c.api_key = Some("sk-secret".into());
        let img = ImageFile {
            mime_type: "image/png".into(),
            path: "/x/a.png".into(),
        };
        let missing = ImageFile {
            mime_type: "image/png".into(),
            path: "/x/gone.png".into(),
        };
        let history = vec![
            turn(Role::System, "sys note"),
            ChatTurn {
                role: Role::User,
                text: "look".into(),
                images: vec![img.clone(), missing],
                ..ChatTurn::new(Role::User, String::new())
            },
            turn(Role::Assistant, "a cat"),
            turn(Role::ToolResult, "ignored"),
            ChatTurn {
                role: Role::User,
                text: " ".into(),
                images: vec![img],
                ..ChatTurn::new(Role::User, String::new())
            },
        ];
        let images = HashMap::from([(
            PathBuf::from("/x/a.png"),
            "data:image/png;base64,AAA".to_owned(),
        )]);
        let body = request_body(&c, None, &history, ThinkingLevel::High, &images, &[]);
        let image_part =
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}});
        assert_eq!(
            body,
            json!({
                "model": "m",
                "stream": true,
                "stream_options": {"include_usage": true},
                "max_tokens": 300,
                "temperature": 0.7,
                "reasoning_effort": "high",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "system", "content": "sys note"},
                    {"role": "user", "content": [{"type": "text", "text": "look"}, image_part]},
                    {"role": "assistant", "content": "a cat"},
                    {"role": "user", "content": [image_part]},
                ]
            })
        );
        // The key goes in a header, never into the body.
        assert!(!body.to_string().contains("sk-secret"));
    }

    #[test]
    fn tool_calls_assemble_from_pieces() {
        // llama-cpp-python repeats id and name in every chunk; OpenAI sends
        // them once; arguments come in pieces either way.
        let chunk = |id: &str, name: &str, args: &str| {
            format!(
                r#"{{"choices":[{{"delta":{{"content":null,"tool_calls":[{{"index":0,"id":"{id}","type":"function","function":{{"name":"{name}","arguments":"{args}"}}}}]}},"finish_reason":null}}]}}"#
            )
        };
        let repeated = [
            chunk("call_a", "write", "{\\\"pa"),
            chunk("call_a", "write", "th\\\": \\\"x\\\"}"),
        ];
        let once = [
            chunk("call_a", "write", "{\\\"pa"),
            chunk("", "", "th\\\": \\\"x\\\"}"),
        ];
        for chunks in [repeated, once] {
            let mut body = String::new();
            for c in &chunks {
                body.push_str(&format!("data: {c}\n\n"));
            }
            body.push_str("data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n");
            let (events, end) = decode_reply("u", [body.as_bytes()]);
            end.unwrap();
            assert_eq!(
                events,
                vec![AgentEvent::ToolCall(super::super::ToolCall {
                    id: "call_a".into(),
                    name: "write".into(),
                    arguments: r#"{"path": "x"}"#.into(),
                })]
            );
        }
        // Two calls by index, one without an id; duplicate ids made unique.
        let mut a = CallAssembler::default();
        a.add_all(vec![
            CallPiece {
                index: 1,
                id: None,
                name: Some("bash".into()),
                arguments: "{}".into(),
            },
            CallPiece {
                index: 0,
                id: Some("c".into()),
                name: Some("read".into()),
                arguments: "{".into(),
            },
            CallPiece {
                index: 0,
                id: None,
                name: None,
                arguments: "}".into(),
            },
            CallPiece {
                index: 2,
                id: Some("c".into()),
                name: Some("edit".into()),
                arguments: String::new(),
            },
        ]);
        let calls = a.finish();
        let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["c", "call_1", "c_"]);
        assert_eq!(calls[0].arguments, "{}");
        assert_eq!(calls[1].name, "bash");
    }

    #[test]
    fn body_with_tools_and_results() {
        let tools = [ToolSpec {
            name: "read".into(),
            description: "d".into(),
            parameters: json!({"type": "object"}),
        }];
        let call = |id: &str| super::super::ToolCall {
            id: id.into(),
            name: "read".into(),
            arguments: r#"{"path":"a"}"#.into(),
        };
        let mut asked = turn(Role::Assistant, "");
        asked.tool_calls = vec![call("c1"), call("c2")];
        let mut result = turn(Role::ToolResult, "file text");
        result.tool_call_id = Some("c1".into());
        result.data_images = vec!["data:image/png;base64,AA".into()];
        let mut orphan = turn(Role::ToolResult, "lost");
        orphan.tool_call_id = Some("c9".into());
        let history = vec![orphan, turn(Role::User, "hi"), asked, result];
        let body = request_body(
            &config("http://h/v1"),
            None,
            &history,
            ThinkingLevel::Off,
            &HashMap::new(),
            &tools,
        );
        assert_eq!(
            body["tools"][0],
            json!({"type": "function", "function": {"name": "read", "description": "d", "parameters": {"type": "object"}}})
        );
        let m = body["messages"].as_array().unwrap();
        assert_eq!(m.len(), 4, "{m:?}");
        assert_eq!(m[0]["role"], "user");
        // content "" (never null) beside tool_calls; only the answered call.
        assert_eq!(
            m[1],
            json!({"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "read", "arguments": "{\"path\":\"a\"}"}}]})
        );
        assert_eq!(
            m[2],
            json!({"role": "tool", "tool_call_id": "c1", "content": "file text"})
        );
        assert_eq!(m[3]["role"], "user");
        assert_eq!(
            m[3]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AA"
        );
        // No tools: no `tools` key.
        let body = request_body(
            &config("http://h/v1"),
            None,
            &[],
            ThinkingLevel::Off,
            &HashMap::new(),
            &[],
        );
        assert!(body.get("tools").is_none());
    }

    #[test]
    fn thinking_levels() {
        let effort = |t| {
            request_body(&config("http://h/v1"), None, &[], t, &HashMap::new(), &[])
                .get("reasoning_effort")
                .cloned()
        };
        assert_eq!(effort(ThinkingLevel::Off), None);
        for (level, s) in [
            (ThinkingLevel::Minimal, "minimal"),
            (ThinkingLevel::Low, "low"),
            (ThinkingLevel::Medium, "medium"),
            (ThinkingLevel::High, "high"),
        ] {
            assert_eq!(effort(level), Some(json!(s)));
        }
    }

    #[tokio::test]
    async fn images_are_data_urls() {
        let dir = std::env::temp_dir().join(format!("loopchat-openai-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.png");
        std::fs::write(&path, b"\x89PNG").unwrap();
        let history = vec![ChatTurn {
            role: Role::User,
            text: "x".into(),
            images: vec![
                ImageFile {
                    mime_type: "image/png".into(),
                    path: path.clone(),
                },
                ImageFile {
                    mime_type: "image/png".into(),
                    path: dir.join("missing.png"),
                },
            ],
            ..ChatTurn::new(Role::User, String::new())
        }];
        let images = load_images(&history).await;
        assert_eq!(images.len(), 1);
        assert_eq!(images[&path], "data:image/png;base64,iVBORw==");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn chunk(events: Vec<AgentEvent>, finished: bool) -> Parsed {
        Parsed::Chunk {
            events,
            pieces: Vec::new(),
            finished,
        }
    }

    #[test]
    fn chunks() {
        use AgentEvent::{Delta, Thinking};
        assert_eq!(parse_data("[DONE]"), Ok(Parsed::Done));
        assert_eq!(parse_data(" [DONE] "), Ok(Parsed::Done));
        // llama.cpp's first chunk: the role only.
        assert_eq!(
            parse_data(
                r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#
            ),
            Ok(chunk(vec![], false))
        );
        assert_eq!(
            parse_data(r#"{"choices":[{"delta":{"content":"Hel"},"finish_reason":null}]}"#),
            Ok(chunk(vec![Delta("Hel".into())], false))
        );
        assert_eq!(
            parse_data(r#"{"choices":[{"delta":{"content":null,"reasoning_content":"hmm"}}]}"#),
            Ok(chunk(vec![Thinking("hmm".into())], false))
        );
        assert_eq!(
            parse_data(r#"{"choices":[{"delta":{"reasoning":"so"}}]}"#),
            Ok(chunk(vec![Thinking("so".into())], false))
        );
        // Both names at once: counted once.
        assert_eq!(
            parse_data(
                r#"{"choices":[{"delta":{"reasoning_content":"a","reasoning":"a","content":"b"}}]}"#
            ),
            Ok(chunk(vec![Thinking("a".into()), Delta("b".into())], false))
        );
        assert_eq!(
            parse_data(r#"{"choices":[{"delta":{"content":"."},"finish_reason":"stop"}]}"#),
            Ok(chunk(vec![Delta(".".into())], true))
        );
        assert_eq!(
            parse_data(r#"{"choices":[{"delta":{},"finish_reason":"length"}]}"#),
            Ok(chunk(vec![], true))
        );
        // Content as parts; empty strings are no events.
        assert_eq!(
            parse_data(r#"{"choices":[{"delta":{"content":[{"type":"text","text":"x"}]}}]}"#),
            Ok(chunk(vec![Delta("x".into())], false))
        );
        assert_eq!(
            parse_data(r#"{"choices":[{"delta":{"content":""}}]}"#),
            Ok(chunk(vec![], false))
        );
        // OpenAI's trailing usage chunk: counts without the completion's
        // are no counts.
        assert_eq!(
            parse_data(r#"{"choices":[],"usage":{"total_tokens":3}}"#),
            Ok(chunk(vec![], false))
        );
        let usage = |input, output, tokens_per_sec| AgentEvent::Usage {
            input,
            output,
            tokens_per_sec,
        };
        assert_eq!(
            parse_data(
                r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#
            ),
            Ok(chunk(vec![usage(5, 7, None)], false))
        );
        // llama.cpp: the counts and its own speed on the last chunk.
        assert_eq!(
            parse_data(
                r#"{"choices":[{"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":2,"completion_tokens":3},"timings":{"predicted_per_second":41.5}}"#
            ),
            Ok(chunk(vec![usage(2, 3, Some(41.5))], true))
        );
        let e = parse_data("{not json").unwrap_err();
        assert!(e.contains("not JSON") && e.contains("{not json"), "{e}");
        let e = parse_data("42").unwrap_err();
        assert!(e.contains("not a completion chunk"), "{e}");
        let e = parse_data(r#"{"error":{"message":"out of memory","type":"server_error"}}"#)
            .unwrap_err();
        assert_eq!(e, "the server reported an error mid-reply: out of memory");
        assert!(
            parse_data(r#"{"error":"boom"}"#)
                .unwrap_err()
                .ends_with("boom")
        );
        assert!(parse_data(r#"{"error":null,"choices":[]}"#).is_ok());
    }

    #[test]
    fn http_errors() {
        use reqwest::StatusCode;
        let m = http_error_message(
            "http://h/v1/chat/completions",
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":{"message":"bad role","type":"internal_server_error"}}"#,
        );
        assert_eq!(
            m,
            "http://h/v1/chat/completions answered HTTP 500 Internal Server Error: bad role"
        );
        let m = http_error_message("u", StatusCode::NOT_FOUND, br#"{"detail":"Not Found"}"#);
        assert!(
            m.starts_with("u answered HTTP 404 Not Found: Not Found — check"),
            "{m}"
        );
        let m = http_error_message("u", StatusCode::BAD_GATEWAY, b"  <html>oops</html>\n");
        assert_eq!(m, "u answered HTTP 502 Bad Gateway: <html>oops</html>");
        let m = http_error_message(
            "u",
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":{"message":"tools param requires --jinja flag"}}"#,
        );
        assert!(
            m.contains("--jinja") && m.contains("[tools] enabled = false"),
            "{m}"
        );
        let m = http_error_message("u", StatusCode::UNAUTHORIZED, b"");
        assert!(m.contains("(empty body)") && m.contains("API key"), "{m}");
        let long = "x".repeat(5000);
        let m = http_error_message("u", StatusCode::BAD_REQUEST, long.as_bytes());
        assert!(m.len() < 400 && m.ends_with('…'), "{m}");
    }

    // ---- the HTTP side, against a scripted local server ----

    fn request(text: &str) -> AgentRequest {
        AgentRequest {
            session_key: "s".into(),
            run_id: "r".into(),
            history: vec![turn(Role::User, text)],
            thinking: ThinkingLevel::Off,
            transcript: None,
            abort: Default::default(),
            tools: std::sync::Arc::from(Vec::new()),
            tools_ended_at: None,
            model: None,
        }
    }

    async fn collect(agent: &OpenAiAgent) -> (Vec<AgentEvent>, Option<AgentError>) {
        let mut s = agent.run(request("hi"));
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(e) => out.push(e),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    /// Serves one connection: reads the request head and body, then writes
    /// `response` and closes. Returns the base URL and the request text.
    async fn serve_once(response: Vec<u8>) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let text = read_request(&mut sock).await;
            sock.write_all(&response).await.unwrap();
            sock.shutdown().await.unwrap();
            text
        });
        (base, handle)
    }

    async fn read_request(sock: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let mut tmp = [0u8; 4096];
        loop {
            let n = sock.read(&mut tmp).await.unwrap();
            assert!(n > 0, "client closed early");
            buf.extend_from_slice(&tmp[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(head_end) = text.find("\r\n\r\n") {
                let len: usize = text[..head_end]
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= head_end + 4 + len {
                    return text;
                }
            }
        }
    }

    fn sse(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n{body}"
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn streams_and_sends_the_key() {
        let (base, server) = serve_once(sse(concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\r\n\r\n",
            ": keep-alive comment\r\n\r\n",
            "data: {\"choices\":[{\"delta\":{\"reasoning_content\":\"think\"}}]}\r\n\r\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        )))
        .await;
        let mut c = config(&base);
        c.api_key = Some("sk-test".into());
        let agent = OpenAiAgent::new(c).unwrap();
        let (events, err) = collect(&agent).await;
        assert_eq!(err, None);
        assert_eq!(
            events,
            vec![
                AgentEvent::Thinking("think".into()),
                AgentEvent::Delta("Hel".into()),
                AgentEvent::Delta("lo".into())
            ]
        );
        let req = server.await.unwrap();
        assert!(
            req.starts_with("POST /v1/chat/completions HTTP/1.1"),
            "{req}"
        );
        assert!(
            req.to_ascii_lowercase()
                .contains("authorization: bearer sk-test"),
            "{req}"
        );
        assert!(req.contains(r#""stream":true"#), "{req}");
    }

    #[tokio::test]
    async fn json_reply_when_the_server_does_not_stream() {
        let body = r#"{"choices":[{"message":{"role":"assistant","content":"whole"},"finish_reason":"stop"}]}"#;
        let (base, _server) = serve_once(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes(),
        )
        .await;
        let agent = OpenAiAgent::new(config(&base)).unwrap();
        assert_eq!(
            collect(&agent).await,
            (vec![AgentEvent::Delta("whole".into())], None)
        );
    }

    #[tokio::test]
    async fn failures_are_specific() {
        // Nothing listens.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let agent = OpenAiAgent::new(config(&format!("http://127.0.0.1:{port}/v1"))).unwrap();
        let (_, err) = collect(&agent).await;
        let Some(AgentError::Failed(m)) = err else {
            panic!("{err:?}")
        };
        assert!(
            m.contains(&format!("http://127.0.0.1:{port}/v1/chat/completions")),
            "{m}"
        );
        assert!(m.contains("nothing is listening"), "{m}");

        // The stream stops without an end.
        let (base, _s) = serve_once(sse(
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
        ))
        .await;
        let agent = OpenAiAgent::new(config(&base)).unwrap();
        let (events, err) = collect(&agent).await;
        assert_eq!(events, vec![AgentEvent::Delta("a".into())]);
        assert!(
            matches!(&err, Some(AgentError::Failed(m)) if m.contains("ended before the reply was complete")),
            "{err:?}"
        );

        // An empty 200 stream (llama.cpp's answer to a prompt that is too long).
        let (base, _s) = serve_once(sse("")).await;
        let agent = OpenAiAgent::new(config(&base)).unwrap();
        let (_, err) = collect(&agent).await;
        assert!(
            matches!(&err, Some(AgentError::Failed(m)) if m.contains("without sending anything")),
            "{err:?}"
        );

        // Garbage.
        let (base, _s) = serve_once(sse("data: <html>\n\n")).await;
        let agent = OpenAiAgent::new(config(&base)).unwrap();
        let (_, err) = collect(&agent).await;
        assert!(
            matches!(&err, Some(AgentError::Failed(m)) if m.contains("not JSON: <html>")),
            "{err:?}"
        );

        // An HTTP error.
        let (base, _s) = serve_once(
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n{\"error\":{\"message\":\"context too long\"}}".to_vec(),
        )
        .await;
        let agent = OpenAiAgent::new(config(&base)).unwrap();
        let (_, err) = collect(&agent).await;
        assert!(
            matches!(&err, Some(AgentError::Failed(m)) if m.ends_with("answered HTTP 400 Bad Request: context too long")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn idle_timeout_and_drop_close_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let mut c = config(&base);
        c.idle_timeout_secs = 1;
        c.connect_timeout_secs = 1;
        let agent = OpenAiAgent::new(c).unwrap();

        // A server that sends the head and one chunk, then falls silent.
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            read_request(&mut sock).await;
            sock.write_all(&sse(
                "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            ))
            .await
            .unwrap();
            // Wait for the client to give up: EOF.
            let mut b = [0u8; 16];
            let n = sock.read(&mut b).await.unwrap_or(0);
            (n, listener)
        });
        let started = std::time::Instant::now();
        let (events, err) = collect(&agent).await;
        assert_eq!(events, vec![AgentEvent::Delta("a".into())]);
        assert!(
            matches!(&err, Some(AgentError::Timeout(m)) if m.contains("idle timeout")),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let (n, listener) = server.await.unwrap();
        assert_eq!(n, 0, "the connection is closed after the timeout");

        // Dropping the stream mid-reply closes the connection at once.
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            read_request(&mut sock).await;
            sock.write_all(&sse(
                "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            ))
            .await
            .unwrap();
            let mut b = [0u8; 16];
            sock.read(&mut b).await.unwrap_or(0)
        });
        let mut s = agent.run(request("hi"));
        assert_eq!(s.next().await, Some(Ok(AgentEvent::Delta("a".into()))));
        let dropped = std::time::Instant::now();
        drop(s);
        assert_eq!(server.await.unwrap(), 0);
        assert!(
            dropped.elapsed() < Duration::from_millis(500),
            "{:?}",
            dropped.elapsed()
        );
    }

    /// Latency the backend adds per chunk: from the server's write to the
    /// event coming out of the stream. Run with
    /// `cargo test -p loopchat-relay --lib agent::openai -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "measurement"]
    async fn chunk_latency() {
        const N: usize = 300;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/v1", listener.local_addr().unwrap());
        let sent = Arc::new(parking_lot::Mutex::new(Vec::with_capacity(N)));
        let s = sent.clone();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            sock.set_nodelay(true).unwrap();
            read_request(&mut sock).await;
            sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
                .await
                .unwrap();
            for i in 0..N {
                let finish = if i + 1 == N { "\"stop\"" } else { "null" };
                let event = format!(
                    "data: {{\"choices\":[{{\"delta\":{{\"content\":\" w{i}\"}},\"finish_reason\":{finish}}}]}}\r\n\r\n"
                );
                let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                s.lock().push(std::time::Instant::now());
                sock.write_all(chunk.as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            sock.write_all(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
                .await
                .unwrap();
            let mut b = [0u8; 16];
            let _ = sock.read(&mut b).await;
        });
        let agent = OpenAiAgent::new(config(&base)).unwrap();
        let mut stream = agent.run(request("hi"));
        let mut got = Vec::with_capacity(N);
        while let Some(item) = stream.next().await {
            item.unwrap();
            got.push(std::time::Instant::now());
        }
        assert_eq!(got.len(), N);
        let sent = sent.lock();
        let mut lat: Vec<Duration> = got.iter().zip(sent.iter()).map(|(g, s)| *g - *s).collect();
        lat.sort();
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "openai backend, server write → AgentEvent, {N} chunks: p50 {:.0} µs, p90 {:.0} µs, p99 {:.0} µs, max {:.0} µs",
            us(lat[N / 2]),
            us(lat[N * 9 / 10]),
            us(lat[N * 99 / 100]),
            us(lat[N - 1])
        );
    }
}
