//! The log filter: `RUST_LOG` as the user means it, without the chat. The
//! rule (a bare level reaches other crates only up to `info`) is
//! `loopchat_proto::log_filter`, shared with the shell; this module names the
//! relay's own crates and builds the `EnvFilter`.

use tracing_subscriber::EnvFilter;

/// The crates whose logs are loopchat's own: they never log message text,
/// tokens or attachment bytes at any level.
pub const OWN_TARGETS: &[&str] = &["loopchat", "loopchat_relay", "loopchat_proto"];

/// The filter for `spec` (the value of `RUST_LOG`, if set), else for
/// `default`. A `spec` that does not parse falls back to `default`, as
/// `EnvFilter::try_from_default_env` did.
pub fn filter(spec: Option<&str>, default: &str) -> EnvFilter {
    spec.filter(|s| !s.trim().is_empty())
        .and_then(|s| EnvFilter::builder().parse(rewrite(s)).ok())
        .unwrap_or_else(|| EnvFilter::new(rewrite(default)))
}

/// [`loopchat_proto::log_filter::rewrite`] for the relay's crates.
pub fn rewrite(spec: &str) -> String {
    loopchat_proto::log_filter::rewrite(spec, OWN_TARGETS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_level_reaches_dependencies_only_up_to_info() {
        assert_eq!(
            rewrite("trace"),
            "info,loopchat=trace,loopchat_relay=trace,loopchat_proto=trace"
        );
        assert_eq!(
            rewrite("DEBUG"),
            "info,loopchat=debug,loopchat_relay=debug,loopchat_proto=debug"
        );
        // Quieter levels are quieter for everyone.
        assert_eq!(
            rewrite("warn"),
            "warn,loopchat=warn,loopchat_relay=warn,loopchat_proto=warn"
        );
    }

    #[test]
    fn named_targets_are_taken_as_written_and_win() {
        assert_eq!(
            rewrite("debug, html5ever=trace"),
            "info,loopchat=debug,loopchat_relay=debug,loopchat_proto=debug,html5ever=trace"
        );
        assert_eq!(rewrite("tungstenite"), "tungstenite");
        assert_eq!(
            rewrite("loopchat_relay::store=info,trace"),
            "info,loopchat=trace,loopchat_relay=trace,loopchat_proto=trace,\
             loopchat_relay::store=info"
        );
    }

    #[test]
    fn every_rewrite_is_a_valid_filter() {
        for spec in [
            "",
            "trace",
            "debug,html5ever=trace",
            "off",
            "info,[http]=debug",
        ] {
            EnvFilter::builder()
                .parse(rewrite(spec))
                .unwrap_or_else(|e| panic!("{spec:?}: {e}"));
        }
        // Garbage falls back to the default rather than to nothing.
        assert_eq!(
            filter(Some("=;="), "warn").to_string(),
            filter(None, "warn").to_string()
        );
    }
}
