//! `read`: a text file (offset/limit, truncated as pi does) or an image.

use base64::Engine as _;
use serde_json::{Value, json};

use super::truncate::{MAX_BYTES, MAX_LINES, TruncatedBy, format_size, truncate_head};
use super::{Output, Workspace, arg_str, arg_usize};

pub const DESCRIPTION: &str = "Read the contents of a file. Supports text files and images (jpg, png, gif, webp). Images are sent as attachments. For text files, output is truncated to 2000 lines or 50KB (whichever is hit first). Use offset/limit for large files. When you need the full file, continue with offset until complete.";

/// Larger files are refused (use `bash` with `sed`/`head`): the relay does
/// not read gigabytes into memory for a tool call.
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Larger images are described, not sent (pi resizes them; the relay has
/// no image codec).
const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;

pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "path": {"type": "string", "description": "Path to the file to read (relative or absolute)"},
            "offset": {"type": "number", "description": "Line number to start reading from (1-indexed)"},
            "limit": {"type": "number", "description": "Maximum number of lines to read"}
        },
        "required": ["path"]
    })
}

pub async fn run(ws: &Workspace, args: &Value) -> Output {
    let path = arg_str(args, "path");
    let offset = arg_usize(args, "offset");
    let limit = arg_usize(args, "limit");
    let real = match ws.resolve(path) {
        Ok(p) => p,
        Err(e) => return Output::error(e),
    };
    let meta = match tokio::fs::metadata(&real).await {
        Ok(m) => m,
        Err(e) => return Output::error(format!("Could not read {path}: {e}")),
    };
    if meta.is_dir() {
        return Output::error(format!(
            "{path} is a directory; use bash with ls to list it"
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Output::error(format!(
            "{path} is {}, more than read takes ({}). Use bash: sed -n '1,2000p' {path}",
            format_size(meta.len() as usize),
            format_size(MAX_FILE_BYTES as usize)
        ));
    }
    let bytes = match tokio::fs::read(&real).await {
        Ok(b) => b,
        Err(e) => return Output::error(format!("Could not read {path}: {e}")),
    };
    if let Some(mime) = image_type(&bytes) {
        if bytes.len() > MAX_IMAGE_BYTES {
            return Output::text(format!(
                "Read image file [{mime}]\n[Image omitted: {} is over the {} inline image limit.]",
                format_size(bytes.len()),
                format_size(MAX_IMAGE_BYTES)
            ));
        }
        let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
        return Output {
            content: vec![
                json!({"type": "text", "text": format!("Read image file [{mime}]")}),
                json!({"type": "image", "data": data, "mimeType": mime}),
            ],
            is_error: false,
        };
    }
    let text = String::from_utf8_lossy(&bytes);
    match text_window(&text, path, offset, limit) {
        Ok(t) => Output::text(t),
        Err(e) => Output::error(e),
    }
}

/// pi's text read: lines from `offset` (1-based), at most `limit`, then the
/// truncation with its continuation note.
pub fn text_window(
    text: &str,
    path: &str,
    offset: Option<usize>,
    limit: Option<usize>,
) -> Result<String, String> {
    let all: Vec<&str> = text.split('\n').collect();
    let start = offset.map_or(0, |o| o.saturating_sub(1));
    if start >= all.len() {
        return Err(format!(
            "Offset {} is beyond end of file ({} lines total)",
            offset.unwrap_or(0),
            all.len()
        ));
    }
    let (selected, user_limited) = match limit {
        Some(l) => {
            let end = (start + l).min(all.len());
            (all[start..end].join("\n"), Some(end - start))
        }
        None => (all[start..].join("\n"), None),
    };
    let t = truncate_head(&selected, MAX_LINES, MAX_BYTES);
    let first = start + 1;
    if t.first_line_exceeds_limit {
        return Ok(format!(
            "[Line {first} is {}, exceeds {} limit. Use bash: sed -n '{first}p' {path} | head -c {MAX_BYTES}]",
            format_size(all[start].len()),
            format_size(MAX_BYTES)
        ));
    }
    if let Some(by) = t.truncated_by {
        let last = first + t.output_lines - 1;
        let next = last + 1;
        let total = all.len();
        return Ok(match by {
            TruncatedBy::Lines => format!(
                "{}\n\n[Showing lines {first}-{last} of {total}. Use offset={next} to continue.]",
                t.content
            ),
            TruncatedBy::Bytes => format!(
                "{}\n\n[Showing lines {first}-{last} of {total} ({} limit). Use offset={next} to continue.]",
                t.content,
                format_size(MAX_BYTES)
            ),
        });
    }
    if let Some(n) = user_limited
        && start + n < all.len()
    {
        let remaining = all.len() - (start + n);
        return Ok(format!(
            "{}\n\n[{remaining} more lines in file. Use offset={} to continue.]",
            t.content,
            start + n + 1
        ));
    }
    Ok(t.content)
}

/// The image types pi sends as images, by their magic bytes.
fn image_type(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if b.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_notes() {
        assert_eq!(text_window("a\nb\nc", "f", None, None).unwrap(), "a\nb\nc");
        assert_eq!(text_window("a\nb\nc", "f", Some(2), None).unwrap(), "b\nc");
        assert_eq!(
            text_window("a\nb\nc\nd", "f", Some(2), Some(1)).unwrap(),
            "b\n\n[2 more lines in file. Use offset=3 to continue.]"
        );
        let e = text_window("a\nb", "f", Some(5), None).unwrap_err();
        assert_eq!(e, "Offset 5 is beyond end of file (2 lines total)");
        let many: String = (1..=2500).map(|i| format!("{i}\n")).collect();
        let t = text_window(&many, "f", None, None).unwrap();
        assert!(
            t.ends_with("[Showing lines 1-2000 of 2501. Use offset=2001 to continue.]"),
            "{}",
            &t[t.len() - 80..]
        );
        let wide = format!("{}\nnext", "x".repeat(60 * 1024));
        let t = text_window(&wide, "f", None, None).unwrap();
        assert!(
            t.starts_with("[Line 1 is 60.0KB, exceeds 50.0KB limit."),
            "{t}"
        );
        let lines: String = (0..100)
            .map(|_| format!("{}\n", "y".repeat(1000)))
            .collect();
        let t = text_window(&lines, "f", None, None).unwrap();
        assert!(
            t.ends_with("[Showing lines 1-51 of 101 (50.0KB limit). Use offset=52 to continue.]"),
            "{}",
            &t[t.len() - 90..]
        );
    }

    #[tokio::test]
    async fn images_are_image_blocks() {
        let d = tempfile::tempdir().unwrap();
        let ws = Workspace::new(d.path(), true).unwrap();
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&[0u8; 16]);
        std::fs::write(d.path().join("i.png"), &png).unwrap();
        let out = run(&ws, &json!({"path": "i.png"})).await;
        assert!(!out.is_error);
        assert_eq!(out.content[0]["text"], "Read image file [image/png]");
        assert_eq!(out.content[1]["type"], "image");
        assert_eq!(out.content[1]["mimeType"], "image/png");
        let back = base64::engine::general_purpose::STANDARD
            .decode(out.content[1]["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(back, png);
        let out = run(&ws, &json!({"path": "missing.txt"})).await;
        assert!(out.is_error);
        assert!(out.text_of().contains("Could not read missing.txt"));
        let out = run(&ws, &json!({"path": "."})).await;
        assert!(out.is_error && out.text_of().contains("directory"));
    }
}
