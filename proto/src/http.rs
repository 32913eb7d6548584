//! Request and response bodies of the HTTP endpoints.

use serde::{Deserialize, Serialize};

use crate::{Message, Notification, Role, SessionKey, ThinkingLevel};

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

/// Configured checks by state: `ok` and `failing` by their last run (a
/// check that never ran is neither), `running` those running now.
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
    /// The welcome tour's version ([`crate::WELCOME_VERSION`]): the page shows
    /// the tour when this or `version` differs from what it recorded. 0 from
    /// a relay older than the tour.
    #[serde(default)]
    pub welcome_version: u32,
    pub session_key: String,
    pub session_id: Option<String>,
    /// The session's level; one another tool wrote that this protocol does
    /// not know reads as `off`, the level a turn then uses (Decision 90).
    pub thinking_level: ThinkingLevel,
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
    /// The model the session's next turn asks for (its newest pi
    /// `model_change` on the conversation's path, else the backend's
    /// configured model; Decision 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// What an upload may be (Decision 82); the page checks files against
    /// these before it sends them.
    #[serde(default)]
    pub attachments: AttachmentLimits,
    /// The largest file `POST /webchat/import` takes, bytes (`import_limit`).
    /// 0 from a relay without import.
    #[serde(default)]
    pub import_limit: u64,
}

/// At most this many attachments on one message (a 400 beyond).
pub const MAX_ATTACHMENTS: usize = 8;

/// The longest file name an attachment may carry (a 400 beyond).
pub const MAX_ATTACHMENT_NAME_CHARS: usize = 255;

/// Upload limits, as `/webchat/info` serves them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AttachmentLimits {
    /// Largest upload, bytes (`attachment_limit`).
    pub max_bytes: u64,
    /// Most attachments on one message ([`MAX_ATTACHMENTS`]).
    pub max_count: u32,
    /// The declared types an upload may have.
    pub types: Vec<String>,
    /// Characters of one file's text given to the model; the rest is cut.
    pub max_text_chars: u64,
}

impl Default for AttachmentLimits {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            max_count: MAX_ATTACHMENTS as u32,
            types: Vec::new(),
            max_text_chars: 0,
        }
    }
}

/// `GET /webchat/models`: what the model picker offers (Decision 80).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ModelsResponse {
    pub ok: bool,
    /// The model ids a turn may name in `model`; empty when the backend
    /// offers no choice or its list could not be read.
    pub models: Vec<String>,
    /// The backend's configured model (a session without a choice uses it).
    pub default: Option<String>,
    /// Where the list came from: `server` (`GET {base_url}/models`),
    /// `config` (`[agent.openai] models`) or `none` (a backend without
    /// models, or the server's list could not be read).
    pub source: String,
    /// Why the list is empty when the server was asked and failed (down,
    /// timeout, an answer that is not a model list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
    /// `builtin`, or the name of the MCP server (`[[mcp_servers]]`).
    pub source: String,
    /// `allow`, `ask` or `deny`.
    pub policy: String,
    /// False while its MCP server is down (being restarted): not offered.
    #[serde(default = "available_default")]
    pub available: bool,
    pub description: String,
}

fn available_default() -> bool {
    true
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
    pub session: Option<SessionKey>,
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
    /// There are older messages on the path than the first of the page.
    pub has_more: bool,
    /// There are newer messages on the path than the last of the page (a
    /// page `around` or `after` a message); absent means false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub has_newer: bool,
}

/// Longest `q` of `GET /webchat/search`, in bytes.
pub const SEARCH_QUERY_MAX_BYTES: usize = 256;
/// Most hits `GET /webchat/search` answers with (`limit`).
pub const SEARCH_LIMIT_MAX: usize = 100;

/// One hit of `GET /webchat/search`: a user message or an assistant reply.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SearchHit {
    /// The session's key (open it with `history?session=K&around=messageId`).
    pub session: String,
    /// The session's name, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub message_id: String,
    pub role: crate::Role,
    /// The message's timestamp, as stored.
    pub timestamp: String,
    /// A piece of the message's text around the match, as plain text.
    pub snippet: String,
    /// The same piece, HTML-escaped by the relay, with each matched word in
    /// `<mark>…</mark>`: the only markup it can hold.
    pub snippet_html: String,
}

/// `GET /webchat/search`: the best hits first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SearchResponse {
    pub ok: bool,
    pub hits: Vec<SearchHit>,
    /// False while the index is still catching up with the transcripts (at
    /// start, after a rebuild): hits may be missing until it is.
    pub complete: bool,
}

/// One row of `GET /webchat/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub key: String,
    pub session_id: String,
    pub updated_at: i64,
    /// As in [`InfoResponse::thinking_level`].
    pub thinking_level: ThinkingLevel,
    pub preview: Option<String>,
    /// The session's name (pi's newest `session_info` entry), shown as its
    /// title; absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The working directory the session was started in (its header's
    /// `cwd`, as pi and OpenClaw show it); absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Pinned to the top of the list (the index entry's `pinned`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
}

/// One archived (deleted) session, as `GET /webchat/archived` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ArchivedSession {
    pub key: String,
    /// What restore and purge name it by: a key may be archived more than once.
    pub session_id: String,
    pub updated_at: i64,
    /// When it was archived (epoch ms).
    pub archived_at: i64,
    /// When the sweeper purges it (epoch ms); absent when archives are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purge_at: Option<i64>,
    /// Its title when it was archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArchivedResponse {
    pub ok: bool,
    /// Most recently archived first.
    pub sessions: Vec<ArchivedSession>,
}

/// `POST /webchat/archive`: names a session by key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArchiveRequest {
    /// The session key; `main` when absent.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9._:-]+$", min_length = 1, max_length = 128)
    )]
    pub session: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ArchiveResponse {
    pub ok: bool,
    pub archived: ArchivedSession,
}

/// `POST /webchat/restore` and one archived session of `POST /webchat/purge`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreRequest {
    /// The archived session's id (`GET /webchat/archived`).
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9_-]+$", min_length = 1, max_length = 128)
    )]
    pub session_id: String,
}

/// A restored or pinned session, as the list now shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionResponse {
    pub ok: bool,
    pub session: SessionSummary,
}

/// `POST /webchat/purge`: one archived session (`sessionId`) or, with
/// `all: true`, every one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9_-]+$", min_length = 1, max_length = 128)
    )]
    pub session_id: Option<String>,
    #[serde(default)]
    pub all: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PurgeResponse {
    pub ok: bool,
    /// How many archived sessions were deleted for good.
    pub purged: usize,
}

/// `POST /webchat/pin`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PinRequest {
    /// The session key; `main` when absent.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9._:-]+$", min_length = 1, max_length = 128)
    )]
    pub session: Option<String>,
    pub pinned: bool,
}

/// One entry of `GET /webchat/tree`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TreeEntry {
    pub id: String,
    /// `null` for a root.
    pub parent_id: Option<String>,
    /// Set for the messages shown in the chat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// `GET /webchat/tree`: the shape of a session's tree, for switching
/// branches. `complete: false` (and no entries) for a transcript too large to
/// send whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TreeResponse {
    pub ok: bool,
    /// The last entry of the file: where the conversation ends.
    pub leaf_id: Option<String>,
    pub complete: bool,
    /// In file order.
    pub entries: Vec<TreeEntry>,
}

/// `POST /webchat/rename`: names a session (pi's `session_info` entry).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenameRequest {
    /// The session key; `main` when absent.
    #[serde(default)]
    pub session: Option<SessionKey>,
    /// The new name (trimmed; empty clears it). At most 200 characters, no
    /// control characters.
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 200, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")
    )]
    pub name: String,
}

/// The answer to `POST /webchat/rename`, once the entry is durable.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RenameResponse {
    pub ok: bool,
    pub title: Option<String>,
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
    /// type's extension. An id the relay has no file for is a 400.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[0-9a-f]{64}\.(png|jpg|gif|webp|txt|md|csv|json|pdf)$")
    )]
    pub id: String,
    /// The file's name as the user had it: given to the model with a text
    /// file's or PDF's text, and offered when the file is downloaded. At
    /// most 255 characters, no control characters (else 400).
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(max_length = 255, pattern = r"^[^\u0000-\u001F\u007F-\u009F]*$")
    )]
    pub name: Option<String>,
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
    pub session: Option<SessionKey>,
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
    /// The entry (a message id) the new user message follows: a branch, as
    /// pi's `/tree` makes one. Editing a message is sending the new text with
    /// the edited message's `parentId`. Default: the leaf (the conversation
    /// goes on). An id the session does not have is a 400.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// Answer this user message (its id) again instead of sending a new one:
    /// the reply is a new child of that message, given the path to it as
    /// context. `text` must then be empty; not with `parentId` or
    /// `attachments`.
    #[serde(default)]
    pub regenerate: Option<String>,
    /// Use this model for this turn and the session's next ones (stored as
    /// pi's `model_change`; Decision 80). It must be one that
    /// `GET /webchat/models` lists (else 400); a backend without a model
    /// list takes none.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 200))]
    pub model: Option<String>,
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
    pub session: Option<SessionKey>,
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
    pub session: Option<SessionKey>,
    /// Reusing the id of a kept notification updates it instead of adding
    /// one.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9._:-]+$", min_length = 1, max_length = 200)
    )]
    pub id: Option<String>,
    /// One image shown in the alert's detail view (and, where the desktop
    /// supports it, the shell's popup). A notify-only token may attach one.
    #[serde(default)]
    pub image: Option<NotifyImage>,
}

/// The most bytes an alert's image may have (decoded): 512 KiB. Its base64
/// in a notify body stays under the default 1 MiB `body_limit`.
pub const MAX_ALERT_IMAGE_BYTES: usize = 512 * 1024;

/// An image attached to `POST /webchat/notify`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifyImage {
    /// `image/png`, `image/jpeg`, `image/gif` or `image/webp`; the bytes'
    /// magic must match.
    pub mime_type: String,
    /// The bytes, standard base64 (padding optional), at most 512 KiB decoded.
    pub data: String,
}

/// `POST /webchat/notifications/read`: mark alerts read, in the relay (so
/// every window and shell sees the same state).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarkReadRequest {
    /// These ids; with `all`, every kept alert.
    #[serde(default)]
    pub ids: Vec<String>,
    #[serde(default)]
    pub all: bool,
}

/// The answer of `POST /webchat/notifications/read`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MarkReadResponse {
    pub ok: bool,
    /// Alerts that were unread and now are read.
    pub marked: u64,
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
    pub session: Option<SessionKey>,
    pub focused: bool,
}

/// `{"ok":true}`: the answer of endpoints that have nothing else to say.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OkResponse {
    pub ok: bool,
}

/// One run of a configured check (`[[checks]]`), as kept in its history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CheckRun {
    /// RFC 3339.
    pub started_at: String,
    pub ended_at: String,
    pub duration_ms: u64,
    /// `None` when it was killed (timeout) or could not start.
    pub exit_code: Option<i32>,
    /// Killed at the check's timeout (its whole process group).
    #[serde(default)]
    pub timed_out: bool,
    /// The last bytes of stdout and stderr together (at most 4 KiB).
    pub output: String,
    /// Bytes of output beyond what was kept.
    #[serde(default)]
    pub output_dropped: u64,
    /// `schedule` or `manual`.
    pub trigger: String,
    /// Set when the command could not be started at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CheckRun {
    /// Exit 0, within its time.
    pub fn passed(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out
    }
}

/// A configured check and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CheckInfo {
    pub name: String,
    /// `every 5m` or `cron */5 * * * *`.
    pub schedule: String,
    /// `ok`, `failing` or `pending` (never ran).
    pub status: String,
    pub running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<CheckRun>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    /// The id of the alert it raises (`check:<name>`).
    pub alert_id: String,
}

/// `GET /webchat/checks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChecksResponse {
    pub ok: bool,
    pub checks: Vec<CheckInfo>,
}

/// `GET /webchat/checks/{name}`: the check and its kept runs (newest last).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckDetailResponse {
    pub ok: bool,
    pub check: CheckInfo,
    pub runs: Vec<CheckRun>,
}

/// `POST /webchat/checks/{name}/run`: the finished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckRunResponse {
    pub ok: bool,
    pub run: CheckRun,
}

/// `POST /webchat/notifications/{id}/ask`: start a turn about an alert.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AskAlertRequest {
    /// The session to ask in; a new one (`alert-…`) when absent.
    #[serde(default)]
    pub session: Option<SessionKey>,
}

/// The answer of `POST /webchat/notifications/{id}/ask`: the turn has
/// started; its reply arrives on the session's event stream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AskAlertResponse {
    pub ok: bool,
    pub session: String,
    pub run_id: String,
}

/// `GET /webchat/notifications/{id}`: one kept alert for its detail view.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct NotificationDetailResponse {
    pub ok: bool,
    pub notification: Notification,
    /// The body rendered as markdown and sanitized (the relay's allow-list,
    /// as for assistant messages): the page inserts it as is.
    pub body_html: String,
}
