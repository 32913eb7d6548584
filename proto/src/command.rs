//! What the `command` backend writes to its program's stdin when
//! `[agent.command] stdin = "json"`: the turn and the session's history, as
//! one JSON document (then stdin is closed).

use serde::{Deserialize, Serialize};

use crate::{Role, ThinkingLevel};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandInput {
    /// Version of this shape; bumped on an incompatible change.
    pub version: u32,
    pub session: String,
    pub run_id: String,
    pub thinking: ThinkingLevel,
    /// Oldest first, at most `history_messages`; the last one is the user's
    /// new message.
    pub messages: Vec<CommandMessage>,
}

pub const COMMAND_INPUT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandMessage {
    pub role: Role,
    /// The message's text (text parts joined with `\n`).
    pub text: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<CommandImage>,
}

/// An image attached to a message: a file the program may read (the relay's
/// attachment store; never inlined, so stdin stays small).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandImage {
    pub mime_type: String,
    pub path: String,
}
