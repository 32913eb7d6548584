//! `$…$` and `$$…$$` to MathML, which Chromium, Firefox and WebKit render
//! natively: no script and no web font in the page.

use std::panic::{AssertUnwindSafe, catch_unwind};

use pulldown_cmark_escape::escape_html;
use pulldown_latex::config::DisplayMode;
use pulldown_latex::{Parser, RenderConfig, Storage, push_mathml};

/// Longer formulas are shown as their source.
const MAX_TEX_BYTES: usize = 16 * 1024;

/// The MathML of one formula. A formula the renderer cannot take is shown
/// as its source in a `<code>`.
pub fn formula(tex: &str, display: bool) -> String {
    let display_mode = if display {
        DisplayMode::Block
    } else {
        DisplayMode::Inline
    };
    if tex.len() <= MAX_TEX_BYTES {
        // The renderer copies `<`, `>` and `&` of its input into the markup
        // as they are (`<mo><</mo>`), so they are given to it as commands,
        // and no source annotation (copied raw too) is asked for.
        let tex = tex
            .replace('&', r" \& ")
            .replace('<', r" \lt ")
            .replace('>', r" \gt ");
        let storage = Storage::new();
        let config = RenderConfig {
            display_mode,
            ..RenderConfig::default()
        };
        let mut out = String::new();
        // The renderer is young and has `expect`s on paths a hostile reply
        // can reach; one formula must not take the request with it.
        let rendered = catch_unwind(AssertUnwindSafe(|| {
            push_mathml(&mut out, Parser::new(&tex, &storage), config)
        }));
        if let Ok(Ok(())) = rendered {
            let out = out
                .replace("><</", ">&lt;</")
                .replace(">></", ">&gt;</")
                .replace(">&</", ">&amp;</");
            if well_formed(&out) {
                return out;
            }
        }
    }
    let mut out = String::from("<code class=\"language-math\">");
    let _ = escape_html(&mut out, tex);
    out.push_str("</code>");
    out
}

/// Every `<` opens or closes an element and every `&` starts an entity:
/// nothing of the formula reached the markup as markup. The sanitizer still
/// has the last word; this keeps a renderer slip from becoming odd markup.
fn well_formed(mathml: &str) -> bool {
    let rest = |i: usize| &mathml[i + 1..];
    mathml
        .match_indices('<')
        .all(|(i, _)| rest(i).starts_with(|c: char| c.is_ascii_lowercase() || c == '/'))
        && mathml.match_indices('&').all(|(i, _)| {
            ["amp;", "lt;", "gt;", "quot;", "#"]
                .iter()
                .any(|e| rest(i).starts_with(e))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_elements(html: &str) -> bool {
        well_formed(html) && !html.contains("<script") && !html.contains("<img")
    }

    #[test]
    fn inline_and_block_formulas() {
        let inline = formula(r"x^2", false);
        assert!(inline.starts_with("<math"), "{inline}");
        assert!(inline.contains("<msup>"), "{inline}");
        let block = formula(r"\frac{a}{b}", true);
        assert!(block.contains("<mfrac>"), "{block}");
        assert!(block.contains(r#"display="block""#), "{block}");
        let order = formula("a < b > c", false);
        assert!(only_elements(&order), "{order}");
        assert!(order.contains("<mo>&lt;</mo>"), "{order}");
        assert!(order.contains("<mo>&gt;</mo>"), "{order}");
    }

    #[test]
    fn hostile_or_broken_input_stays_text() {
        for tex in [
            r"\frac{",
            r"}}}}",
            "\\begin{matrix} a & b",
            "<script>alert(1)</script>",
            "\\text{<img src=x onerror=alert(1)>}",
            "\\href{javascript:alert(1)}{x}",
            "\u{0}\u{FFFF}\\mathbb{\u{10FFFF}}",
            "a &amp; b &lt;script&gt;",
        ] {
            let out = formula(tex, false);
            assert!(only_elements(&out), "{tex}: {out}");
        }
        let huge = "x".repeat(MAX_TEX_BYTES + 1);
        assert!(formula(&huge, true).starts_with("<code"));
    }
}
