//! MCP servers (`[[mcp_servers]]`): each one is a supervised client
//! connection (rmcp) whose tools are offered as `server__tool`, under the
//! same policy and approval as the built-in ones.
//!
//! A supervisor task per server connects (spawns the stdio command,
//! `stdio.rs`, or opens a streamable-HTTP session, `http.rs`), initialises,
//! lists the tools and then waits for the connection to end (a child that
//! exits; an HTTP server that stops answering pings).
//! While it is down the server's tools are unavailable — left out of the
//! tools a request offers, and a call gets a sentence saying so — and it is
//! started again after a backoff that doubles up to [`MAX_BACKOFF`] (reset
//! once a connection has lived for [`STABLE_AFTER`]). A
//! `notifications/tools/list_changed` makes it list the tools again.

use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, Tool};
use rmcp::service::{NotificationContext, Peer, RoleClient, ServiceError};
use rmcp::{ClientHandler, ServiceExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Output, ToolSpec};

mod http;
mod stdio;

/// Between a server's name and its tool's name in `server__tool`.
pub const SEPARATOR: &str = "__";
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// One `[[mcp_servers]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// The prefix of its tools (`name__tool`): letters, digits, `-`, `_`.
    pub name: String,
    /// A stdio server: the program and its arguments…
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    /// …and variables added to the environment `bash` gets (which has no
    /// `LOOPCHAT_*` variable and not the relay's token).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A streamable-HTTP server: its URL (https, or http on loopback)…
    pub url: Option<String>,
    /// …and headers sent with every request (`Authorization`, say); their
    /// values are never logged or quoted in an error.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Longest wait for one tool call, seconds.
    #[serde(default = "default_call_timeout")]
    pub call_timeout_secs: u64,
}

fn default_call_timeout() -> u64 {
    120
}

impl McpServerConfig {
    pub fn validate(&self) -> Result<(), String> {
        let n = &self.name;
        if n.is_empty()
            || n.contains(SEPARATOR)
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "mcp_servers: the name {n:?} must be letters, digits, '-' or '_' (and no \"__\")"
            ));
        }
        match (&self.command, &self.url) {
            (Some(c), None) if !c.trim().is_empty() => {
                if self.headers.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "mcp_servers {n}: headers are for url servers; a command gets env"
                    ))
                }
            }
            (None, Some(url)) => {
                if !self.args.is_empty() || !self.env.is_empty() {
                    return Err(format!(
                        "mcp_servers {n}: args and env are for command servers; a url server gets headers"
                    ));
                }
                http::check_url(url).map_err(|e| format!("mcp_servers {n}: {e}"))?;
                http::header_map(&self.headers)
                    .map(drop)
                    .map_err(|e| format!("mcp_servers {n}: {e}"))
            }
            _ => Err(format!(
                "mcp_servers {n}: give exactly one of command (stdio) and url (streamable HTTP)"
            )),
        }
    }
}

/// A server's tools as last listed, while it is connected.
#[derive(Default)]
struct Live {
    peer: Option<Peer<RoleClient>>,
    tools: Vec<Tool>,
    /// Why the last connection failed or ended, for the model.
    last_error: Option<String>,
}

struct Server {
    config: McpServerConfig,
    live: RwLock<Live>,
    /// A call failed: an HTTP server is asked at once whether it is still
    /// there.
    nudge: Notify,
}

impl Server {
    fn set_tools(&self, tools: Vec<Tool>) {
        let mut live = self.live.write();
        live.tools = tools;
    }

    fn down(&self, why: String) {
        let mut live = self.live.write();
        live.peer = None;
        live.last_error = Some(why);
    }

    /// The sentence a call of `name` gets while the server is down.
    fn not_running(&self, name: &str, what: &str) -> String {
        let live = self.live.read();
        let server = &self.config.name;
        match &live.last_error {
            Some(why) => format!(
                "The MCP server {server} is not running (it is being restarted; {why}); {name} {what}."
            ),
            None => format!(
                "The MCP server {server} is not running (it is being restarted); {name} {what}."
            ),
        }
    }
}

/// A tool of a server, as listed.
#[derive(Debug, Clone)]
pub struct McpTool {
    pub server: String,
    pub spec: ToolSpec,
    /// The server is connected right now.
    pub available: bool,
}

/// Every configured MCP server.
pub struct McpHub {
    servers: Vec<Arc<Server>>,
    shutdown: CancellationToken,
}

/// What the clients are told about and do for the relay: they answer
/// `tools/list_changed` by listing again.
#[derive(Clone)]
struct Handler {
    server: Arc<Server>,
}

impl ClientHandler for Handler {
    async fn on_tool_list_changed(&self, context: NotificationContext<RoleClient>) {
        match context.peer.list_all_tools().await {
            Ok(tools) => {
                tracing::info!(server = %self.server.config.name, tools = tools.len(), "mcp tools changed");
                self.server.set_tools(tools);
            }
            Err(e) => {
                tracing::warn!(server = %self.server.config.name, error = %e, "mcp tools could not be listed again")
            }
        }
    }
}

impl McpHub {
    /// Starts a supervisor per server (they connect in the background);
    /// `env` is the environment commands get, `cwd` where they run.
    pub fn start(
        configs: Vec<McpServerConfig>,
        env: Vec<(OsString, OsString)>,
        cwd: PathBuf,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let servers: Vec<Arc<Server>> = configs
            .into_iter()
            .map(|config| {
                Arc::new(Server {
                    config,
                    live: RwLock::new(Live::default()),
                    nudge: Notify::new(),
                })
            })
            .collect();
        let env = Arc::new(env);
        for s in &servers {
            tokio::spawn(supervise(
                s.clone(),
                env.clone(),
                cwd.clone(),
                shutdown.clone(),
            ));
        }
        Arc::new(Self { servers, shutdown })
    }

    /// Every tool of every server that listed some, `available` or not.
    pub fn tools(&self) -> Vec<McpTool> {
        let mut out = Vec::new();
        for s in &self.servers {
            let live = s.live.read();
            for t in &live.tools {
                out.push(McpTool {
                    server: s.config.name.clone(),
                    spec: spec(&s.config.name, t),
                    available: live.peer.is_some(),
                });
            }
        }
        out
    }

    /// `Some(server)` when `name` is `server__…` of a configured server.
    pub fn server_of<'a>(&self, name: &'a str) -> Option<&'a str> {
        let (server, _) = name.split_once(SEPARATOR)?;
        self.servers
            .iter()
            .any(|s| s.config.name == server)
            .then_some(server)
    }

    /// The listed tool `name`, or a sentence for the model.
    pub fn spec_of(&self, name: &str) -> Result<ToolSpec, String> {
        let Some((server, tool)) = name.split_once(SEPARATOR) else {
            return Err(format!("Tool {name} not found"));
        };
        let Some(s) = self.servers.iter().find(|s| s.config.name == server) else {
            return Err(format!("Tool {name} not found"));
        };
        if s.live.read().peer.is_none() {
            return Err(s.not_running(name, "cannot be called now"));
        }
        let live = s.live.read();
        live.tools
            .iter()
            .find(|t| t.name == tool)
            .map(|t| spec(server, t))
            .ok_or_else(|| format!("The MCP server {server} has no tool {name}"))
    }

    /// Calls `server__tool` with checked arguments.
    pub async fn call(&self, name: &str, args: &Value, cancel: &CancellationToken) -> Output {
        let Some((server, tool)) = name.split_once(SEPARATOR) else {
            return Output::error(format!("Tool {name} not found"));
        };
        let Some(s) = self.servers.iter().find(|s| s.config.name == server) else {
            return Output::error(format!("Tool {name} not found"));
        };
        let peer = s.live.read().peer.clone();
        let Some(peer) = peer else {
            return Output::error(s.not_running(name, "was not run"));
        };
        let mut params = CallToolRequestParams::new(tool.to_owned());
        params.arguments = args.as_object().cloned();
        let timeout = Duration::from_secs(s.config.call_timeout_secs.max(1));
        let result = tokio::select! {
            biased;
            () = cancel.cancelled() => return Output::error("Operation aborted"),
            () = self.shutdown.cancelled() => return Output::error("The relay is shutting down; the call was abandoned."),
            r = tokio::time::timeout(timeout, peer.call_tool(params)) => r,
        };
        match result {
            Err(_) => Output::error(format!(
                "The MCP server {server} did not answer {name} within {} seconds.",
                timeout.as_secs()
            )),
            Ok(Err(e)) => {
                // The server's own JSON-RPC error says nothing about the
                // connection; anything else may mean it is gone.
                if !matches!(e, ServiceError::McpError(_)) {
                    s.nudge.notify_one();
                }
                Output::error(format!("The MCP server {server} failed {name}: {e}"))
            }
            Ok(Ok(r)) => match serde_json::to_value(&r) {
                Ok(v) => output_of(&v),
                Err(e) => Output::error(format!("The result of {name} cannot be read: {e}")),
            },
        }
    }
}

/// The model's view of a server's tool.
fn spec(server: &str, t: &Tool) -> ToolSpec {
    ToolSpec {
        name: format!("{server}{SEPARATOR}{}", t.name),
        description: t
            .description
            .as_deref()
            .or(t.title.as_deref())
            .unwrap_or_default()
            .to_owned(),
        parameters: Value::Object((*t.input_schema).clone()),
    }
}

/// An MCP `CallToolResult` (as JSON) in pi's toolResult shape: `text` and
/// `image` blocks as they are; audio, resources and links as a text line
/// the model can read; `structuredContent` as JSON text when the server
/// gave no text with it.
pub fn output_of(result: &Value) -> Output {
    let mut content = Vec::new();
    let blocks = result
        .get("content")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for b in &blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => content.push(json!({
                "type": "text",
                "text": b.get("text").and_then(Value::as_str).unwrap_or_default(),
            })),
            Some("image") => content.push(json!({
                "type": "image",
                "data": b.get("data").and_then(Value::as_str).unwrap_or_default(),
                "mimeType": b.get("mimeType").and_then(Value::as_str).unwrap_or("image/png"),
            })),
            Some("resource_link") => content.push(json!({
                "type": "text",
                "text": format!(
                    "[resource {}]",
                    b.get("uri").and_then(Value::as_str).unwrap_or_default()
                ),
            })),
            Some("resource") => {
                let r = b.get("resource").cloned().unwrap_or(Value::Null);
                let text = match r.get("text").and_then(Value::as_str) {
                    Some(t) => t.to_owned(),
                    None => format!(
                        "[resource {} ({})]",
                        r.get("uri").and_then(Value::as_str).unwrap_or_default(),
                        r.get("mimeType")
                            .and_then(Value::as_str)
                            .unwrap_or("binary")
                    ),
                };
                content.push(json!({"type": "text", "text": text}));
            }
            other => content.push(json!({
                "type": "text",
                "text": format!("[{} content]", other.unwrap_or("unknown")),
            })),
        }
    }
    if let Some(s) = result.get("structuredContent")
        && !content
            .iter()
            .any(|c| c.get("type").and_then(Value::as_str) == Some("text"))
    {
        content.push(json!({"type": "text", "text": s.to_string()}));
    }
    if content.is_empty() {
        content.push(json!({"type": "text", "text": ""}));
    }
    Output {
        content,
        is_error: result
            .get("isError")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

async fn supervise(
    server: Arc<Server>,
    env: Arc<Vec<(OsString, OsString)>>,
    cwd: PathBuf,
    shutdown: CancellationToken,
) {
    let name = server.config.name.clone();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        match connect(&server, &env, &cwd).await {
            Ok(running) => {
                tracing::info!(server = %name, "mcp server connected");
                let token = running.cancellation_token();
                let peer = running.peer().clone();
                let lost = async {
                    if server.config.url.is_some() {
                        http::watch(peer, &server.nudge).await
                    } else {
                        std::future::pending().await
                    }
                };
                let why = tokio::select! {
                    r = running.waiting() => format!("the connection ended ({:?})", r.ok()),
                    why = lost => {
                        token.cancel();
                        why
                    }
                    () = shutdown.cancelled() => {
                        token.cancel();
                        server.down("the relay is shutting down".into());
                        return;
                    }
                };
                tracing::warn!(server = %name, reason = %why, "mcp server lost; restarting");
                server.down(why);
            }
            Err(e) => {
                tracing::warn!(server = %name, error = %e, "mcp server failed to start");
                server.down(e);
            }
        }
        if started.elapsed() >= STABLE_AFTER {
            backoff = FIRST_BACKOFF;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

type Running = rmcp::service::RunningService<RoleClient, Handler>;

async fn connect(
    server: &Arc<Server>,
    env: &[(OsString, OsString)],
    cwd: &std::path::Path,
) -> Result<Running, String> {
    let c = &server.config;
    let handler = Handler {
        server: server.clone(),
    };
    let init = Duration::from_secs(30);
    let served = if c.url.is_some() {
        tokio::time::timeout(init, handler.serve(http::transport(c)?)).await
    } else {
        tokio::time::timeout(init, handler.serve(stdio::spawn(c, env, cwd)?)).await
    };
    let running = served
        .map_err(|_| format!("no answer to initialize within {} s", init.as_secs()))?
        .map_err(|e| format!("initialize failed: {}", loopchat_proto::error_chain(&e)))?;
    let tools = tokio::time::timeout(init, running.peer().list_all_tools())
        .await
        .map_err(|_| format!("no answer to tools/list within {} s", init.as_secs()))?
        .map_err(|e| format!("tools/list failed: {e}"))?;
    let mut live = server.live.write();
    live.tools = tools;
    live.peer = Some(running.peer().clone());
    live.last_error = None;
    drop(live);
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(name: &str, command: Option<&str>, url: Option<&str>) -> McpServerConfig {
        McpServerConfig {
            name: name.into(),
            command: command.map(Into::into),
            args: vec![],
            env: BTreeMap::new(),
            url: url.map(Into::into),
            headers: BTreeMap::new(),
            call_timeout_secs: 5,
        }
    }

    #[test]
    fn configs_are_checked() {
        assert!(cfg("everything", Some("npx"), None).validate().is_ok());
        assert!(cfg("a__b", Some("x"), None).validate().is_err());
        assert!(cfg("a b", Some("x"), None).validate().is_err());
        assert!(cfg("", Some("x"), None).validate().is_err());
        assert!(cfg("x", None, None).validate().is_err());
        assert!(cfg("x", Some("c"), Some("http://h")).validate().is_err());
        assert!(
            cfg("web", None, Some("http://127.0.0.1:3001/mcp"))
                .validate()
                .is_ok()
        );
        let e = cfg("web", None, Some("http://example.com/mcp"))
            .validate()
            .unwrap_err();
        assert!(e.contains("https"), "{e}");
        let mut with_args = cfg("web", None, Some("https://example.com/mcp"));
        with_args.args = vec!["x".into()];
        assert!(with_args.validate().is_err());
        let mut with_headers = cfg("cmd", Some("c"), None);
        with_headers
            .headers
            .insert("Authorization".into(), "x".into());
        assert!(with_headers.validate().is_err());
    }

    #[test]
    fn results_take_pis_shape() {
        let out = output_of(&json!({
            "content": [
                {"type": "text", "text": "hi", "annotations": {"priority": 1}},
                {"type": "image", "data": "AAAA", "mimeType": "image/png"},
                {"type": "resource_link", "uri": "file:///x", "name": "x"},
            ],
            "isError": false
        }));
        assert_eq!(
            out.content,
            vec![
                json!({"type": "text", "text": "hi"}),
                json!({"type": "image", "data": "AAAA", "mimeType": "image/png"}),
                json!({"type": "text", "text": "[resource file:///x]"}),
            ]
        );
        assert!(!out.is_error);
        let out =
            output_of(&json!({"content": [], "structuredContent": {"sum": 3}, "isError": true}));
        assert_eq!(
            out.content,
            vec![json!({"type": "text", "text": "{\"sum\":3}"})]
        );
        assert!(out.is_error);
    }
}
