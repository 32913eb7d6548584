//! One transcript line in pi's session format (v3: a `session` header, then
//! entries that each name their `parentId`, forming a tree).
//!
//! Readers are lenient (the store may have been written by another tool):
//! `obj.message ?? obj`, content as a string or parts, lines of types this
//! version does not show kept as plain tree entries, unparseable lines
//! skipped (pi skips them too). Writers emit exactly pi's shape plus a few
//! extra top-level fields that pi ignores and keeps (`clientId`, `replyTo`).
//! Nothing here rewrites a line: what another tool wrote stays byte for byte.

use loopchat_proto::{Content, Message, ReplyStats, Role, Usage};
use serde_json::{Map, Value, json};

/// The format version loopchat writes, as pi's `CURRENT_SESSION_VERSION`.
pub const SESSION_VERSION: u64 = 3;

/// A message as read from a transcript, with where it sits in the file.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Byte offset of the line's first byte.
    pub offset: u64,
    pub message: Message,
    /// The rpc idempotency key of the turn that wrote this user message.
    pub client_id: Option<String>,
    /// For assistant messages: the id of the user message answered.
    pub reply_to: Option<String>,
    /// Where the entry hangs in the tree.
    pub parent: Parent,
}

/// Where an entry hangs in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parent {
    /// `parentId: null`: the first entry of a branch from the root.
    Root,
    /// No `parentId` at all (format v1, or a headerless line): the entry
    /// before it in the file, as pi's v1 → v2 migration links them.
    Previous,
    Id(String),
}

/// What an entry is, as far as showing it or sending it to an agent goes.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A message shown in the chat (also compaction and branch summaries,
    /// shown as markers: see [`Message::kind`]).
    Message(StoredMessage),
    /// A `compaction`: the agent sees its summary instead of the path before
    /// `first_kept`.
    Compaction {
        marker: StoredMessage,
        first_kept: Option<String>,
    },
    ModelChange {
        provider: String,
        model: String,
    },
    ThinkingChange(String),
    /// Anything else with a place in the tree (label, session_info, custom,
    /// messages of roles this version does not show, unknown types).
    Other,
}

/// One line of the tree.
#[derive(Debug, Clone)]
pub struct Entry {
    pub offset: u64,
    pub id: String,
    pub parent: Parent,
    pub kind: Kind,
    /// For `session_info`: the name it gives the session (`Some("")` clears).
    pub name: Option<String>,
}

impl Entry {
    pub fn message(&self) -> Option<&StoredMessage> {
        match &self.kind {
            Kind::Message(m) | Kind::Compaction { marker: m, .. } => Some(m),
            _ => None,
        }
    }

    pub fn into_message(self) -> Option<StoredMessage> {
        match self.kind {
            Kind::Message(m) | Kind::Compaction { marker: m, .. } => Some(m),
            _ => None,
        }
    }
}

/// Ids for lines that carry none (older files): derived from the offset,
/// which never changes in an append-only file.
pub(crate) fn synthetic_id(offset: u64) -> String {
    format!("L{offset}")
}

pub(crate) fn parse_synthetic_id(id: &str) -> Option<u64> {
    id.strip_prefix('L')?.parse().ok()
}

/// A fresh entry id as pi makes them: the first 8 hex digits of a v4 uuid.
pub fn new_entry_id() -> String {
    let mut id = uuid::Uuid::new_v4().simple().to_string();
    id.truncate(8);
    id
}

/// The header line loopchat starts a transcript with (with its newline).
pub fn header_line(session_id: &str, cwd: &str, timestamp_ms: i64) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({
        "type": "session",
        "version": SESSION_VERSION,
        "id": session_id,
        "timestamp": crate::clock::rfc3339_from_millis(timestamp_ms),
        "cwd": cwd,
    }))
    .unwrap_or_default();
    line.push(b'\n');
    line
}

/// Parses a line; `None` for anything that is not a readable message.
pub fn parse_line(line: &[u8], offset: u64) -> Option<StoredMessage> {
    match parse_entry(line, offset)?.kind {
        Kind::Message(m) => Some(m),
        _ => None,
    }
}

/// Parses a line of the tree; `None` for the header and for what is not a
/// JSON object.
pub fn parse_entry(line: &[u8], offset: u64) -> Option<Entry> {
    let Value::Object(obj) = serde_json::from_slice::<Value>(line).ok()? else {
        return None;
    };
    let kind = obj.get("type").and_then(Value::as_str);
    if kind == Some("session") {
        return None;
    }
    let id = str_field(&obj, "id").unwrap_or_else(|| synthetic_id(offset));
    let parent = match obj.get("parentId") {
        None => Parent::Previous,
        Some(Value::String(p)) => Parent::Id(p.clone()),
        Some(_) => Parent::Root,
    };
    let parent_id = match &parent {
        Parent::Id(p) => Some(p.clone()),
        _ => None,
    };
    let timestamp = || timestamp_of(&obj, None);
    let marker = |kind: &str, summary: &str| StoredMessage {
        offset,
        message: Message {
            parent_id: parent_id.clone(),
            kind: Some(kind.to_owned()),
            ..Message::new(
                id.clone(),
                Role::System,
                Content::Text(summary.to_owned()),
                timestamp(),
            )
        },
        client_id: None,
        reply_to: None,
        parent: parent.clone(),
    };
    let mut name = None;
    let kind = match kind {
        None | Some("message") => match message_of(&obj, &id, &parent, offset) {
            Some(m) => Kind::Message(m),
            None => Kind::Other,
        },
        Some("compaction") => Kind::Compaction {
            marker: marker("compaction", obj.get("summary").and_then(Value::as_str)?),
            first_kept: str_field(&obj, "firstKeptEntryId"),
        },
        Some("branch_summary") => match obj.get("summary").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => Kind::Message(marker("branch_summary", s)),
            _ => Kind::Other,
        },
        Some("model_change") => Kind::ModelChange {
            provider: str_field(&obj, "provider").unwrap_or_default(),
            model: str_field(&obj, "modelId").unwrap_or_default(),
        },
        Some("thinking_level_change") => {
            Kind::ThinkingChange(str_field(&obj, "thinkingLevel").unwrap_or_default())
        }
        Some("session_info") => {
            name = Some(
                obj.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .trim()
                    .to_owned(),
            );
            Kind::Other
        }
        Some(_) => Kind::Other,
    };
    Some(Entry {
        offset,
        id,
        parent,
        kind,
        name,
    })
}

fn message_of(
    obj: &Map<String, Value>,
    id: &str,
    parent: &Parent,
    offset: u64,
) -> Option<StoredMessage> {
    let msg = match obj.get("message") {
        Some(Value::Object(m)) => m,
        Some(_) => return None,
        None => obj,
    };
    let role = match msg.get("role").and_then(Value::as_str)? {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "system" => Role::System,
        "toolResult" => Role::ToolResult,
        _ => return None,
    };
    let content = match msg.get("content") {
        Some(Value::String(s)) => Content::Text(s.clone()),
        Some(Value::Array(parts)) => plain(parts.iter().map(lean_part).collect()),
        None | Some(Value::Null) => Content::Text(String::new()),
        Some(_) => return None,
    };
    // A line of format v1 may carry its id inside the message.
    let id = match (obj.get("id"), str_field(msg, "id")) {
        (None, Some(inner)) => inner,
        _ => id.to_owned(),
    };
    let stop_reason =
        str_field(msg, "stopReason").filter(|s| s == "aborted" || s == "error" || s == "toolUse");
    let is_tool_result = role == Role::ToolResult;
    Some(StoredMessage {
        offset,
        message: Message {
            id,
            role,
            content,
            timestamp: timestamp_of(obj, Some(msg)),
            html: None,
            stop_reason,
            parent_id: match parent {
                Parent::Id(p) => Some(p.clone()),
                _ => None,
            },
            kind: None,
            tool_call_id: str_field(msg, "toolCallId").filter(|_| is_tool_result),
            tool_name: str_field(msg, "toolName").filter(|_| is_tool_result),
            is_error: msg
                .get("isError")
                .and_then(Value::as_bool)
                .filter(|_| is_tool_result),
            usage: usage_of(msg).filter(|_| role == Role::Assistant),
            stats: obj
                .get("stats")
                .and_then(|v| serde_json::from_value::<ReplyStats>(v.clone()).ok())
                .filter(|_| role == Role::Assistant),
        },
        client_id: str_field(obj, "clientId"),
        reply_to: str_field(obj, "replyTo"),
        parent: parent.clone(),
    })
}

/// Content that is one plain text block is given to readers as the string
/// it stands for (what clients were always given for a plain message).
fn plain(parts: Vec<Value>) -> Content {
    if let [Value::Object(block)] = parts.as_slice()
        && block.len() == 2
        && block.get("type").and_then(Value::as_str) == Some("text")
        && let Some(text) = block.get("text").and_then(Value::as_str)
    {
        return Content::Text(text.to_owned());
    }
    Content::Parts(parts)
}

/// An image loopchat stored carries its bytes for pi (`data`) and the
/// attachment it was saved as: readers here use the attachment, so the bytes
/// are left in the file rather than held in memory and sent to every client.
fn lean_part(part: &Value) -> Value {
    match part {
        Value::Object(p)
            if p.get("type").and_then(Value::as_str) == Some("image")
                && p.get("attachment").is_some_and(Value::is_string)
                && p.contains_key("data") =>
        {
            let mut p = p.clone();
            p.remove("data");
            Value::Object(p)
        }
        other => other.clone(),
    }
}

fn timestamp_of(obj: &Map<String, Value>, msg: Option<&Map<String, Value>>) -> String {
    str_field(obj, "timestamp")
        .or_else(|| match msg.and_then(|m| m.get("timestamp")) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => n.as_i64().map(crate::clock::rfc3339_from_millis),
            _ => None,
        })
        .unwrap_or_default()
}

fn str_field(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Who produced an assistant message, in pi's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// pi's `api` (e.g. `openai-completions`).
    pub api: String,
    pub provider: String,
    pub model: String,
}

impl Default for Origin {
    fn default() -> Self {
        Self {
            api: "loopchat".into(),
            provider: "loopchat".into(),
            model: "unknown".into(),
        }
    }
}

/// pi's `usage` with every count zero: what a backend that reports none
/// gets (pi reads `usage.totalTokens` of every assistant message).
pub fn zero_usage() -> Value {
    json!({
        "input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "totalTokens": 0,
        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0},
    })
}

/// What the pipeline asks the store to append.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The entry id; empty to have the transcript make one (pi's 8 hex
    /// digits, unused in the file as far as the transcript knows).
    pub id: String,
    pub role: Role,
    pub content: Content,
    pub timestamp_ms: i64,
    pub client_id: Option<String>,
    pub reply_to: Option<String>,
    /// `aborted`, `error`, `length` or `toolUse`; an assistant message
    /// without one is written with pi's `stop`.
    pub stop_reason: Option<String>,
    pub error_message: Option<String>,
    /// The entry this one answers or follows; `None`: the leaf (the last
    /// entry in the file), so the conversation simply goes on.
    pub parent_id: Option<String>,
    /// For an assistant message: who wrote it (loopchat's own when `None`).
    pub origin: Option<Origin>,
    /// More fields of pi's message object, written as given: a
    /// `toolResult`'s `toolCallId`, `toolName`, `isError`; `usage` when the
    /// backend reports it.
    pub extra: Map<String, Value>,
    /// For a `toolResult` message: pi's `toolCallId`, `toolName`, `isError`.
    pub tool_result: Option<ToolResultMeta>,
    /// An assistant reply's timings, the entry's `stats` (pi ignores it).
    pub stats: Option<ReplyStats>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResultMeta {
    pub tool_call_id: String,
    pub tool_name: String,
    pub is_error: bool,
}

impl NewMessage {
    /// A message with only the required parts; the rest empty.
    pub fn new(role: Role, content: Content, timestamp_ms: i64) -> Self {
        Self {
            id: String::new(),
            role,
            content,
            timestamp_ms,
            client_id: None,
            reply_to: None,
            stop_reason: None,
            error_message: None,
            parent_id: None,
            origin: None,
            extra: Map::new(),
            tool_result: None,
            stats: None,
        }
    }

    /// Content as pi writes it for this role: user and assistant content is
    /// always an array of blocks.
    pub fn pi_content(&self) -> Content {
        match (&self.content, self.role) {
            (Content::Text(s), Role::User | Role::Assistant | Role::ToolResult) => {
                if s.is_empty() && self.role == Role::Assistant {
                    Content::Parts(Vec::new())
                } else {
                    Content::Parts(vec![json!({"type": "text", "text": s})])
                }
            }
            (c, _) => c.clone(),
        }
    }

    /// The line (with its trailing newline) for entry `id` under `parent`.
    pub fn to_line(&self, id: &str, parent: Option<&str>) -> Vec<u8> {
        let mut message = self.extra.clone();
        message.insert(
            "role".into(),
            serde_json::to_value(self.role).unwrap_or(Value::Null),
        );
        message.insert(
            "content".into(),
            serde_json::to_value(self.pi_content()).unwrap_or(Value::Null),
        );
        message.insert("timestamp".into(), Value::from(self.timestamp_ms));
        if self.role == Role::Assistant {
            let origin = self.origin.clone().unwrap_or_default();
            message.insert("api".into(), origin.api.into());
            message.insert("provider".into(), origin.provider.into());
            message.insert("model".into(), origin.model.into());
            message.entry("usage").or_insert_with(zero_usage);
            message.insert(
                "stopReason".into(),
                self.stop_reason.as_deref().unwrap_or("stop").into(),
            );
        } else if let Some(reason) = &self.stop_reason {
            message.insert("stopReason".into(), Value::from(reason.as_str()));
        }
        if let Some(err) = &self.error_message {
            message.insert("errorMessage".into(), Value::from(err.as_str()));
        }
        if let Some(t) = &self.tool_result {
            message.insert("toolCallId".into(), Value::from(t.tool_call_id.as_str()));
            message.insert("toolName".into(), Value::from(t.tool_name.as_str()));
            message.insert("isError".into(), Value::from(t.is_error));
        }
        let mut obj = Map::new();
        obj.insert("type".into(), Value::from("message"));
        obj.insert("id".into(), Value::from(id));
        obj.insert("parentId".into(), parent.map_or(Value::Null, Value::from));
        obj.insert(
            "timestamp".into(),
            Value::from(crate::clock::rfc3339_from_millis(self.timestamp_ms)),
        );
        if let Some(c) = &self.client_id {
            obj.insert("clientId".into(), Value::from(c.as_str()));
        }
        if let Some(r) = &self.reply_to {
            obj.insert("replyTo".into(), Value::from(r.as_str()));
        }
        if let Some(stats) = &self.stats
            && let Ok(v) = serde_json::to_value(stats)
        {
            obj.insert("stats".into(), v);
        }
        obj.insert("message".into(), Value::Object(message));
        entry_line(obj)
    }

    /// The message as a reader of the line gets it.
    pub fn to_message(&self, id: &str, parent: Option<&str>) -> Message {
        let content = match self.pi_content() {
            Content::Parts(parts) => plain(parts.iter().map(lean_part).collect()),
            c => c,
        };
        Message {
            id: id.to_owned(),
            role: self.role,
            content,
            timestamp: crate::clock::rfc3339_from_millis(self.timestamp_ms),
            html: None,
            stop_reason: self
                .stop_reason
                .clone()
                .filter(|s| s == "aborted" || s == "error" || s == "toolUse"),
            parent_id: parent.map(str::to_owned),
            kind: None,
            tool_call_id: self.tool_result.as_ref().map(|t| t.tool_call_id.clone()),
            tool_name: self.tool_result.as_ref().map(|t| t.tool_name.clone()),
            is_error: self.tool_result.as_ref().map(|t| t.is_error),
            usage: usage_of(&self.extra).filter(|_| self.role == Role::Assistant),
            stats: self.stats.clone(),
        }
    }
}

/// pi's `usage` counts, when any is known (pi writes zeros for a provider
/// that reports none, and so does the relay: those say nothing).
fn usage_of(msg: &Map<String, Value>) -> Option<Usage> {
    let u = msg.get("usage")?.as_object()?;
    let count = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    let usage = Usage {
        input: count("input"),
        output: count("output"),
        total_tokens: count("totalTokens"),
    };
    (usage != Usage::default()).then_some(usage)
}

/// pi's `usage` object for counts a model server reported (no cost known).
pub fn usage_value(u: &Usage) -> Value {
    json!({
        "input": u.input, "output": u.output, "cacheRead": 0, "cacheWrite": 0,
        "totalTokens": u.total_tokens,
        "cost": {"input": 0, "output": 0, "cacheRead": 0, "cacheWrite": 0, "total": 0},
    })
}

/// A setting entry pi writes when the model or thinking level changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    Model { provider: String, model: String },
    Thinking(String),
}

impl Setting {
    pub fn to_line(&self, id: &str, parent: Option<&str>, timestamp_ms: i64) -> Vec<u8> {
        let mut obj = Map::new();
        let kind = match self {
            Self::Model { provider, model } => {
                obj.insert("provider".into(), provider.as_str().into());
                obj.insert("modelId".into(), model.as_str().into());
                "model_change"
            }
            Self::Thinking(level) => {
                obj.insert("thinkingLevel".into(), level.as_str().into());
                "thinking_level_change"
            }
        };
        obj.insert("type".into(), kind.into());
        obj.insert("id".into(), id.into());
        obj.insert("parentId".into(), parent.map_or(Value::Null, Value::from));
        obj.insert(
            "timestamp".into(),
            crate::clock::rfc3339_from_millis(timestamp_ms).into(),
        );
        entry_line(obj)
    }
}

/// pi's `session_info` entry: the session's display name.
pub fn session_info_line(id: &str, parent: Option<&str>, timestamp_ms: i64, name: &str) -> Vec<u8> {
    let mut obj = Map::new();
    obj.insert("type".into(), "session_info".into());
    obj.insert("id".into(), id.into());
    obj.insert("parentId".into(), parent.map_or(Value::Null, Value::from));
    obj.insert(
        "timestamp".into(),
        crate::clock::rfc3339_from_millis(timestamp_ms).into(),
    );
    obj.insert("name".into(), name.into());
    entry_line(obj)
}

fn entry_line(obj: Map<String, Value>) -> Vec<u8> {
    // Serializing a Value tree cannot fail.
    let mut line = serde_json::to_vec(&Value::Object(obj)).unwrap_or_default();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pi_shapes() {
        let m = parse_line(
            br#"{"type":"message","timestamp":"2025-01-01T00:00:00Z","message":{"role":"user","content":[{"type":"text","text":"hi"}],"timestamp":1}}"#,
            42,
        )
        .unwrap();
        assert_eq!(m.message.id, "L42");
        assert_eq!(m.message.content.text(), "hi");
        assert_eq!(m.message.timestamp, "2025-01-01T00:00:00Z");
        // bare message object, numeric timestamp
        let m = parse_line(br#"{"role":"assistant","content":"yo","timestamp":0}"#, 0).unwrap();
        assert_eq!(m.message.role, Role::Assistant);
        assert_eq!(m.message.timestamp, "1970-01-01T00:00:00.000Z");
        for skip in [
            &br#"{"type":"session","id":"x"}"#[..],
            br#"{"type":"compaction","summary":"x"}"#,
            br#"{"type":"message","message":{"role":"alien","content":"x"}}"#,
            br#"{"type":"message","message":{"role":"user","con"#,
            b"",
            b"[]",
        ] {
            assert!(parse_line(skip, 0).is_none());
        }
    }

    #[test]
    fn tree_fields() {
        let e = parse_entry(
            br#"{"type":"label","id":"c8eabccc","parentId":"ae827f70","targetId":"6b049b8d","label":"start"}"#,
            7,
        )
        .unwrap();
        assert_eq!(e.id, "c8eabccc");
        assert_eq!(e.parent, Parent::Id("ae827f70".into()));
        assert!(matches!(e.kind, Kind::Other));
        let e = parse_entry(
            br#"{"type":"model_change","id":"900d05ac","parentId":null,"provider":"p","modelId":"m"}"#,
            0,
        )
        .unwrap();
        assert_eq!(e.parent, Parent::Root);
        assert!(matches!(e.kind, Kind::ModelChange { .. }));
        let e = parse_entry(
            br#"{"type":"message","message":{"role":"user","content":"x"}}"#,
            9,
        )
        .unwrap();
        assert_eq!(e.parent, Parent::Previous);
        let e = parse_entry(
            br#"{"type":"compaction","id":"c","parentId":"b","summary":"s","firstKeptEntryId":"a"}"#,
            0,
        )
        .unwrap();
        assert_eq!(
            e.message().unwrap().message.kind.as_deref(),
            Some("compaction")
        );
        let e = parse_entry(
            br#"{"type":"session_info","id":"i","parentId":"b","name":" n "}"#,
            0,
        )
        .unwrap();
        assert_eq!(e.name.as_deref(), Some("n"));
    }

    #[test]
    fn round_trip() {
        let mut n = NewMessage::new(
            Role::Assistant,
            Content::Text("hello\nworld".into()),
            1_700_000_000_123,
        );
        n.client_id = Some("c1".into());
        n.reply_to = Some("u1".into());
        n.stop_reason = Some("aborted".into());
        let line = n.to_line("abc", Some("u1"));
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let back = parse_line(&line[..line.len() - 1], 0).unwrap();
        assert_eq!(back.message, n.to_message("abc", Some("u1")));
        assert_eq!(back.client_id.as_deref(), Some("c1"));
        assert_eq!(back.reply_to.as_deref(), Some("u1"));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["message"]["usage"]["cost"]["total"], 0);
        assert_eq!(v["message"]["api"], "loopchat");
        assert_eq!(v["message"]["content"][0]["text"], "hello\nworld");
    }

    #[test]
    fn tool_results_round_trip_in_pis_shape() {
        let mut n = NewMessage::new(
            Role::ToolResult,
            Content::Parts(vec![serde_json::json!({"type":"text","text":"ok"})]),
            1,
        );
        n.tool_result = Some(ToolResultMeta {
            tool_call_id: "call_1".into(),
            tool_name: "bash".into(),
            is_error: true,
        });
        let line = n.to_line("t", None);
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["message"]["role"], "toolResult");
        assert_eq!(v["message"]["toolCallId"], "call_1");
        assert_eq!(v["message"]["toolName"], "bash");
        assert_eq!(v["message"]["isError"], true);
        let back = parse_line(&line[..line.len() - 1], 0).unwrap();
        assert_eq!(back.message, n.to_message("t", None));
        // toolUse survives as a stop reason.
        let a = parse_line(
            br#"{"type":"message","message":{"role":"assistant","content":[{"type":"toolCall","id":"c","name":"read","arguments":{}}],"stopReason":"toolUse"}}"#,
            0,
        )
        .unwrap();
        assert_eq!(a.message.stop_reason.as_deref(), Some("toolUse"));
    }
}
