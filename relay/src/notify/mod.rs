//! Notifications: alerts from scripts, cron jobs and the agent, delivered to
//! every connected window and shell, kept (the last 500, on disk) and
//! replayable by seq.
//!
//! - [`ask`]: the message of an "ask the agent" turn.
//! - [`draft`]: the limits a posted notification must respect.
//! - [`hub`]: seq, durability, the kept list, live fan-out.
//! - [`images`]: the alert images, and their collection.
//! - [`journal`]: `notifications.jsonl`, append and compaction.
//! - [`tokens`]: `tokens.json`, the notify-only tokens (hashed).
//! - [`rate`]: the per-token burst limit.
//! - [`presence`]: which window is focused on which session.
//! - [`hooks`]: what the relay posts itself when a run finishes.
//! - [`targets`]: webhooks and commands a reply can be sent to (rpc `to`).
//!
//! Nothing here knows HTTP; the handlers in `http/notify.rs` are thin. The
//! hub knows nothing of sessions or the pipeline: hooks are an ordinary
//! [`crate::pipeline::RunObserver`].

pub mod ask;
pub mod draft;
pub mod hooks;
pub mod hub;
pub mod images;
mod journal;
pub mod presence;
pub mod rate;
pub mod targets;
pub mod tokens;

pub use draft::{Draft, DraftError};
pub use hooks::NotificationHooks;
pub use hub::{NotificationHub, NotificationSubscription};
pub use presence::{Presence, PresenceLease};
pub use rate::RateLimiter;
pub use targets::DeliveryTargets;
