//! Highlighted code, kept out of the sanitizer's input and put back into
//! its output.
//!
//! A highlighted 2,000-line block is ~20,000 spans; ammonia parsing them
//! back out of the page's HTML cost as much as the highlighting itself. The
//! sanitizer therefore gets each block's `<pre><code class="language-…">`
//! with a placeholder inside, and the block's inner HTML replaces that
//! placeholder afterwards, but only when it passes a narrower allow-list
//! than ammonia's: escaped text and `<span class="hl-…">`/`</span>`
//! ([`is_spans_only`]), which is all either highlighter writes. Anything
//! else in a block goes through ammonia like the rest of the reply.
//!
//! A placeholder is a random nonce of this render plus the block's index:
//! a reply cannot write one (it would have to guess 128 bits, and a reply
//! that holds this render's nonce is rendered without the splice), and the
//! sanitizer leaves it alone (letters and digits). Each must come out of the
//! sanitizer exactly once, or the render is done again without the splice.

use super::highlight::CLASS_PREFIX;

/// The blocks of one render that wait for the sanitizer's output.
pub struct Splice {
    /// `None`: every block goes inline, through the sanitizer.
    nonce: Option<String>,
    blocks: Vec<String>,
}

impl Splice {
    /// A splice for the render of `source`.
    pub fn new(source: &str) -> Self {
        let nonce = format!("lc{:032x}", rand::random::<u128>());
        Self {
            nonce: (!source.contains(&nonce)).then_some(nonce),
            blocks: Vec::new(),
        }
    }

    /// A splice that takes nothing: every block goes through the sanitizer.
    pub fn none() -> Self {
        Self {
            nonce: None,
            blocks: Vec::new(),
        }
    }

    /// What goes inside the block's `<code>` for the sanitizer: a placeholder
    /// for `inner`, or `inner` itself when it is not spans and text only.
    pub fn hold(&mut self, inner: String) -> String {
        match &self.nonce {
            Some(nonce) if is_spans_only(&inner) => {
                let placeholder = format!("{nonce}x{}y", self.blocks.len());
                self.blocks.push(inner);
                placeholder
            }
            _ => inner,
        }
    }

    /// The sanitized HTML with every block in its place, or `None` when a
    /// placeholder did not come out of the sanitizer exactly once.
    pub fn fill(self, sanitized: String) -> Option<String> {
        let Some(nonce) = self.nonce.filter(|_| !self.blocks.is_empty()) else {
            return Some(sanitized);
        };
        let extra: usize = self.blocks.iter().map(String::len).sum();
        let mut out = String::with_capacity(sanitized.len() + extra);
        let mut placed = vec![false; self.blocks.len()];
        let mut rest = sanitized.as_str();
        while let Some(at) = rest.find(nonce.as_str()) {
            out.push_str(&rest[..at]);
            let after = rest[at + nonce.len()..].strip_prefix('x')?;
            let end = after.find('y')?;
            let index: usize = after[..end].parse().ok()?;
            if std::mem::replace(placed.get_mut(index)?, true) {
                return None;
            }
            out.push_str(self.blocks.get(index)?);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        placed.iter().all(|&p| p).then_some(out)
    }
}

/// Whether `html` is text with no markup but `<span class="hl-…">` (classes
/// of letters, digits, `-` and spaces) and `</span>`, with every `&` an
/// entity: what [`highlighted`] writes, and all the render lets past the
/// sanitizer.
pub fn is_spans_only(html: &str) -> bool {
    const OPEN: &str = "<span class=\"";
    const CLOSE: &str = "</span>";
    let mut rest = html;
    while let Some(at) = rest.find(['<', '>', '"', '&']) {
        let (_, tail) = rest.split_at(at);
        if let Some(after) = tail.strip_prefix(OPEN) {
            let Some(end) = after.find("\">") else {
                return false;
            };
            let classes = &after[..end];
            let valid = classes.split(' ').all(|class| {
                class.strip_prefix(CLASS_PREFIX).is_some_and(|name| {
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
            });
            if !valid {
                return false;
            }
            rest = &after[end + 2..];
        } else if let Some(after) = tail.strip_prefix(CLOSE) {
            rest = after;
        } else if tail.starts_with('&') {
            let entity_end = tail.find(';').filter(|&end| {
                end > 1
                    && end <= 8
                    && tail[1..end]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'#')
            });
            let Some(end) = entity_end else {
                return false;
            };
            rest = &tail[end + 1..];
        } else {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_splice_check_takes_only_the_highlighters_alphabet() {
        for ok in [
            "",
            "plain text",
            "a &lt; b &amp;&amp; c &#39;x&#39; &quot;",
            "<span class=\"hl-keyword\">fn</span> x",
            "<span class=\"hl-entity hl-name hl-function\">f</span>",
        ] {
            assert!(is_spans_only(ok), "{ok}");
        }
        for bad in [
            "<b>x</b>",
            "<span class=\"hl-x\" onclick=\"y\">z</span>",
            "<span class=\"banner\">x</span>",
            "<span class=\"hl-x banner\">x</span>",
            "<span class=\"hl-\">x</span>",
            "<span class=\"hl-a\"><img src=x onerror=y></span>",
            "<span class='hl-a'>x</span>",
            "a < b",
            "a > b",
            "say \"hi\"",
            "&",
            "& amp;",
            "&verylongentityname;",
            "<span class=\"hl-a",
            "</code></pre><script>alert(1)</script>",
            "<!-- x -->",
        ] {
            assert!(!is_spans_only(bad), "{bad}");
        }
    }

    #[test]
    fn blocks_come_back_in_their_places_once() {
        let mut splice = Splice::new("source");
        let a = splice.hold("<span class=\"hl-a\">1</span>".to_owned());
        let b = splice.hold("two &amp; three".to_owned());
        let sanitized = format!("<pre><code>{a}</code></pre><p>x</p><pre><code>{b}</code></pre>");
        assert_eq!(
            splice.fill(sanitized).as_deref(),
            Some(
                "<pre><code><span class=\"hl-a\">1</span></code></pre><p>x</p><pre><code>two &amp; three</code></pre>"
            )
        );

        // Not spans only: the block goes to the sanitizer as it is.
        let mut splice = Splice::new("source");
        assert_eq!(splice.hold("<b>x</b>".to_owned()), "<b>x</b>");
        assert_eq!(splice.fill("done".to_owned()).as_deref(), Some("done"));

        // A placeholder lost, or repeated, by the sanitizer: no splice.
        let mut splice = Splice::new("source");
        let a = splice.hold("x".to_owned());
        let _b = splice.hold("y".to_owned());
        assert_eq!(splice.fill(format!("<p>{a}</p>")), None);
        let mut splice = Splice::new("source");
        let a = splice.hold("x".to_owned());
        assert_eq!(splice.fill(format!("{a}{a}")), None);
    }
}
