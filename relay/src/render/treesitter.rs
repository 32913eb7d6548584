//! The common languages, highlighted with tree-sitter.
//!
//! syntect (the fallback, [`super::highlight`]) runs a TextMate grammar's
//! regexes line by line: about 39 ms for a 2,000-line Rust file, twice the
//! budget for a whole reply. tree-sitter parses the same file and runs its
//! highlight query in about 11 ms. Its spans carry the `hl-` classes of the
//! TextMate scope each capture stands for, so the stylesheet made from
//! syntect's themes colours both.
//!
//! What this writes is made of two things only: the code's text, escaped
//! by tree-sitter-highlight's renderer, and `<span class="…">`/`</span>`
//! with a class from [`CAPTURES`]; `super::splice` checks exactly that
//! before it puts a block in after the sanitizer.

use std::cell::RefCell;
use std::sync::OnceLock;

use tree_sitter_highlight::{HighlightConfiguration, Highlighter, HtmlRenderer};

use super::highlight::CLASS_PREFIX;

/// The captures the highlight queries use, and the TextMate scope whose
/// `hl-` classes the stylesheet colours in both themes. Captures not listed
/// here (plain variables, punctuation, labels) get no span: a span that no
/// rule colours would only cost the page a node.
const CAPTURES: &[(&str, &str)] = &[
    ("attribute", "entity.other.attribute-name"),
    ("comment", "comment"),
    ("constant", "constant.other"),
    ("constant.builtin", "constant.language"),
    ("constructor", "entity.name.class"),
    ("escape", "constant.character.escape"),
    ("function", "entity.name.function"),
    ("function.builtin", "support.function"),
    ("function.macro", "support.function"),
    ("function.method", "entity.name.function"),
    ("keyword", "keyword"),
    ("number", "constant.numeric"),
    ("operator", "keyword.operator"),
    ("property", "variable.other.member"),
    ("string", "string"),
    ("string.special", "string.regexp"),
    ("tag", "entity.name.tag"),
    ("type", "storage.type"),
    ("type.builtin", "storage.type"),
    ("variable.builtin", "variable.language"),
    ("variable.parameter", "variable.parameter"),
];

/// The `hl-` classes of a TextMate scope, one per atom
/// (`string.regexp` → `hl-string`, `hl-regexp`).
fn scope_classes(scope: &str) -> Vec<String> {
    scope
        .split('.')
        .map(|atom| format!("{CLASS_PREFIX}{atom}"))
        .collect()
}

/// `class="hl-a hl-b"` for each entry of [`CAPTURES`], in its order.
fn class_attributes() -> &'static [String] {
    static ATTRS: OnceLock<Vec<String>> = OnceLock::new();
    ATTRS.get_or_init(|| {
        CAPTURES
            .iter()
            .map(|(_, scope)| format!("class=\"{}\"", scope_classes(scope).join(" ")))
            .collect()
    })
}

/// A grammar, by the names a fence's info string uses for it.
struct Grammar {
    names: &'static [&'static str],
    config: fn() -> Option<HighlightConfiguration>,
}

fn configured(
    language: tree_sitter::Language,
    name: &str,
    highlights: &str,
    injections: &str,
) -> Option<HighlightConfiguration> {
    let mut config =
        HighlightConfiguration::new(language, name, highlights, injections, "").ok()?;
    let names: Vec<&str> = CAPTURES.iter().map(|(capture, _)| *capture).collect();
    config.configure(&names);
    Some(config)
}

const GRAMMARS: &[Grammar] = &[
    Grammar {
        names: &["rust", "rs"],
        config: || {
            configured(
                tree_sitter_rust::LANGUAGE.into(),
                "rust",
                tree_sitter_rust::HIGHLIGHTS_QUERY,
                tree_sitter_rust::INJECTIONS_QUERY,
            )
        },
    },
    Grammar {
        names: &["python", "py", "python3"],
        config: || {
            configured(
                tree_sitter_python::LANGUAGE.into(),
                "python",
                tree_sitter_python::HIGHLIGHTS_QUERY,
                "",
            )
        },
    },
    Grammar {
        names: &["javascript", "js", "mjs", "cjs", "jsx"],
        config: || {
            configured(
                tree_sitter_javascript::LANGUAGE.into(),
                "javascript",
                &format!(
                    "{}\n{}",
                    tree_sitter_javascript::JSX_HIGHLIGHT_QUERY,
                    tree_sitter_javascript::HIGHLIGHT_QUERY
                ),
                tree_sitter_javascript::INJECTIONS_QUERY,
            )
        },
    },
    Grammar {
        names: &["bash", "sh", "shell", "zsh"],
        config: || {
            configured(
                tree_sitter_bash::LANGUAGE.into(),
                "bash",
                tree_sitter_bash::HIGHLIGHT_QUERY,
                "",
            )
        },
    },
    Grammar {
        names: &["json"],
        config: || {
            configured(
                tree_sitter_json::LANGUAGE.into(),
                "json",
                tree_sitter_json::HIGHLIGHTS_QUERY,
                "",
            )
        },
    },
];

/// The configuration for a fence's language, made once per process. `None`
/// for a language tree-sitter does not take here (syntect may).
fn config_for(lang: &str) -> Option<&'static HighlightConfiguration> {
    static CONFIGS: OnceLock<Vec<Option<HighlightConfiguration>>> = OnceLock::new();
    let configs = CONFIGS.get_or_init(|| GRAMMARS.iter().map(|g| (g.config)()).collect());
    let lang = lang.to_ascii_lowercase();
    let index = GRAMMARS
        .iter()
        .position(|g| g.names.contains(&lang.as_str()))?;
    configs.get(index)?.as_ref()
}

thread_local! {
    // A highlighter holds a parser and query cursors: one per thread (the
    // export renders replies on several), reused from reply to reply.
    static HIGHLIGHTER: RefCell<Highlighter> = RefCell::new(Highlighter::new());
}

/// The highlighted HTML of `code` (spans and escaped text, no `<pre>`), or
/// `None` when the language is not one of these or the highlighter fails.
pub fn highlighted(lang: &str, code: &str) -> Option<String> {
    let config = config_for(lang)?;
    let attributes = class_attributes();
    HIGHLIGHTER.with(|cell| {
        let mut highlighter = cell.try_borrow_mut().ok()?;
        let events = highlighter
            .highlight(config, code.as_bytes(), None, |injected| {
                config_for(injected)
            })
            .ok()?;
        let mut renderer = HtmlRenderer::new();
        renderer
            .render(events, code.as_bytes(), &|highlight, out: &mut Vec<u8>| {
                if let Some(attribute) = attributes.get(highlight.0) {
                    out.extend_from_slice(attribute.as_bytes());
                }
            })
            .ok()?;
        String::from_utf8(renderer.html).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_languages_are_highlighted_with_classes_the_stylesheet_has() {
        for (lang, code) in [
            ("rust", "fn main() { let s = \"<b>\"; } // done\n"),
            ("py", "def f(x):\n    return x + 1  # one\n"),
            ("js", "const f = (x) => x + 1; // one\n"),
            ("jsx", "const a = <div className=\"x\">{y}</div>;\n"),
            ("sh", "for f in *.txt; do echo \"$f\"; done\n"),
            ("json", "{\"a\": [1, true, null]}\n"),
        ] {
            let html = highlighted(lang, code).unwrap_or_else(|| panic!("{lang}: not highlighted"));
            assert!(html.contains("<span class=\"hl-"), "{lang}: {html}");
            assert!(super::super::splice::is_spans_only(&html), "{lang}: {html}");
        }
        let rust = highlighted("rust", "fn main() { let s = \"<b>\"; }\n").unwrap_or_default();
        assert!(
            rust.contains("&lt;b&gt;") && !rust.contains("<b>"),
            "{rust}"
        );
        assert!(highlighted("no-such-language", "x").is_none());
    }

    #[test]
    fn every_span_is_coloured_in_both_themes() {
        // The stylesheet's rules whose selector is one compound of classes:
        // a span is coloured by one when it has all of that rule's classes.
        let css = super::super::highlight::stylesheet();
        let (light, dark) = css
            .split_once(":root[data-theme=\"dark\"]")
            .unwrap_or((&css, ""));
        let rules = |part: &str| -> Vec<Vec<String>> {
            part.lines()
                .filter_map(|line| line.strip_suffix('{'))
                .flat_map(|selectors| selectors.split(','))
                .map(|s| {
                    s.trim()
                        .trim_start_matches(":root[data-theme=\"dark\"]")
                        .trim()
                })
                .filter(|s| s.starts_with('.') && !s.contains(' '))
                .map(|s| {
                    s.split('.')
                        .filter(|c| !c.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .collect()
        };
        let (light, dark) = (rules(light), rules(dark));
        for (capture, scope) in CAPTURES {
            let classes = scope_classes(scope);
            for (theme, rules) in [("light", &light), ("dark", &dark)] {
                assert!(
                    rules
                        .iter()
                        .any(|rule| rule.iter().all(|c| classes.contains(c))),
                    "{capture} ({scope}) has no colour in the {theme} theme"
                );
            }
        }
    }
}
