//! Request and response bodies of the HTTP endpoints.

use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use crate::ThinkingLevel;
use crate::{Message, Notification};

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub ok: bool,
    pub version: String,
}

/// `GET /webchat/status`: what the relay is doing right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StatusResponse {
    pub ok: bool,
    pub version: String,
    /// Seconds since the relay started serving.
    pub uptime_secs: u64,
    pub agent: AgentInfo,
    pub connections: LiveConnections,
    /// Sessions in the store.
    pub sessions: u64,
    /// Sessions with a turn running now.
    pub runs_in_flight: u64,
    pub checks: CheckCounts,
    pub journal: JournalSize,
}

/// The live streams (SSE, WebSocket, streaming rpc) open right now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LiveConnections {
    pub total: u64,
    pub by_kind: ConnectionKinds,
    /// Streams per token: `main`, or a scoped token's id. Only tokens with
    /// an open stream appear.
    pub by_token: std::collections::BTreeMap<String, u64>,
}

/// Live streams by what opened them. A stream whose `User-Agent` starts
/// with `loopchat-shell/` is `shell`, with `loopchat/` is `cli`; any other
/// is counted by its transport (`sse` for `/webchat/events` and a
/// streaming rpc, `websocket` for `/webchat/socket`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConnectionKinds {
    pub sse: u64,
    pub websocket: u64,
    pub shell: u64,
    pub cli: u64,
}

/// Checks by state. Checks are not implemented yet: always zeros.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckCounts {
    pub ok: u64,
    pub failing: u64,
    pub running: u64,
}

/// The notification journal (`notifications.jsonl`) on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JournalSize {
    pub bytes: u64,
    /// Complete lines, one per notification version written since the
    /// last compaction.
    pub entries: u64,
}

/// Which agent backend answers, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentInfo {
    pub backend: String,
    pub model: Option<String>,
}

/// `GET /webchat/info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct InfoResponse {
    pub ok: bool,
    pub base_url: String,
    pub port: u16,
    pub token: String,
    pub base_path: String,
    pub version: String,
    pub session_key: String,
    pub session_id: Option<String>,
    pub thinking_level: String,
    pub agent: AgentInfo,
    pub initial_messages: Vec<Message>,
    pub has_more: bool,
    /// The session's last event seq: a client subscribes to events with
    /// `since=lastSeq` and misses nothing that happened after this answer.
    pub last_seq: u64,
    /// The run in progress, if any, so a reloaded page can show the reply
    /// so far (replayed from the event log from `runStartSeq - 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_run: Option<ActiveRun>,
    /// Tool calls of the active run waiting for a decision, so that a page
    /// opened or reloaded later still shows their approval cards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_approvals: Vec<PendingApproval>,
}

/// A tool call waiting for approval (the `tool.approval` event's fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PendingApproval {
    pub run_id: String,
    pub call_id: String,
    pub name: String,
    pub args: serde_json::Value,
    pub expires_at: String,
}

/// What the user decides about a pending tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum ApprovalChoice {
    Approve,
    Deny,
    /// Approve, and let this tool run without asking for the rest of the
    /// session (until the relay restarts).
    AllowSession,
}

/// One tool the agent is offered (`GET /webchat/tools`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ToolInfo {
    pub name: String,
    /// `builtin` (MCP servers would name themselves here).
    pub source: String,
    /// `allow`, `ask` or `deny`.
    pub policy: String,
    pub description: String,
}

/// `GET /webchat/tools`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ToolsResponse {
    pub ok: bool,
    /// False when `[tools] enabled = false`: no tool is offered.
    pub enabled: bool,
    /// The tools' working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// Whether the file tools are kept inside the workspace.
    pub confined: bool,
    pub tools: Vec<ToolInfo>,
}

/// `POST /webchat/approve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApproveRequest {
    /// The session key (default `main`).
    #[serde(default)]
    pub session: Option<String>,
    pub call_id: String,
    pub decision: ApprovalChoice,
}

/// A run that has started and not yet ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ActiveRun {
    pub run_id: String,
    /// seq of the run's `run.start` event.
    pub start_seq: u64,
}

/// `GET /webchat/history`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HistoryResponse {
    pub ok: bool,
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// One row of `GET /webchat/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub key: String,
    pub session_id: String,
    pub updated_at: i64,
    pub thinking_level: String,
    pub preview: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionsResponse {
    pub ok: bool,
    pub sessions: Vec<SessionSummary>,
}

/// A reference, in an rpc turn, to a file uploaded before with
/// `POST /webchat/attachments`. Uploads travel separately so that the 1 MiB
/// JSON limit stays meaningful and an image is sent once, not per retry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRef {
    /// The `id` an upload answered: sha256 hex of the bytes plus the
    /// image's extension. An id the relay has no file for is a 400.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[0-9a-f]{64}\.(png|jpg|gif|webp)$")
    )]
    pub id: String,
}

/// `POST /webchat/attachments` (raw body, `Content-Type: image/*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UploadResponse {
    pub ok: bool,
    /// Content address: sha256 hex of the bytes plus an extension.
    pub id: String,
    /// Relative to `/webchat/`.
    pub url: String,
    pub mime_type: String,
    pub size: u64,
}

/// `POST /webchat/rpc`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RpcRequest {
    /// The user's message. It may be blank only when `attachments` names at
    /// least one upload (else 400 `empty_text`).
    pub text: String,
    /// The session key; `main` when absent.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9._:-]+$", min_length = 1, max_length = 128)
    )]
    pub session: Option<String>,
    /// Sets the session's thinking level (stored in the index).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ThinkingLevel>))]
    pub thinking: Option<String>,
    /// Also post the stored reply as a notification to every connected
    /// window and shell.
    #[serde(default)]
    pub deliver: Option<bool>,
    /// Send the reply to this configured delivery target (`[targets.NAME]`)
    /// instead of the windows; implies `deliver`. An unknown name is a 400.
    #[serde(default)]
    pub to: Option<String>,
    /// Uploads (`POST /webchat/attachments`) to attach to the user message.
    #[serde(default)]
    pub attachments: Vec<AttachmentRef>,
    /// Idempotency key: a retry with the same id gets the first turn's
    /// answer and never makes a second turn.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub id: Option<String>,
    /// `true` answers with `text/event-stream` (as does
    /// `Accept: text/event-stream`).
    #[serde(default)]
    pub stream: Option<bool>,
    /// `false` asks for 409 `turn_in_progress` instead of waiting behind a
    /// running turn of the same session. Default: queue.
    #[serde(default)]
    pub queue: Option<bool>,
}

/// One rendered reply part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Payload {
    pub text: String,
    pub html: String,
}

/// Non-streaming answer of `POST /webchat/rpc`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RpcResponse {
    pub ok: bool,
    pub session_key: String,
    pub session_id: String,
    pub run_id: String,
    pub payloads: Vec<Payload>,
    pub message: Message,
}

/// `POST /webchat/abort`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AbortRequest {
    /// The session key; `main` when absent.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9._:-]+$", min_length = 1, max_length = 128)
    )]
    pub session: Option<String>,
    #[serde(default)]
    pub run_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AbortResponse {
    pub ok: bool,
    /// The run that was stopped; `None` when nothing was running.
    pub run_id: Option<String>,
}

/// `POST /webchat/notify`. Unknown fields are refused, so that a misspelt
/// `priorty` or an ntfy-style `message` is a 400 rather than silently lost.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifyRequest {
    /// At most 256 characters. `title` and `body` may not both be blank.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 256))]
    pub title: String,
    /// At most 4096 bytes of UTF-8.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 4096))]
    pub body: String,
    /// 1 (lowest) to 5 (highest); default 3.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 5))]
    pub priority: Option<u8>,
    /// At most 10 tags of 1 to 64 characters, without whitespace or control
    /// characters.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 10))]
    pub tags: Vec<String>,
    /// Opened on click: a path of this relay under `/webchat/` (e.g.
    /// `/webchat/?session=main`), without `.` or `..` segments (nor their
    /// `%2e` spellings), backslashes, whitespace or control characters. At
    /// most 2048 bytes. Links to anywhere else are refused.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub click: Option<String>,
    /// The session it is about.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9._:-]+$", min_length = 1, max_length = 128)
    )]
    pub session: Option<String>,
    /// Reusing the id of a kept notification updates it instead of adding
    /// one.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9._:-]+$", min_length = 1, max_length = 200)
    )]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotifyResponse {
    pub ok: bool,
    pub id: String,
    pub seq: u64,
}

/// `GET /webchat/notifications`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NotificationsResponse {
    pub ok: bool,
    pub notifications: Vec<Notification>,
}

/// `POST /webchat/presence`: which session a UI window (a browser tab, the
/// shell's window) shows and whether it has focus. The relay uses it to skip
/// "reply ready" notifications for a session the user is looking at.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PresenceRequest {
    /// The window's own id (a uuid); the same value it passes as
    /// `client=` on `/webchat/events` or `/webchat/socket`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9._:-]+$", min_length = 1, max_length = 128)
    )]
    pub client: String,
    /// The session the window shows, if any.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9._:-]+$", min_length = 1, max_length = 128)
    )]
    pub session: Option<String>,
    pub focused: bool,
}

/// `{"ok":true}`: the answer of endpoints that have nothing else to say.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OkResponse {
    pub ok: bool,
}
