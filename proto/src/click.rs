//! Where a notification may send the user who clicks it: a page of the
//! relay that raised it, and nowhere else.
//!
//! A notification can be posted with a notify-only token, by a script the
//! user trusts less than the relay. A link to another origin would let that
//! script send the user, one click later, to a page that phishes, or to
//! another server on 127.0.0.1 that collects whatever the browser sends
//! along. So `click` is a path, resolved against the relay's own origin; the
//! relay refuses anything else, and the shell and the web UI re-check what
//! they are given with the same rule.

/// Every click target starts with this.
pub const CLICK_PREFIX: &str = "/webchat/";

/// Longest accepted `click`, in bytes.
pub const MAX_CLICK_BYTES: usize = 2048;

/// Is `click` a path under `/webchat/` that stays there however a browser
/// resolves it?
///
/// Checked without a URL parser, and exactly: after the prefix no host can
/// follow (the prefix already ends the authority), a backslash (which
/// browsers read as `/`), whitespace and control characters (which the URL
/// standard strips or rejects) are refused, and so is every dot segment in
/// every spelling the URL standard decodes (`.`, `..`, `%2e`, `.%2E`, …),
/// since those are the only way a path climbs out of `/webchat/`.
pub fn is_relay_path(click: &str) -> bool {
    if click.len() > MAX_CLICK_BYTES
        || !click.starts_with(CLICK_PREFIX)
        || click
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return false;
    }
    let path = click.split(['?', '#']).next().unwrap_or_default();
    !path.split('/').any(is_dot_segment)
}

/// `.` or `..`, with any of the dots written `%2e` or `%2E`.
fn is_dot_segment(segment: &str) -> bool {
    let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
    decoded == "." || decoded == ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_paths_only() {
        for ok in [
            "/webchat/",
            "/webchat/?session=main",
            "/webchat/?session=a.b#end",
            "/webchat/attachments/abc.png",
            "/webchat/x..y/",
            "/webchat/?q=../..",
            "/webchat/#/../..",
            "/webchat/%2f",
        ] {
            assert!(is_relay_path(ok), "{ok}");
        }
        for bad in [
            "",
            "/",
            "/webchat",
            "webchat/",
            "/etc/passwd",
            "//evil.example/webchat/",
            "/\\evil.example/",
            "https://evil.example/webchat/",
            "http://127.0.0.1:18999/webchat/",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "/webchat/../admin",
            "/webchat/..",
            "/webchat/./x",
            "/webchat/%2e%2e/x",
            "/webchat/%2E%2e/x",
            "/webchat/.%2e/x",
            "/webchat/%2e./x",
            "/webchat/%2e/x",
            "/webchat/a/../../x",
            "/webchat/..?x",
            "/webchat/..#x",
            "/webchat\\x",
            "/webchat/\\..\\x",
            "/webchat/a b",
            "/webchat/a\tb",
            "/webchat/a\nb",
            "/webchat/a\u{0}b",
            "/webchat/a\u{2028}b",
            "/webchat/a\u{a0}b",
        ] {
            assert!(!is_relay_path(bad), "{bad:?}");
        }
        let long = format!("/webchat/{}", "x".repeat(MAX_CLICK_BYTES));
        assert!(!is_relay_path(&long));
    }
}
