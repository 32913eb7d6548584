//! The loopchat wire contract (protocol v1), defined once.
//!
//! Every JSON shape that crosses a process boundary — HTTP bodies, events,
//! notifications, the discovery file — lives here so that the relay, the
//! shell and the tests cannot drift apart. This crate knows nothing of HTTP
//! servers, storage or SSH; it is plain data plus the few validation rules
//! that both sides of the wire must agree on (session keys, thinking levels,
//! where a notification's click may lead).

mod click;
mod discovery;
mod error;
mod events;
mod http;
mod message;
mod session_key;

pub use click::{CLICK_PREFIX, MAX_CLICK_BYTES, is_relay_path};
pub use discovery::{Discovery, NotAlive, pid_exists};
pub use error::{ErrorBody, ErrorCode};
pub use events::{ApprovalDecision, Event, EventBody, Notification, RunState, ToolStatus};
pub use http::*;
pub use message::{Content, Message, Role};
pub use session_key::{DEFAULT_SESSION, SessionKeyError, ThinkingLevel, validate_session_key};

/// Protocol version written into the discovery file.
pub const PROTOCOL_VERSION: u32 = 1;
