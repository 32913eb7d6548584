//! Checks: see the module docs once written.

/// The tag and id prefix of check alerts (reserved for the relay).
pub const TAG_CHECK: &str = "check";
