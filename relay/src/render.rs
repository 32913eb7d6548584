//! Markdown → sanitized HTML for assistant messages.
//!
//! The page inserts this HTML as is, so this is the XSS boundary: whatever
//! the model (or a hostile transcript) says goes through ammonia's
//! allow-list. Links get `rel="noopener noreferrer"` and open in a new tab.

use std::collections::HashSet;
use std::sync::OnceLock;

use loopchat_proto::Role;
use pulldown_cmark::{Options, Parser, html};

use crate::store::StoredMessage;

fn builder() -> ammonia::Builder<'static> {
    let mut b = ammonia::Builder::default();
    b.link_rel(Some("noopener noreferrer nofollow"))
        .set_tag_attribute_value("a", "target", "_blank")
        .url_schemes(HashSet::from(["http", "https", "mailto"]))
        .add_tag_attributes("code", &["class"])
        .add_tag_attributes("input", &["type", "checked", "disabled"])
        .add_tags(&["input"]);
    b
}

fn sanitizer() -> &'static ammonia::Builder<'static> {
    static CLEANER: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    CLEANER.get_or_init(builder)
}

/// Alerts may come from a notify-only token: no `<img>` in their bodies, so
/// that opening one cannot make the browser fetch anything (a tracking
/// pixel). The alert's own image is shown apart, from the relay.
fn alert_sanitizer() -> &'static ammonia::Builder<'static> {
    static CLEANER: OnceLock<ammonia::Builder<'static>> = OnceLock::new();
    CLEANER.get_or_init(|| {
        let mut b = builder();
        b.rm_tags(&["img"]);
        b
    })
}

pub fn markdown_to_html(text: &str) -> String {
    render_with(text, sanitizer())
}

/// An alert's body: [`markdown_to_html`] without images.
pub fn alert_markdown_to_html(text: &str) -> String {
    render_with(text, alert_sanitizer())
}

fn render_with(text: &str, cleaner: &ammonia::Builder<'static>) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);
    let mut raw = String::with_capacity(text.len() * 3 / 2);
    html::push_html(&mut raw, Parser::new_ext(text, options));
    cleaner.clean(&raw).to_string()
}

/// Adds `html` to assistant messages as they are read or written.
pub fn decorate(m: &mut StoredMessage) {
    if m.message.role == Role::Assistant {
        m.message.html = Some(markdown_to_html(&m.message.content.text()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_sanitizes() {
        let h = markdown_to_html(
            "**bold** `x`\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n[l](https://e.com)",
        );
        assert!(h.contains("<strong>bold</strong>"));
        assert!(h.contains("<table>"));
        assert!(h.contains(r#"target="_blank""#));
        assert!(h.contains("noopener"));
        let evil = markdown_to_html(
            "<script>alert(1)</script><img src=x onerror=alert(1)> [x](javascript:alert(1)) <iframe src=//e></iframe>",
        );
        assert!(!evil.contains("<script"), "{evil}");
        assert!(!evil.contains("onerror"), "{evil}");
        assert!(!evil.contains("href=\"javascript"), "{evil}");
        let link =
            markdown_to_html("[x](javascript:alert(1)) and <a href=\"javascript:alert(2)\">y</a>");
        assert!(!link.contains("javascript:alert(2)"), "{link}");
        assert!(!link.contains("href=\"javascript"), "{link}");
        assert!(!evil.contains("<iframe"), "{evil}");
        let alert = alert_markdown_to_html("![p](https://e.com/pixel.gif) <img src=x> **b**");
        assert!(!alert.contains("<img"), "{alert}");
        assert!(alert.contains("<strong>b</strong>"), "{alert}");
        let code = markdown_to_html("```rust\nfn main() {}\n```");
        assert!(code.contains(r#"class="language-rust""#), "{code}");
    }
}
