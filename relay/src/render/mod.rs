//! Markdown → sanitized HTML for assistant messages.
//!
//! The page inserts this HTML as is, so this is the XSS boundary: whatever
//! the model (or a hostile transcript) says goes through ammonia's
//! allow-list. Links get `rel="noopener noreferrer nofollow"` and open in a
//! new tab.
//!
//! Fenced code is highlighted here ([`highlight`]) and formulas become
//! MathML ([`math`]) before the sanitizer, so what they produce passes the
//! same allow-list as the model's own HTML: the MathML elements, `hl-`
//! classes on spans and `language-` classes on code, and no other class
//! (a reply cannot borrow the page's own classes to dress up as its UI).

mod highlight;
mod math;

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::OnceLock;

use loopchat_proto::Role;
use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd, html};

use crate::store::StoredMessage;

pub use highlight::{
    stylesheet as highlight_stylesheet, stylesheet_by_media as highlight_stylesheet_by_media,
};

/// The MathML Core elements, and the attributes that change how they look.
const MATHML_TAGS: &[&str] = &[
    "math",
    "semantics",
    "annotation",
    "mrow",
    "mi",
    "mn",
    "mo",
    "ms",
    "mtext",
    "mspace",
    "msub",
    "msup",
    "msubsup",
    "munder",
    "mover",
    "munderover",
    "mmultiscripts",
    "mprescripts",
    "none",
    "mfrac",
    "msqrt",
    "mroot",
    "mstyle",
    "merror",
    "mpadded",
    "mphantom",
    "mtable",
    "mtr",
    "mtd",
];
const MATHML_ATTRIBUTES: &[&str] = &[
    "display",
    "displaystyle",
    "scriptlevel",
    "mathvariant",
    "stretchy",
    "symmetric",
    "largeop",
    "movablelimits",
    "accent",
    "accentunder",
    "fence",
    "separator",
    "form",
    "lspace",
    "rspace",
    "minsize",
    "maxsize",
    "linethickness",
    "width",
    "height",
    "depth",
    "voffset",
    "columnalign",
    "rowalign",
    "columnspacing",
    "rowspacing",
    "columnlines",
    "rowlines",
    "encoding",
];

/// Keeps only the classes this module writes: `hl-…` on spans (the
/// highlighter) and `language-…` on code.
fn filter_class<'u>(element: &str, attribute: &str, value: &'u str) -> Option<Cow<'u, str>> {
    if attribute != "class" {
        return Some(Cow::Borrowed(value));
    }
    let prefix = match element {
        "span" => highlight::CLASS_PREFIX,
        "code" => "language-",
        _ => return None,
    };
    let kept: Vec<&str> = value
        .split_ascii_whitespace()
        .filter(|c| c.starts_with(prefix))
        .collect();
    (!kept.is_empty()).then(|| Cow::Owned(kept.join(" ")))
}

fn builder() -> ammonia::Builder<'static> {
    {
        let mut b = ammonia::Builder::default();
        b.link_rel(Some("noopener noreferrer nofollow"))
            .set_tag_attribute_value("a", "target", "_blank")
            .url_schemes(HashSet::from(["http", "https", "mailto"]))
            .add_tag_attributes("code", &["class"])
            .add_tag_attributes("span", &["class"])
            .add_tag_attributes("input", &["type", "checked", "disabled"])
            .add_tags(&["input"])
            .add_tags(MATHML_TAGS)
            .attribute_filter(filter_class);
        for tag in MATHML_TAGS {
            b.add_tag_attributes(tag, MATHML_ATTRIBUTES);
        }
        b
    }
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

/// A reply in an exported file, which must fetch nothing when opened:
/// [`markdown_to_html`] without images (the message's own images are
/// inlined by the export).
pub fn offline_markdown_to_html(text: &str) -> String {
    render_with(text, alert_sanitizer())
}

fn render_with(text: &str, cleaner: &ammonia::Builder<'static>) -> String {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);
    options.insert(Options::ENABLE_MATH);
    let mut raw = String::with_capacity(text.len() * 3 / 2);
    html::push_html(&mut raw, with_code_and_math(Parser::new_ext(text, options)));
    cleaner.clean(&raw).to_string()
}

/// Replaces each fenced or indented code block by its highlighted HTML, and
/// each formula by its MathML.
fn with_code_and_math<'a>(
    events: impl Iterator<Item = Event<'a>>,
) -> impl Iterator<Item = Event<'a>> {
    let mut code: Option<(String, String)> = None;
    events.filter_map(move |event| match event {
        Event::Start(Tag::CodeBlock(kind)) => {
            let lang = match kind {
                CodeBlockKind::Fenced(info) => {
                    info.split_whitespace().next().unwrap_or("").to_owned()
                }
                CodeBlockKind::Indented => String::new(),
            };
            code = Some((lang, String::new()));
            None
        }
        Event::Text(text) if code.is_some() => {
            if let Some((_, body)) = code.as_mut() {
                body.push_str(&text);
            }
            None
        }
        Event::End(TagEnd::CodeBlock) => code
            .take()
            .map(|(lang, body)| Event::Html(CowStr::from(highlight::code_block(&lang, &body)))),
        Event::InlineMath(tex) => Some(Event::InlineHtml(CowStr::from(math::formula(&tex, false)))),
        Event::DisplayMath(tex) => Some(Event::InlineHtml(CowStr::from(math::formula(&tex, true)))),
        other => Some(other),
    })
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
        assert!(code.contains(r#"<span class="hl-"#), "{code}");
    }

    #[test]
    fn formulas_become_mathml_through_the_sanitizer() {
        let h = markdown_to_html(
            "Euler: $e^{i\\pi} + 1 = 0$ and\n\n$$\\int_0^1 x\\,dx = \\frac{1}{2}$$",
        );
        assert!(h.contains("<math"), "{h}");
        assert!(h.contains("<msup>"), "{h}");
        assert!(h.contains("<mfrac>"), "{h}");
        assert!(h.contains(r#"display="block""#), "{h}");
        // Plain dollar amounts are not formulas.
        let money = markdown_to_html("it costs $5 and $10 today");
        assert!(!money.contains("<math"), "{money}");
    }

    #[test]
    fn the_new_html_does_not_widen_the_allow_list() {
        // A reply's own markup with classes of the page, events, styles, and
        // MathML with script-bearing attributes.
        let evil = markdown_to_html(
            "<span class=\"hl-x banner approval\" onclick=\"x()\" style=\"position:fixed\">a</span> \
             <div class=\"modal\">b</div> <code class=\"language-js card\">c</code> \
             <math><mi href=\"javascript:alert(1)\" onmouseover=\"x()\" style=\"color:red\">x</mi>\
             <annotation-xml encoding=\"text/html\"><img src=x onerror=alert(1)></annotation-xml></math>",
        );
        assert!(evil.contains(r#"<span class="hl-x">"#), "{evil}");
        assert!(
            !evil.contains("banner") && !evil.contains("approval"),
            "{evil}"
        );
        assert!(!evil.contains("modal"), "{evil}");
        assert!(evil.contains(r#"<code class="language-js">"#), "{evil}");
        for bad in [
            "onclick",
            "onmouseover",
            "style=",
            "javascript:",
            "onerror",
            "<img",
            "annotation-xml",
        ] {
            assert!(!evil.contains(bad), "{bad} in {evil}");
        }
    }
}
