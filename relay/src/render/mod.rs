//! Markdown → sanitized HTML for assistant messages.
//!
//! The page inserts this HTML as is, so this is the XSS boundary: whatever
//! the model (or a hostile transcript) says goes through ammonia's
//! allow-list. Links get `rel="noopener noreferrer nofollow"` and open in a
//! new tab.
//!
//! Formulas become MathML ([`math`]) before the sanitizer, so what they
//! produce passes the same allow-list as the model's own HTML: the MathML
//! elements, `hl-` classes on spans and `language-` classes on code, and no
//! other class (a reply cannot borrow the page's own classes to dress up as
//! its UI). Fenced code is highlighted here ([`highlight`]); a block's
//! `<pre><code>` goes through the sanitizer, and its inside too unless it
//! passes the splice's narrower allow-list, escaped text and `hl-` spans
//! only ([`splice`]): re-parsing 20,000 spans cost as much as making them.

mod highlight;
mod math;
mod splice;
mod treesitter;

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::OnceLock;

use loopchat_proto::Role;
use pulldown_cmark::{CodeBlockKind, CowStr, Event, Options, Parser, Tag, TagEnd, html};

use splice::Splice;

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
    let spliced = sanitized(text, cleaner, Splice::new(text));
    spliced.unwrap_or_else(|| {
        // Cannot happen with ammonia as it is (it keeps text as text); if a
        // version ever drops or copies text, every block goes through it.
        sanitized(text, cleaner, Splice::none()).unwrap_or_default()
    })
}

fn sanitized(
    text: &str,
    cleaner: &ammonia::Builder<'static>,
    mut splice: Splice,
) -> Option<String> {
    let mut options = Options::empty();
    options.insert(Options::ENABLE_TABLES);
    options.insert(Options::ENABLE_STRIKETHROUGH);
    options.insert(Options::ENABLE_TASKLISTS);
    options.insert(Options::ENABLE_MATH);
    let mut raw = String::with_capacity(text.len() * 3 / 2);
    html::push_html(
        &mut raw,
        with_code_and_math(Parser::new_ext(text, options), &mut splice),
    );
    splice.fill(cleaner.clean(&raw).to_string())
}

/// Replaces each fenced or indented code block by its highlighted HTML, and
/// each formula by its MathML.
fn with_code_and_math<'a, 's>(
    events: impl Iterator<Item = Event<'a>> + 's,
    splice: &'s mut Splice,
) -> impl Iterator<Item = Event<'a>> + 's {
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
        Event::End(TagEnd::CodeBlock) => code.take().map(|(lang, body)| {
            Event::Html(CowStr::from(highlight::code_block(&lang, &body, splice)))
        }),
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

    #[test]
    fn hostile_code_cannot_leave_its_block() {
        let hostile = "</code></pre><script>alert(1)</script><img src=x onerror=alert(2)>\n\
                       <span class=\"banner\" onclick=\"x()\">y</span> &amp; \"q\" 'r'\n";
        for lang in [
            "rust",
            "python",
            "js",
            "sh",
            "json",
            "ruby",
            "",
            "no-such-language",
        ] {
            let h = markdown_to_html(&format!("```{lang}\n{hostile}```\n\nafter"));
            // Its text stays text: no tag of the output comes from it.
            for tag in h
                .split('<')
                .skip(1)
                .filter_map(|t| t.split_once('>').map(|(tag, _)| tag))
            {
                for bad in ["script", "img", "onclick", "onerror", "banner"] {
                    assert!(!tag.contains(bad), "{lang}: <{tag}> in {h}");
                }
            }
            assert_eq!(h.matches("<pre>").count(), 1, "{lang}: {h}");
            assert_eq!(h.matches("</code></pre>").count(), 1, "{lang}: {h}");
            // And all of it is shown, as it was written.
            let mut text = String::new();
            for (i, piece) in h.split('<').enumerate() {
                text.push_str(if i == 0 {
                    piece
                } else {
                    piece.split_once('>').map_or("", |(_, t)| t)
                });
            }
            let text = text
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&");
            assert_eq!(text, format!("{hostile}\nafter\n"), "{lang}");
            assert!(h.ends_with("<p>after</p>\n"), "{lang}: {h}");
        }
    }

    #[test]
    fn a_reply_cannot_write_a_placeholder() {
        // A placeholder's shape, with a nonce the reply had to guess.
        let forged = format!("lc{:032x}x0y", 7u128);
        let h = markdown_to_html(&format!(
            "{forged}\n\n```rust\nfn a() {{}}\n```\n\n`{forged}`"
        ));
        assert_eq!(h.matches(&forged).count(), 2, "{h}");
        assert!(h.contains("<span class=\"hl-"), "{h}");
    }

    #[test]
    fn spliced_blocks_are_what_the_sanitizer_would_have_made() {
        let reply = "Some *text*\n\n```rust\nfn main() { println!(\"{} <{}>\", 'a', 1); } // c\n```\n\n\
                     | a |\n|---|\n| `x` |\n\n```ruby\nputs \"&\"\n```\n\n```\nplain <b>\n```\n";
        let through_all = sanitized(reply, sanitizer(), Splice::none()).unwrap_or_default();
        let spliced = markdown_to_html(reply);
        // The same document; the highlighters write quotes as entities where the sanitizer writes them plain.
        let plain = |s: &str| {
            s.replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&#x27;", "'")
        };
        assert_eq!(plain(&spliced), plain(&through_all));
        assert!(spliced.contains("<span class=\"hl-"), "{spliced}");
    }
}
