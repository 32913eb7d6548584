//! The loopchat relay as a library: the `loopchat` binary is a thin CLI
//! over it, and benchmarks and tests reach the same code.
//!
//! See `docs/ARCHITECTURE.md` for the code map and invariants.

pub mod agent;
pub mod attachments;
pub mod auth;
pub mod checks;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod diagnostics;
pub mod discovery;
pub mod durable;
pub mod events;
#[doc(hidden)]
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod home;
pub mod http;
pub mod live;
pub mod logging;
pub mod memory;
pub mod notify;
pub mod pipeline;
pub mod render;
pub mod search;
pub mod server;
pub mod store;
pub mod tools;
pub mod transfer;
