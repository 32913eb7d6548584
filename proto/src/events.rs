use serde::{Deserialize, Serialize};

use crate::Message;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Final,
    Aborted,
    Error,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Final => "final",
            Self::Aborted => "aborted",
            Self::Error => "error",
        }
    }
}

/// What was decided about a tool call that asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub enum ApprovalDecision {
    Approved,
    /// Approved, and the tool runs without asking for the rest of the
    /// session's life in this relay.
    ApprovedForSession,
    Denied,
    /// Nobody answered in time: denied.
    Expired,
    /// The run ended (Stop, shutdown) before anyone answered.
    Cancelled,
}

/// How a tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ToolStatus {
    Ok,
    Error,
    Denied,
    Aborted,
}

impl ToolStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Denied => "denied",
            Self::Aborted => "aborted",
        }
    }
}

/// A notification (alert) as stored, replayed and delivered.
///
/// A later version of the same `id` (a new seq) replaces it: an update by
/// its poster, a check's "resolved", or the relay marking it `read`,
/// `dismissed` or `investigated`. Clients that raise popups (the shell)
/// skip versions that are `read` or `dismissed`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: String,
    pub seq: u64,
    pub title: String,
    pub body: String,
    pub priority: u8,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub click: Option<String>,
    #[serde(default)]
    pub session: Option<String>,
    pub timestamp: String,
    /// The attached image's id (`<sha256 hex>.<png|jpg|gif|webp>`), served
    /// at `GET /webchat/notifications/{id}/image` to the main token only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Who raised it: `main` (the main token), `token:<id>` (a scoped
    /// token), `check:<name>` (a configured check) or `relay` (the relay's
    /// own hooks). Absent on alerts older than this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The run of a check that raised or resolved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<CheckOutcome>,
    /// Marked read (in the relay: the same in every window and shell).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read: bool,
    /// Dismissed: no longer listed; this version tells live clients to drop it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dismissed: bool,
    /// The session an "ask the agent" turn about it was started in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub investigated_in: Option<String>,
}

/// One check run as an alert carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CheckOutcome {
    pub name: String,
    /// `None` when the run was killed (timeout) or could not start.
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
    /// The last lines of its output (stdout and stderr interleaved), capped.
    pub output: String,
    /// `failing` or `resolved`, or `ok` for a passing run of an `always`
    /// or `change` check.
    pub state: String,
}

/// What happened to the session list (`sessions` events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SessionChange {
    /// A new session (its first message is stored).
    Created,
    /// A new turn, title or setting: the row is replaced.
    Updated,
    Pinned,
    /// Gone from the list (deleted to the archive).
    Archived,
    /// Back in the list from the archive.
    Restored,
    /// Changes were missed: fetch `GET /webchat/sessions` again.
    Resync,
}

/// What happened, without its position in a log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type")]
pub enum EventBody {
    /// A stored message; `runId` names the turn it belongs to.
    #[serde(rename = "message", rename_all = "camelCase")]
    Message {
        message: Message,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
    },
    #[serde(rename = "run.start", rename_all = "camelCase")]
    RunStart { run_id: String },
    #[serde(rename = "delta", rename_all = "camelCase")]
    Delta { run_id: String, text: String },
    #[serde(rename = "thinking", rename_all = "camelCase")]
    Thinking { run_id: String, text: String },
    /// The model is writing a tool call: the next piece of its arguments'
    /// JSON text (raw, as streamed; concatenated they are the arguments).
    #[serde(rename = "tool.args", rename_all = "camelCase")]
    ToolArgs {
        run_id: String,
        call_id: String,
        name: String,
        delta: String,
    },
    #[serde(rename = "run.end", rename_all = "camelCase")]
    RunEnd {
        run_id: String,
        state: RunState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A tool call of a run, as the model made it, waits for the user's
    /// decision (policy `ask`). `args` is the exact JSON object it will run
    /// with; `expiresAt` (RFC 3339) is when it counts as denied.
    #[serde(rename = "tool.approval", rename_all = "camelCase")]
    ToolApproval {
        run_id: String,
        call_id: String,
        name: String,
        args: serde_json::Value,
        expires_at: String,
    },
    /// The decision on a `tool.approval`.
    #[serde(rename = "tool.approval.resolved", rename_all = "camelCase")]
    ToolApprovalResolved {
        run_id: String,
        call_id: String,
        decision: ApprovalDecision,
    },
    /// A tool call starts running (after its approval, if it needed one):
    /// the relay's own tool loop, or a backend that runs tools itself (pi).
    #[serde(rename = "tool.start", rename_all = "camelCase")]
    ToolStart {
        run_id: String,
        call_id: String,
        name: String,
        args: serde_json::Value,
    },
    /// Output of a running call (`bash`), in order.
    #[serde(rename = "tool.update", rename_all = "camelCase")]
    ToolUpdate {
        run_id: String,
        call_id: String,
        text: String,
    },
    /// A call ended; its result is the `toolResult` message that follows.
    #[serde(rename = "tool.end", rename_all = "camelCase")]
    ToolEnd {
        run_id: String,
        call_id: String,
        status: ToolStatus,
        duration_ms: u64,
    },
    #[serde(rename = "notification")]
    Notification { notification: Notification },
    /// The session list changed (every stream carries these, live only,
    /// with `seq` 0). `session` is the row as `GET /webchat/sessions` now
    /// lists it (absent for `archived`); `resync`: changes were missed,
    /// fetch the list again.
    #[serde(rename = "sessions", rename_all = "camelCase")]
    Sessions {
        change: SessionChange,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<crate::SessionSummary>,
    },
    /// The log cannot replay from the client's `since` (evicted, or the relay
    /// restarted): reload the session from `/webchat/info` and go on from `seq`.
    #[serde(rename = "reset")]
    Reset,
}

/// One entry of a session's ordered event log: `{"type":…,"seq":n,…}`.
///
/// `seq` is per session for conversation events and per relay for
/// notifications (which have their own log).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    pub seq: u64,
    #[serde(flatten)]
    pub body: EventBody,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_event_shapes() {
        let e = Event {
            seq: 3,
            body: EventBody::ToolEnd {
                run_id: "r".into(),
                call_id: "c".into(),
                status: ToolStatus::Denied,
                duration_ms: 5,
            },
        };
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"type":"tool.end","seq":3,"runId":"r","callId":"c","status":"denied","durationMs":5})
        );
        let r = EventBody::ToolApprovalResolved {
            run_id: "r".into(),
            call_id: "c".into(),
            decision: ApprovalDecision::ApprovedForSession,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap()["decision"],
            "approvedForSession"
        );
    }

    #[test]
    fn event_shape() {
        let e = Event {
            seq: 7,
            body: EventBody::Delta {
                run_id: "r1".into(),
                text: "hi".into(),
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"delta","seq":7,"runId":"r1","text":"hi"})
        );
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        let end = Event {
            seq: 8,
            body: EventBody::RunEnd {
                run_id: "r1".into(),
                state: RunState::Aborted,
                error: None,
            },
        };
        assert_eq!(
            serde_json::to_value(&end).unwrap(),
            serde_json::json!({"type":"run.end","seq":8,"runId":"r1","state":"aborted"})
        );
        let tool = Event {
            seq: 9,
            body: EventBody::ToolArgs {
                run_id: "r1".into(),
                call_id: "c1".into(),
                name: "bash".into(),
                delta: "{\"com".into(),
            },
        };
        let v = serde_json::to_value(&tool).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"tool.args","seq":9,"runId":"r1","callId":"c1","name":"bash","delta":"{\"com"})
        );
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), tool);
    }
}
