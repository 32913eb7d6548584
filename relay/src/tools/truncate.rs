//! pi's truncation rules for tool output (its `truncate.js`), so that a
//! transcript reads the same whichever agent wrote it: at most
//! [`MAX_LINES`] lines or [`MAX_BYTES`] bytes, whichever comes first; `read`
//! keeps the head, `bash` the tail. Whole lines only, except a single last
//! line longer than the byte limit, whose end `bash` keeps.

pub const MAX_LINES: usize = 2000;
pub const MAX_BYTES: usize = 50 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TruncatedBy {
    Lines,
    Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    pub content: String,
    pub truncated_by: Option<TruncatedBy>,
    pub total_lines: usize,
    pub output_lines: usize,
    pub output_bytes: usize,
    /// `bash`: the only line kept is the end of a longer one.
    pub last_line_partial: bool,
    /// `read`: the first line alone is over the byte limit (nothing kept).
    pub first_line_exceeds_limit: bool,
}

/// `formatSize` of pi: `512B`, `1.5KB`, `2.0MB`.
pub fn format_size(bytes: usize) -> String {
    if bytes < 1024 {
        format!("{bytes}B")
    } else if bytes < 1024 * 1024 {
        format!("{:.1}KB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1}MB", bytes as f64 / (1024.0 * 1024.0))
    }
}

fn untouched(content: &str, total_lines: usize) -> Truncation {
    Truncation {
        content: content.to_owned(),
        truncated_by: None,
        total_lines,
        output_lines: total_lines,
        output_bytes: content.len(),
        last_line_partial: false,
        first_line_exceeds_limit: false,
    }
}

/// Keeps the first lines (file reads).
pub fn truncate_head(content: &str, max_lines: usize, max_bytes: usize) -> Truncation {
    let lines: Vec<&str> = content.split('\n').collect();
    let total_lines = lines.len();
    if total_lines <= max_lines && content.len() <= max_bytes {
        return untouched(content, total_lines);
    }
    if lines[0].len() > max_bytes {
        return Truncation {
            content: String::new(),
            truncated_by: Some(TruncatedBy::Bytes),
            total_lines,
            output_lines: 0,
            output_bytes: 0,
            last_line_partial: false,
            first_line_exceeds_limit: true,
        };
    }
    let mut kept = 0;
    let mut bytes = 0;
    let mut by = TruncatedBy::Lines;
    for (i, line) in lines.iter().enumerate().take(max_lines) {
        let add = line.len() + usize::from(i > 0);
        if bytes + add > max_bytes {
            by = TruncatedBy::Bytes;
            break;
        }
        bytes += add;
        kept += 1;
    }
    if kept >= max_lines && bytes <= max_bytes {
        by = TruncatedBy::Lines;
    }
    let out = lines[..kept].join("\n");
    Truncation {
        output_bytes: out.len(),
        content: out,
        truncated_by: Some(by),
        total_lines,
        output_lines: kept,
        last_line_partial: false,
        first_line_exceeds_limit: false,
    }
}

/// Keeps the last lines (command output).
pub fn truncate_tail(content: &str, max_lines: usize, max_bytes: usize) -> Truncation {
    let lines: Vec<&str> = content.split('\n').collect();
    let total_lines = lines.len();
    if total_lines <= max_lines && content.len() <= max_bytes {
        return untouched(content, total_lines);
    }
    let mut kept: Vec<String> = Vec::new();
    let mut bytes = 0;
    let mut by = TruncatedBy::Lines;
    let mut partial = false;
    for line in lines.iter().rev() {
        if kept.len() >= max_lines {
            break;
        }
        let add = line.len() + usize::from(!kept.is_empty());
        if bytes + add > max_bytes {
            by = TruncatedBy::Bytes;
            if kept.is_empty() {
                let end = tail_on_char_boundary(line, max_bytes);
                bytes = end.len();
                kept.push(end.to_owned());
                partial = true;
            }
            break;
        }
        kept.push((*line).to_owned());
        bytes += add;
    }
    if kept.len() >= max_lines && bytes <= max_bytes {
        by = TruncatedBy::Lines;
    }
    kept.reverse();
    let out = kept.join("\n");
    Truncation {
        output_bytes: out.len(),
        content: out,
        truncated_by: Some(by),
        total_lines,
        output_lines: kept.len(),
        last_line_partial: partial,
        first_line_exceeds_limit: false,
    }
}

/// The last at most `max` bytes of `s`, starting on a character boundary.
fn tail_on_char_boundary(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_pi() {
        assert_eq!(format_size(512), "512B");
        assert_eq!(format_size(1536), "1.5KB");
        assert_eq!(format_size(50 * 1024), "50.0KB");
        assert_eq!(format_size(3 * 1024 * 1024), "3.0MB");
    }

    #[test]
    fn head_by_lines_and_bytes() {
        let t = truncate_head("a\nb\nc", 5, 100);
        assert_eq!(t.truncated_by, None);
        assert_eq!(t.content, "a\nb\nc");
        let t = truncate_head("a\nb\nc\nd", 2, 100);
        assert_eq!(t.truncated_by, Some(TruncatedBy::Lines));
        assert_eq!(
            (t.content.as_str(), t.output_lines, t.total_lines),
            ("a\nb", 2, 4)
        );
        let t = truncate_head("aaaa\nbbbb\ncccc", 10, 9);
        assert_eq!(t.truncated_by, Some(TruncatedBy::Bytes));
        assert_eq!(t.content, "aaaa\nbbbb");
        let t = truncate_head("toolongline\nx", 10, 5);
        assert!(t.first_line_exceeds_limit);
        assert_eq!(t.content, "");
    }

    #[test]
    fn tail_keeps_the_end() {
        let t = truncate_tail("a\nb\nc\nd", 2, 100);
        assert_eq!(t.content, "c\nd");
        assert_eq!(t.truncated_by, Some(TruncatedBy::Lines));
        let t = truncate_tail("x\nééééé", 10, 5);
        // Five bytes from the end of a multi-byte line, on a char boundary.
        assert!(t.last_line_partial);
        assert_eq!(t.content, "éé");
    }
}
