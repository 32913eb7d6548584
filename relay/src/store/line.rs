//! One transcript line, read and written in the Clawdis/pi JSONL layout.
//!
//! Readers are lenient (the store may have been written by another tool):
//! `obj.message ?? obj`, content as a string or parts, other line types
//! skipped, unparseable lines skipped. Writers emit exactly the pi shape plus
//! a few extra top-level fields that pi ignores (`clientId`, `replyTo`).

use loopchat_proto::{Content, Message, Role};
use serde_json::{Map, Value};

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
}

/// Ids for lines that carry none (older pi files): derived from the offset,
/// which never changes in an append-only file.
pub(crate) fn synthetic_id(offset: u64) -> String {
    format!("L{offset}")
}

pub(crate) fn parse_synthetic_id(id: &str) -> Option<u64> {
    id.strip_prefix('L')?.parse().ok()
}

/// Parses a line; `None` for anything that is not a readable message.
pub fn parse_line(line: &[u8], offset: u64) -> Option<StoredMessage> {
    let Value::Object(obj) = serde_json::from_slice::<Value>(line).ok()? else {
        return None;
    };
    if let Some(kind) = obj.get("type").and_then(Value::as_str)
        && kind != "message"
    {
        return None;
    }
    let msg = match obj.get("message") {
        Some(Value::Object(m)) => m,
        Some(_) => return None,
        None => &obj,
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
        Some(Value::Array(parts)) => Content::Parts(parts.clone()),
        None | Some(Value::Null) => Content::Text(String::new()),
        Some(_) => return None,
    };
    let id = str_field(&obj, "id")
        .or_else(|| str_field(msg, "id"))
        .unwrap_or_else(|| synthetic_id(offset));
    let timestamp = str_field(&obj, "timestamp")
        .or_else(|| match msg.get("timestamp") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => n.as_i64().map(crate::clock::rfc3339_from_millis),
            _ => None,
        })
        .unwrap_or_default();
    let stop_reason =
        str_field(msg, "stopReason").filter(|s| s == "aborted" || s == "error" || s == "toolUse");
    let is_tool_result = role == Role::ToolResult;
    Some(StoredMessage {
        offset,
        message: Message {
            id,
            role,
            content,
            timestamp,
            html: None,
            stop_reason,
            tool_call_id: str_field(msg, "toolCallId").filter(|_| is_tool_result),
            tool_name: str_field(msg, "toolName").filter(|_| is_tool_result),
            is_error: msg
                .get("isError")
                .and_then(Value::as_bool)
                .filter(|_| is_tool_result),
        },
        client_id: str_field(&obj, "clientId"),
        reply_to: str_field(&obj, "replyTo"),
    })
}

fn str_field(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// What the pipeline asks the store to append.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub role: Role,
    pub content: Content,
    pub timestamp_ms: i64,
    pub client_id: Option<String>,
    pub reply_to: Option<String>,
    pub stop_reason: Option<String>,
    pub error_message: Option<String>,
    /// For a `toolResult` message: pi's `toolCallId`, `toolName`, `isError`.
    pub tool_result: Option<ToolResultMeta>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolResultMeta {
    pub tool_call_id: String,
    pub tool_name: String,
    pub is_error: bool,
}

impl NewMessage {
    /// The line, including its trailing newline.
    pub fn to_line(&self) -> Vec<u8> {
        let mut message = Map::new();
        message.insert(
            "role".into(),
            serde_json::to_value(self.role).unwrap_or(Value::Null),
        );
        message.insert(
            "content".into(),
            serde_json::to_value(&self.content).unwrap_or(Value::Null),
        );
        message.insert("timestamp".into(), Value::from(self.timestamp_ms));
        if let Some(reason) = &self.stop_reason {
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
        obj.insert("id".into(), Value::from(self.id.as_str()));
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
        obj.insert("message".into(), Value::Object(message));
        // Serializing a Value tree cannot fail.
        let mut line = serde_json::to_vec(&Value::Object(obj)).unwrap_or_default();
        line.push(b'\n');
        line
    }

    pub fn to_message(&self) -> Message {
        Message {
            id: self.id.clone(),
            role: self.role,
            content: self.content.clone(),
            timestamp: crate::clock::rfc3339_from_millis(self.timestamp_ms),
            html: None,
            stop_reason: self.stop_reason.clone(),
            tool_call_id: self.tool_result.as_ref().map(|t| t.tool_call_id.clone()),
            tool_name: self.tool_result.as_ref().map(|t| t.tool_name.clone()),
            is_error: self.tool_result.as_ref().map(|t| t.is_error),
        }
    }
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
        assert_eq!(m.message.timestamp, "1970-01-01T00:00:00Z");
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
    fn round_trip() {
        let n = NewMessage {
            id: "abc".into(),
            role: Role::Assistant,
            content: Content::Text("hello\nworld".into()),
            timestamp_ms: 1_700_000_000_123,
            client_id: Some("c1".into()),
            reply_to: Some("u1".into()),
            stop_reason: Some("aborted".into()),
            error_message: None,
            tool_result: None,
        };
        let line = n.to_line();
        assert_eq!(line.last(), Some(&b'\n'));
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let back = parse_line(&line[..line.len() - 1], 0).unwrap();
        assert_eq!(back.message, n.to_message());
        assert_eq!(back.client_id.as_deref(), Some("c1"));
        assert_eq!(back.reply_to.as_deref(), Some("u1"));
    }

    #[test]
    fn tool_results_round_trip_in_pis_shape() {
        let n = NewMessage {
            id: "t".into(),
            role: Role::ToolResult,
            content: Content::Parts(vec![serde_json::json!({"type":"text","text":"ok"})]),
            timestamp_ms: 1,
            client_id: None,
            reply_to: None,
            stop_reason: None,
            error_message: None,
            tool_result: Some(ToolResultMeta {
                tool_call_id: "call_1".into(),
                tool_name: "bash".into(),
                is_error: true,
            }),
        };
        let line = n.to_line();
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["message"]["role"], "toolResult");
        assert_eq!(v["message"]["toolCallId"], "call_1");
        assert_eq!(v["message"]["toolName"], "bash");
        assert_eq!(v["message"]["isError"], true);
        let back = parse_line(&line[..line.len() - 1], 0).unwrap();
        assert_eq!(back.message, n.to_message());
        // toolUse survives as a stop reason.
        let a = parse_line(
            br#"{"type":"message","message":{"role":"assistant","content":[{"type":"toolCall","id":"c","name":"read","arguments":{}}],"stopReason":"toolUse"}}"#,
            0,
        )
        .unwrap();
        assert_eq!(a.message.stop_reason.as_deref(), Some("toolUse"));
    }
}
