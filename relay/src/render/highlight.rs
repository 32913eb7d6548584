//! Fenced code, highlighted in the relay: tree-sitter for the common
//! languages ([`super::treesitter`]), syntect (Sublime Text's grammars) for
//! the rest. The page gets spans with `hl-` classes, which
//! `css/highlight.css` colours in light and dark, and runs no highlighter of
//! its own.

use std::sync::OnceLock;

use pulldown_cmark_escape::escape_html;
use syntect::html::{ClassStyle, ClassedHTMLGenerator};
use syntect::parsing::SyntaxSet;
use syntect::util::LinesWithEndings;

use super::splice::Splice;
use super::treesitter;

/// Every class the highlighter writes starts with this; the sanitizer lets
/// through no other class on a span.
pub const CLASS_PREFIX: &str = "hl-";
const CLASS_STYLE: ClassStyle = ClassStyle::SpacedPrefixed {
    prefix: CLASS_PREFIX,
};

/// Blocks larger than this are shown plain: highlighting is linear but not
/// cheap, and a reply is rendered on every read of it.
const MAX_HIGHLIGHT_BYTES: usize = 256 * 1024;

fn syntaxes() -> &'static SyntaxSet {
    static SET: OnceLock<SyntaxSet> = OnceLock::new();
    SET.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// `<pre><code class="language-…">…</code></pre>` for one fenced block,
/// highlighted when the language is known (by name or file extension); its
/// inner HTML is held by `splice` for after the sanitizer when it can be.
pub fn code_block(lang: &str, code: &str, splice: &mut Splice) -> String {
    let mut out = String::with_capacity(code.len() * 2 + 64);
    out.push_str("<pre><code");
    if !lang.is_empty() {
        out.push_str(" class=\"language-");
        // Writing to a String cannot fail.
        let _ = escape_html(&mut out, lang);
        out.push('"');
    }
    out.push('>');
    let inner = highlighted(lang, code).unwrap_or_else(|| {
        let mut text = String::with_capacity(code.len() + 16);
        let _ = escape_html(&mut text, code);
        text
    });
    out.push_str(&splice.hold(inner));
    out.push_str("</code></pre>\n");
    out
}

fn highlighted(lang: &str, code: &str) -> Option<String> {
    if lang.is_empty() || code.len() > MAX_HIGHLIGHT_BYTES {
        return None;
    }
    treesitter::highlighted(lang, code).or_else(|| with_syntect(lang, code))
}

fn with_syntect(lang: &str, code: &str) -> Option<String> {
    let set = syntaxes();
    let syntax = set.find_syntax_by_token(lang)?;
    let mut html = ClassedHTMLGenerator::new_with_class_style(syntax, set, CLASS_STYLE);
    for line in LinesWithEndings::from(code) {
        // A grammar whose regex gives up (a backtracking limit) leaves the
        // block plain rather than half-coloured.
        html.parse_html_for_line_which_includes_newline(line).ok()?;
    }
    Some(html.finalize())
}

/// The stylesheet for the highlighter's classes: a light theme, and a dark
/// one under `:root[data-theme="dark"]` (the page's theme, which boot.js
/// sets from the user's choice or the system's). Committed as
/// `webchat-dist/css/highlight.css`; a test keeps the file equal to this.
pub fn stylesheet() -> String {
    let (light, dark) = theme_css();
    let css = |name: &str| {
        if name == LIGHT {
            light.clone()
        } else {
            dark.clone()
        }
    };
    let mut out = String::from(
        "/* Generated from syntect's themes by relay/src/render/highlight.rs (stylesheet());\n   \
         the test render::highlight::tests::stylesheet_is_current keeps this file equal to it. */\n",
    );
    out.push_str(&css(LIGHT));
    out.push('\n');
    for line in css(DARK).lines() {
        match line.strip_suffix('{') {
            Some(selectors) if !line.trim_start().starts_with("/*") => {
                let scoped: Vec<String> = selectors
                    .trim_end()
                    .split(", ")
                    .map(|s| format!(":root[data-theme=\"dark\"] {s}"))
                    .collect();
                out.push_str(&scoped.join(", "));
                out.push_str(" {");
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

const LIGHT: &str = "InspiredGitHub";
const DARK: &str = "base16-ocean.dark";

/// The light and the dark theme's rules for the `hl-` classes.
fn theme_css() -> (String, String) {
    let themes = syntect::highlighting::ThemeSet::load_defaults();
    let css = |name: &str| {
        themes
            .themes
            .get(name)
            .and_then(|t| syntect::html::css_for_theme_with_class_style(t, CLASS_STYLE).ok())
            .unwrap_or_default()
    };
    (css(LIGHT), css(DARK))
}

/// The same themes for a page without the app's `data-theme` (an exported
/// file, which runs no script): dark under `prefers-color-scheme: dark`.
pub fn stylesheet_by_media() -> String {
    let (light, dark) = theme_css();
    format!("{light}\n@media (prefers-color-scheme: dark) {{\n{dark}\n}}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_languages_get_classes_and_text_stays_escaped() {
        let html = code_block(
            "rust",
            "fn main() { let s = \"<b>\"; }\n",
            &mut Splice::none(),
        );
        assert!(
            html.starts_with("<pre><code class=\"language-rust\">"),
            "{html}"
        );
        assert!(html.contains("<span class=\"hl-"), "{html}");
        assert!(html.contains("&lt;b&gt;"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        // By extension too.
        assert!(code_block("py", "def f(): pass\n", &mut Splice::none()).contains("hl-"));
        // And by syntect, for a language tree-sitter does not take here.
        assert!(code_block("ruby", "def f; end\n", &mut Splice::none()).contains("hl-"));
    }

    #[test]
    fn unknown_languages_and_huge_blocks_are_plain() {
        let html = code_block("no-such-language", "a < b\n", &mut Splice::none());
        assert_eq!(
            html,
            "<pre><code class=\"language-no-such-language\">a &lt; b\n</code></pre>\n"
        );
        let big = "x = 1\n".repeat(MAX_HIGHLIGHT_BYTES / 6 + 1);
        assert!(!code_block("python", &big, &mut Splice::none()).contains("<span"));
        assert_eq!(
            code_block("", "x", &mut Splice::none()),
            "<pre><code>x</code></pre>\n"
        );
        // A hostile info string cannot break out of the attribute.
        let html = code_block("\"><script>", "x", &mut Splice::none());
        assert!(!html.contains("<script>"), "{html}");
    }

    #[test]
    fn stylesheet_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../webchat-dist/css/highlight.css"
        );
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        if committed != stylesheet() {
            if std::env::var_os("LOOPCHAT_WRITE_HIGHLIGHT_CSS").is_some() {
                std::fs::write(path, stylesheet()).unwrap();
            } else {
                panic!(
                    "{path} is not what stylesheet() generates; regenerate it with \
                     LOOPCHAT_WRITE_HIGHLIGHT_CSS=1 cargo test -p loopchat-relay stylesheet_is_current"
                );
            }
        }
    }
}
