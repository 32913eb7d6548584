//! Request and response bodies of the HTTP endpoints.

use serde::{Deserialize, Serialize};

use crate::{Message, Notification};

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
    pub version: String,
}

/// Which agent backend answers, for display.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    pub backend: String,
    pub model: Option<String>,
}

/// `GET /webchat/info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
}

/// A run that has started and not yet ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveRun {
    pub run_id: String,
    /// seq of the run's `run.start` event.
    pub start_seq: u64,
}

/// `GET /webchat/history`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryResponse {
    pub ok: bool,
    pub messages: Vec<Message>,
    pub has_more: bool,
}

/// One row of `GET /webchat/sessions`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub key: String,
    pub session_id: String,
    pub updated_at: i64,
    pub thinking_level: String,
    pub preview: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionsResponse {
    pub ok: bool,
    pub sessions: Vec<SessionSummary>,
}

/// A reference, in an rpc turn, to a file uploaded before with
/// `POST /webchat/attachments`. Uploads travel separately so that the 1 MiB
/// JSON limit stays meaningful and an image is sent once, not per retry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentRef {
    pub id: String,
}

/// `POST /webchat/attachments` (raw body, `Content-Type: image/*`).
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RpcRequest {
    pub text: String,
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub thinking: Option<String>,
    #[serde(default)]
    pub deliver: Option<bool>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub attachments: Vec<AttachmentRef>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// `false` asks for 409 `turn_in_progress` instead of waiting behind a
    /// running turn of the same session. Default: queue.
    #[serde(default)]
    pub queue: Option<bool>,
}

/// One rendered reply part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    pub text: String,
    pub html: String,
}

/// Non-streaming answer of `POST /webchat/rpc`.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[serde(rename_all = "camelCase")]
pub struct AbortRequest {
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub run_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AbortResponse {
    pub ok: bool,
    /// The run that was stopped; `None` when nothing was running.
    pub run_id: Option<String>,
}

/// `POST /webchat/notify`. Unknown fields are refused, so that a misspelt
/// `priorty` or an ntfy-style `message` is a 400 rather than silently lost.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifyRequest {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub priority: Option<u8>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub click: Option<String>,
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifyResponse {
    pub ok: bool,
    pub id: String,
    pub seq: u64,
}

/// `GET /webchat/notifications`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationsResponse {
    pub ok: bool,
    pub notifications: Vec<Notification>,
}

/// `POST /webchat/presence`: which session a UI window (a browser tab, the
/// shell's window) shows and whether it has focus. The relay uses it to skip
/// "reply ready" notifications for a session the user is looking at.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PresenceRequest {
    /// The window's own id (a uuid); the same value it passes as
    /// `client=` on `/webchat/events` or `/webchat/socket`.
    pub client: String,
    #[serde(default)]
    pub session: Option<String>,
    pub focused: bool,
}

/// `{"ok":true}`: the answer of endpoints that have nothing else to say.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OkResponse {
    pub ok: bool,
}
