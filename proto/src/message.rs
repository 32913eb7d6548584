use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum Role {
    User,
    Assistant,
    System,
    ToolResult,
}

/// Message content as the pi/Clawdis store writes it: a plain string, or an
/// array of typed parts. Parts stay untyped JSON so that kinds this version
/// does not know (tool calls, future types) survive a round trip unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<serde_json::Value>),
}

impl Content {
    /// The readable text: the string, or the `text` parts joined.
    pub fn text(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Parts(parts) => {
                let mut out = String::new();
                for part in parts {
                    if part.get("type").and_then(|t| t.as_str()) == Some("text")
                        && let Some(t) = part.get("text").and_then(|t| t.as_str())
                    {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(t);
                    }
                }
                out
            }
        }
    }
}

/// A stored message as the wire carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub role: Role,
    pub content: Content,
    pub timestamp: String,
    /// Sanitized HTML rendering of markdown (assistant messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// Set on an assistant message whose run did not finish normally
    /// (`aborted` or `error`), and `toolUse` on one that ends in tool calls
    /// (its content has pi's `toolCall` blocks); absent for a complete reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// The id of the entry this one follows in the session tree (pi's
    /// `parentId`); absent for a root entry or a line from a file without a
    /// tree (pi format v1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Set when this is not a plain message but a marker shown in its place:
    /// `compaction` (what came before was summarised for the agent) or
    /// `branch_summary` (a summary of the branch the conversation came back
    /// from). The summary is the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A `toolResult` message: the call it answers (pi's `toolCallId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// An assistant message's token counts, pi's `usage` (only when some
    /// count is known; Decision 81).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// How the reply was generated: timings measured by the relay, and
    /// where the token counts came from (Decision 81).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<ReplyStats>,
}

impl Message {
    /// A message with nothing beyond its id, role, content and time; the
    /// optional fields are set on the result.
    pub fn new(
        id: impl Into<String>,
        role: Role,
        content: Content,
        timestamp: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            role,
            content,
            timestamp: timestamp.into(),
            html: None,
            stop_reason: None,
            parent_id: None,
            kind: None,
            tool_call_id: None,
            tool_name: None,
            is_error: None,
            usage: None,
            stats: None,
        }
    }
}

/// pi's `usage` counts of an assistant message (its `cost` is not carried).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Prompt tokens.
    #[serde(default)]
    pub input: u64,
    /// Generated tokens.
    #[serde(default)]
    pub output: u64,
    #[serde(default)]
    pub total_tokens: u64,
}

/// The entry's `stats` (a field pi does not read): how one reply was made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReplyStats {
    /// `server`: the counts in `usage` are the model server's. `relay`: the
    /// server reported none; `output` counts the streamed pieces of text the
    /// relay received (about one token each for llama.cpp-like servers).
    pub source: String,
    /// From the request to the first piece of the reply (text or thinking), ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<u64>,
    /// From the request to the end of the reply, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Generated tokens per second after the first one (server-reported when
    /// it gives one, else output tokens over the generation time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_sec: Option<f64>,
    /// Tokens of the context window used by this exchange (prompt + reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<u64>,
    /// Generated tokens (or pieces, for `relay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_forms() {
        let s: Content = serde_json::from_str(r#""hi""#).unwrap();
        assert_eq!(s.text(), "hi");
        let p: Content = serde_json::from_str(
            r#"[{"type":"text","text":"a"},{"type":"image","data":"x"},{"type":"text","text":"b"}]"#,
        )
        .unwrap();
        assert_eq!(p.text(), "a\nb");
        // unknown parts survive a round trip
        let back = serde_json::to_string(&p).unwrap();
        assert!(back.contains(r#""type":"image""#));
    }
}
