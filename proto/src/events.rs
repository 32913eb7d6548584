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

/// A notification (alert) as stored, replayed and delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    #[serde(rename = "run.end", rename_all = "camelCase")]
    RunEnd {
        run_id: String,
        state: RunState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    #[serde(rename = "notification")]
    Notification { notification: Notification },
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
    }
}
