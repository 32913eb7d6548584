//! The log filter: `RUST_LOG` as the user means it, without the chat.
//!
//! Some dependencies log what passes through them at debug and trace:
//! html5ever (under ammonia) logs the tree builder's tokens, which are the
//! text of every rendered reply, and tungstenite logs whole WebSocket frames.
//! A user who sets `RUST_LOG=debug` to look at the relay does not mean to
//! write their conversations to a log file. So a bare level (`debug`,
//! `trace`) applies in full to loopchat's own crates only, and the other
//! crates get at most `info` from it. A directive that names a target
//! (`html5ever=trace`, `tower_http=debug`) is taken as written: naming a
//! crate is how a user says "yes, that one's output too".

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// The crates whose logs are loopchat's own: they never log message text,
/// tokens or attachment bytes at any level.
pub const OWN_TARGETS: &[&str] = &["loopchat", "loopchat_relay", "loopchat_proto"];

/// The most a bare level gives to every other crate.
const DEPENDENCY_CAP: LevelFilter = LevelFilter::INFO;

/// The filter for `spec` (the value of `RUST_LOG`, if set), else for
/// `default`. A `spec` that does not parse falls back to `default`, as
/// `EnvFilter::try_from_default_env` did.
pub fn filter(spec: Option<&str>, default: &str) -> EnvFilter {
    spec.filter(|s| !s.trim().is_empty())
        .and_then(|s| EnvFilter::builder().parse(rewrite(s)).ok())
        .unwrap_or_else(|| EnvFilter::new(rewrite(default)))
}

/// `RUST_LOG`'s directives with every bare level split into "this level for
/// our crates" and "at most [`DEPENDENCY_CAP`] for the rest". Directives that
/// name a target come last, so that they win over what a bare level implied
/// (`trace,loopchat_relay::store=info` keeps the store at info).
pub fn rewrite(spec: &str) -> String {
    let mut bare = Vec::new();
    let mut named = Vec::new();
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match directive.parse::<LevelFilter>() {
            Ok(level) => {
                bare.push(std::cmp::min(level, DEPENDENCY_CAP).to_string());
                bare.extend(OWN_TARGETS.iter().map(|t| format!("{t}={level}")));
            }
            // A target, a target with a level, or a span filter: the user
            // named what they want.
            Err(_) => named.push(directive.to_owned()),
        }
    }
    bare.extend(named);
    bare.join(",")
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
