//! `RUST_LOG` as the user means it, without the chat: one rule for the relay
//! and the shell.
//!
//! Some dependencies log what passes through them at debug and trace:
//! html5ever (under ammonia) logs the tree builder's tokens, which are the
//! text of every rendered reply, and tungstenite logs whole WebSocket frames
//! (and handshakes, whose subprotocol carries the token). A user who sets
//! `RUST_LOG=debug` to look at loopchat does not mean to write their
//! conversations to a log file. So a bare level (`debug`, `trace`) applies in
//! full to loopchat's own crates only, and the other crates get at most `info`
//! from it. A directive that names a target (`html5ever=trace`,
//! `tower_http=debug`) is taken as written: naming a crate is how a user says
//! "yes, that one's output too".
//!
//! Pure string work, so that proto needs no logging crate: each binary feeds
//! the result to its `tracing_subscriber::EnvFilter`.

/// Level names from the quietest; `tracing` also accepts 0–5 for them.
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
/// The most a bare level gives to crates other than loopchat's own.
const DEPENDENCY_CAP: usize = 3; // info

fn bare_level(directive: &str) -> Option<usize> {
    LEVELS
        .iter()
        .position(|l| l.eq_ignore_ascii_case(directive))
        .or_else(|| {
            directive
                .parse::<usize>()
                .ok()
                .filter(|n| *n < LEVELS.len())
        })
}

/// `RUST_LOG`'s directives with every bare level split into "this level for
/// `own_targets`" and "at most info for the rest". Directives that name a
/// target come last, so that they win over what a bare level implied
/// (`trace,loopchat_relay::store=info` keeps the store at info).
pub fn rewrite(spec: &str, own_targets: &[&str]) -> String {
    let mut bare = Vec::new();
    let mut named = Vec::new();
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        match bare_level(directive) {
            Some(level) => {
                bare.push(LEVELS[level.min(DEPENDENCY_CAP)].to_owned());
                bare.extend(own_targets.iter().map(|t| format!("{t}={}", LEVELS[level])));
            }
            // A target, a target with a level, or a span filter: the user
            // named what they want.
            None => named.push(directive.to_owned()),
        }
    }
    bare.extend(named);
    bare.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_levels_are_capped_for_others_only() {
        assert_eq!(rewrite("TRACE", &["a", "b"]), "info,a=trace,b=trace");
        assert_eq!(rewrite("5", &["a"]), "info,a=trace");
        assert_eq!(rewrite("warn", &["a"]), "warn,a=warn");
        assert_eq!(rewrite("off", &["a"]), "off,a=off");
        assert_eq!(
            rewrite("a::x=info, debug ,tungstenite", &["a"]),
            "info,a=debug,a::x=info,tungstenite"
        );
        assert_eq!(rewrite("", &["a"]), "");
    }
}
