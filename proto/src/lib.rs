//! The loopchat wire contract (protocol v1), defined once.
//!
//! Every JSON shape that crosses a process boundary — HTTP bodies, events,
//! notifications, the discovery file — lives here so that the relay, the
//! shell and the tests cannot drift apart. This crate knows nothing of HTTP
//! servers, storage or SSH; it is plain data plus the few validation rules
//! that both sides of the wire must agree on (session keys, thinking levels,
//! where a notification's click may lead).

mod click;
mod command;
mod discovery;
mod error;
mod events;
pub mod home;
mod http;
pub mod log_filter;
mod message;
mod session_key;
pub mod sse;
mod transfer;

pub use click::{CLICK_PREFIX, MAX_CLICK_BYTES, is_relay_path};
pub use command::{COMMAND_INPUT_VERSION, CommandImage, CommandInput, CommandMessage};
pub use discovery::{Discovery, DiscoveryError, NotAlive, pid_exists};
pub use error::{ErrorBody, ErrorCode, error_chain};
pub use events::{
    ApprovalDecision, CheckOutcome, Event, EventBody, Notification, RunState, SessionChange,
    ToolStatus,
};
pub use http::*;
pub use message::{Content, Message, ReplyStats, Role, Usage};
pub use session_key::{
    DEFAULT_SESSION, SESSION_KEY_PATTERN, SessionKey, SessionKeyError, ThinkingLevel,
    validate_session_key,
};
pub use transfer::{
    DEFAULT_IMPORT_LIMIT, ExportFormat, ImportFormat, ImportResponse, ImportedSession,
};

/// Protocol version written into the discovery file.
pub const PROTOCOL_VERSION: u32 = 1;

/// The welcome tour's version (webchat-dist/welcome.html). Raise it when the
/// tour changes enough that people who saw it should see it again; the shell
/// shows it again when this or the relay's version differs from what its
/// settings recorded.
pub const WELCOME_VERSION: u32 = 1;

/// The tag of the tour's "Send a test alert": the shell raises an alert with
/// it even while its window has the focus (the user is looking at the tour
/// and asked for a desktop notification).
pub const TEST_ALERT_TAG: &str = "loopchat-test";
