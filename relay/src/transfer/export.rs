//! A session as a file: Markdown, one self-contained HTML page, or its
//! transcript as stored (docs/protocol.md, "Export and import").
//!
//! Markdown and HTML hold the conversation (the current branch: the leaf's
//! path), as the chat shows it; the JSONL is the whole file, every branch.
//! Images travel inside both as `data:` URIs so that an exported file needs
//! nothing else; the HTML page fetches nothing when opened (a CSP of
//! `default-src 'none'`, no script, no remote image).

use std::fmt::Write as _;
use std::sync::Arc;

use base64::Engine;
use loopchat_proto::{Content, ExportFormat, Role};
use pulldown_cmark_escape::escape_html;
use rayon::prelude::*;
use serde_json::Value;

use crate::store::{StoreError, StoredMessage, Transcript};

/// Reads the bytes of an uploaded attachment by id.
pub type Images<'a> = &'a (dyn Fn(&str) -> Option<Vec<u8>> + Sync);

/// What an export says about the session besides its messages.
pub struct Meta<'a> {
    pub key: &'a str,
    pub title: Option<&'a str>,
    pub exported_at_ms: i64,
}

/// The exported file's bytes.
pub fn export(
    transcript: &Transcript,
    format: ExportFormat,
    meta: &Meta<'_>,
    images: Images<'_>,
) -> Result<Vec<u8>, StoreError> {
    Ok(match format {
        ExportFormat::Jsonl => transcript.bytes()?,
        ExportFormat::Md => markdown(&transcript.conversation()?, meta, images).into_bytes(),
        ExportFormat::Html => html(&transcript.conversation()?, meta, images).into_bytes(),
    })
}

/// One piece of a message as an export shows it.
enum Block {
    Text(String),
    /// A `data:` URI.
    Image(String),
    ToolCall {
        name: String,
        arguments: String,
    },
}

/// A block of the HTML page: a reply's text rendered, or a block shown as
/// it is.
enum Piece {
    Rendered(String),
    Shown(Block),
}

/// Only what browsers show as an image and cannot run: the bytes decide,
/// not the part's declared type.
fn data_uri(bytes: &[u8]) -> Option<String> {
    let mime = crate::attachments::sniff(bytes)?;
    Some(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

fn image_of(part: &serde_json::Map<String, Value>, images: Images<'_>) -> Option<String> {
    let bytes = match part.get("data").and_then(Value::as_str) {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?,
        None => images(part.get("attachment")?.as_str()?)?,
    };
    data_uri(&bytes)
}

/// The message's text, images and tool calls, in order. Thinking blocks
/// are left out, as the chat folds them away.
fn blocks(content: &Content, images: Images<'_>) -> Vec<Block> {
    let parts = match content {
        Content::Text(s) => return vec![Block::Text(s.clone())],
        Content::Parts(parts) => parts,
    };
    let mut out = Vec::new();
    for part in parts {
        let Value::Object(p) = part else { continue };
        match p.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    out.push(Block::Text(t.to_owned()));
                }
            }
            Some("image") => match image_of(p, images) {
                Some(uri) => out.push(Block::Image(uri)),
                None => out.push(Block::Text("[an image that is no longer stored]".into())),
            },
            Some("toolCall") => out.push(Block::ToolCall {
                name: p
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("tool")
                    .to_owned(),
                arguments: p
                    .get("arguments")
                    .map(|a| serde_json::to_string_pretty(a).unwrap_or_default())
                    .unwrap_or_default(),
            }),
            _ => {}
        }
    }
    out
}

fn who(m: &StoredMessage) -> String {
    match (m.message.role, m.message.kind.as_deref()) {
        (_, Some("compaction")) => "Summary of earlier messages".into(),
        (_, Some("branch_summary")) => "Summary of another branch".into(),
        (Role::User, _) => "User".into(),
        (Role::Assistant, _) => "Assistant".into(),
        (Role::System, _) => "System".into(),
        (Role::ToolResult, _) => match &m.message.tool_name {
            Some(name) => format!("Tool result ({name})"),
            None => "Tool result".into(),
        },
    }
}

/// `2026-12-07T12:00:05.123Z` as `2026-12-07 12:00:05 UTC`.
fn when(stamp: &str) -> String {
    match (stamp.get(..10), stamp.get(11..19)) {
        (Some(day), Some(time)) if stamp.ends_with('Z') => format!("{day} {time} UTC"),
        _ => stamp.to_owned(),
    }
}

fn title_of<'a>(meta: &'a Meta<'_>) -> &'a str {
    meta.title.filter(|t| !t.is_empty()).unwrap_or(meta.key)
}

/// A fence longer than any run of backticks in `text`, so the text cannot
/// close it.
fn fence_for(text: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat((longest + 1).max(3))
}

fn fenced(out: &mut String, lang: &str, text: &str) {
    let fence = fence_for(text);
    let _ = writeln!(
        out,
        "{fence}{lang}\n{}\n{fence}\n",
        text.trim_end_matches('\n')
    );
}

/// The conversation as Markdown: a heading per message (who, when), the
/// text as written (so the model's code fences stay fences), images as
/// `data:` URIs, tool calls and results in fenced blocks.
pub fn markdown(messages: &[Arc<StoredMessage>], meta: &Meta<'_>, images: Images<'_>) -> String {
    let mut out = String::with_capacity(messages.len() * 256);
    let _ = write!(
        out,
        "# {}\n\n*Exported from loopchat on {}: session `{}`, {} messages (its current branch).*\n\n",
        title_of(meta).replace('\n', " "),
        when(&crate::clock::rfc3339_from_millis(meta.exported_at_ms)),
        meta.key,
        messages.len()
    );
    for m in messages {
        let _ = write!(
            out,
            "---\n\n## {} · {}\n\n",
            who(m),
            when(&m.message.timestamp)
        );
        for block in blocks(&m.message.content, images) {
            match block {
                Block::Text(t) if m.message.role == Role::ToolResult => {
                    fenced(&mut out, "text", &t)
                }
                Block::Text(t) => {
                    out.push_str(t.trim_end());
                    out.push_str("\n\n");
                }
                Block::Image(uri) => {
                    let _ = write!(out, "![image]({uri})\n\n");
                }
                Block::ToolCall { name, arguments } => {
                    let _ = write!(out, "**Tool call** `{name}`\n\n");
                    fenced(&mut out, "json", &arguments);
                }
            }
        }
    }
    out
}

fn esc(out: &mut String, text: &str) {
    // Writing to a String cannot fail.
    let _ = escape_html(&mut *out, text);
}

/// The page's own style: light, and dark when the system is.
const PAGE_CSS: &str = "\
:root{color-scheme:light dark;--bg:#fff;--fg:#1f2328;--muted:#656d76;--line:#d0d7de;--user:#eef2ff;--code:#f6f8fa}\
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#8d96a0;--line:#30363d;--user:#1c2440;--code:#161b22}}\
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.55 system-ui,-apple-system,'Segoe UI',sans-serif}\
main{max-width:52rem;margin:0 auto;padding:1.5rem 1rem 4rem}\
header p{color:var(--muted);font-size:.9rem}\
article{border-top:1px solid var(--line);padding:.75rem 0}\
article.user .body{background:var(--user);border-radius:.6rem;padding:.5rem .8rem}\
.who{font-weight:600;font-size:.9rem}.who time{font-weight:400;color:var(--muted);margin-left:.5rem}\
.text{white-space:pre-wrap;overflow-wrap:anywhere}\
pre{background:var(--code);border:1px solid var(--line);border-radius:.4rem;padding:.6rem .8rem;overflow:auto}\
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}\
img{max-width:100%;height:auto;border-radius:.4rem}\
table{border-collapse:collapse}td,th{border:1px solid var(--line);padding:.25rem .5rem}\
.marker{color:var(--muted);font-style:italic}\
";

/// The conversation as one HTML page that needs nothing else: the relay's
/// sanitized rendering of each reply (highlighted code, MathML; no remote
/// images), the highlighting styles inlined, images as `data:` URIs, no
/// script, and a CSP that lets the page fetch nothing.
pub fn html(messages: &[Arc<StoredMessage>], meta: &Meta<'_>, images: Images<'_>) -> String {
    let mut out = String::with_capacity(messages.len() * 512 + 16 * 1024);
    out.push_str(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; \
         style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n<title>",
    );
    esc(&mut out, title_of(meta));
    out.push_str("</title>\n<style>\n");
    out.push_str(PAGE_CSS);
    out.push('\n');
    out.push_str(highlight_css());
    out.push_str("</style>\n</head>\n<body>\n<main>\n<header><h1>");
    esc(&mut out, title_of(meta));
    out.push_str("</h1><p>Exported from loopchat on ");
    esc(
        &mut out,
        &when(&crate::clock::rfc3339_from_millis(meta.exported_at_ms)),
    );
    out.push_str(": session <code>");
    esc(&mut out, meta.key);
    let _ = writeln!(
        out,
        "</code>, {} messages (its current branch).</p></header>",
        messages.len()
    );
    // Rendering the replies (markdown, highlighting, the sanitizer) is
    // nearly all of an HTML export's time, and each reply is independent:
    // render them on every core (rayon's pool, already the search index's).
    let bodies: Vec<Vec<Piece>> = messages
        .par_iter()
        .map(|m| {
            let reply = m.message.role == Role::Assistant && m.message.kind.is_none();
            blocks(&m.message.content, images)
                .into_iter()
                .map(|block| match block {
                    Block::Text(t) if reply => {
                        Piece::Rendered(crate::render::offline_markdown_to_html(&t))
                    }
                    other => Piece::Shown(other),
                })
                .collect()
        })
        .collect();
    for (m, body) in messages.iter().zip(bodies) {
        let class = match (m.message.role, &m.message.kind) {
            (_, Some(_)) => "marker",
            (Role::User, _) => "user",
            (Role::Assistant, _) => "assistant",
            (Role::System, _) => "system",
            (Role::ToolResult, _) => "tool",
        };
        let _ = write!(out, "<article class=\"{class}\"><div class=\"who\">");
        esc(&mut out, &who(m));
        out.push_str("<time datetime=\"");
        esc(&mut out, &m.message.timestamp);
        out.push_str("\">");
        esc(&mut out, &when(&m.message.timestamp));
        out.push_str("</time></div><div class=\"body\">");
        for piece in body {
            let block = match piece {
                Piece::Rendered(html) => {
                    out.push_str("<div class=\"markdown\">");
                    out.push_str(&html);
                    out.push_str("</div>");
                    continue;
                }
                Piece::Shown(block) => block,
            };
            match block {
                Block::Text(t) if m.message.role == Role::ToolResult => {
                    out.push_str("<pre><code>");
                    esc(&mut out, &t);
                    out.push_str("</code></pre>");
                }
                Block::Text(t) => {
                    out.push_str("<div class=\"text\">");
                    esc(&mut out, &t);
                    out.push_str("</div>");
                }
                Block::Image(uri) => {
                    // A data: URI of base64 holds no quote to escape.
                    let _ = write!(out, "<p><img alt=\"image\" src=\"{uri}\"></p>");
                }
                Block::ToolCall { name, arguments } => {
                    out.push_str("<details><summary>Tool call <code>");
                    esc(&mut out, &name);
                    out.push_str("</code></summary><pre><code>");
                    esc(&mut out, &arguments);
                    out.push_str("</code></pre></details>");
                }
            }
        }
        out.push_str("</div></article>\n");
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

fn highlight_css() -> &'static str {
    static CSS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSS.get_or_init(crate::render::highlight_stylesheet_by_media)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Parent;
    use loopchat_proto::Message;

    fn message(role: Role, content: Content) -> Arc<StoredMessage> {
        Arc::new(StoredMessage {
            offset: 0,
            message: Message::new("a", role, content, "2026-12-07T12:00:05.123Z"),
            client_id: None,
            reply_to: None,
            parent: Parent::Root,
        })
    }

    const PNG: &[u8] = &[
        0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 0, 0, 13,
    ];

    #[test]
    fn html_fetches_nothing_and_escapes_what_the_user_wrote() {
        let messages = vec![
            message(
                Role::User,
                Content::Parts(vec![
                    serde_json::json!({"type": "text", "text": "<script>alert(1)</script>"}),
                    serde_json::json!({"type": "image", "attachment": "x.png", "mimeType": "image/png"}),
                ]),
            ),
            message(
                Role::Assistant,
                Content::Text(
                    "![pixel](https://e.com/p.gif) <img src=\"http://e.com/x\">\n\n```rust\nfn main() {}\n```"
                        .into(),
                ),
            ),
        ];
        let meta = Meta {
            key: "k",
            title: Some("T <b>"),
            exported_at_ms: 0,
        };
        let page = html(&messages, &meta, &|id| {
            (id == "x.png").then(|| PNG.to_vec())
        });
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("src=\"http"), "{page}");
        assert!(page.contains("src=\"data:image/png;base64,"), "{page}");
        assert!(page.contains("default-src 'none'"));
        assert!(page.contains("T &lt;b&gt;"));
        assert!(page.contains("hl-"), "highlighted: {page}");
        assert!(page.contains("prefers-color-scheme: dark"));
    }

    #[test]
    fn markdown_keeps_fences_and_fences_tool_output_safely() {
        let messages = vec![
            message(
                Role::Assistant,
                Content::Text("```rust\nfn main() {}\n```".into()),
            ),
            message(Role::ToolResult, Content::Text("a ``` b".into())),
        ];
        let meta = Meta {
            key: "k",
            title: None,
            exported_at_ms: 0,
        };
        let md = markdown(&messages, &meta, &|_| None);
        assert!(md.contains("```rust\nfn main() {}\n```"), "{md}");
        assert!(md.contains("````text\na ``` b\n````"), "{md}");
        assert!(
            md.contains("## Assistant · 2026-12-07 12:00:05 UTC"),
            "{md}"
        );
    }
}
