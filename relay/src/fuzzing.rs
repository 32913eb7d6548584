//! Harnesses of the fuzz targets in `fuzz/` (see `docs/fuzzing.md`).
//!
//! Each function takes arbitrary bytes, runs them through the same code a
//! real input takes (the store's readers, the request decoding and checks
//! of the handlers, the OpenAI stream reader, the discovery file reader)
//! and asserts invariants of the result. A panic is a finding. The fuzz
//! targets are one line each over these; `relay/tests/fuzz_corpora.rs`
//! replays the seed corpora and every kept crasher through them in the
//! ordinary `cargo test`.

use loopchat_proto::{
    DEFAULT_SESSION, ErrorCode, NotifyRequest, RpcRequest, ThinkingLevel, validate_session_key,
};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::agent::{AgentEvent, decode_reply};
use crate::http::extract::decode_json;
use crate::notify::draft::{MAX_BODY_BYTES, MAX_TAGS, MAX_TITLE_CHARS, is_valid_id};
use crate::store::{NewMessage, SessionEntry, index_bytes, parse_index, parse_line};
use loopchat_proto::sse::{DecodeError, Decoder};

/// A harness: arbitrary bytes in, a panic on a finding.
pub type Harness = fn(&[u8]);

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` and
/// corpus directory.
pub const TARGETS: &[(&str, Harness)] = &[
    ("store_line", store_line),
    ("store_index", store_index),
    ("rpc_body", rpc_body),
    ("notify_body", notify_body),
    ("openai_sse", openai_sse),
    ("discovery", discovery),
    ("markdown", markdown),
];

/// A reply rendered for the page (`render::markdown_to_html`, with code
/// highlighting and MathML): never a panic, and nothing that runs script or
/// styles the page survives the sanitizer, whatever the model wrote.
pub fn markdown(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let html = crate::render::markdown_to_html(text);
    let lower = html.to_ascii_lowercase();
    for tag in [
        "<script",
        "<iframe",
        "<object",
        "<embed",
        "<style",
        "<annotation-xml",
    ] {
        assert!(!lower.contains(tag), "{tag} survived the sanitizer: {html}");
    }
    for tag in lower.split('<').skip(1).filter_map(|t| t.split('>').next()) {
        for (name, value) in attributes(tag) {
            assert!(
                !name.starts_with("on") && name != "style",
                "attribute {name} survived: <{tag}>"
            );
            assert!(
                !value.trim_start().starts_with("javascript:"),
                "a script URL survived: <{tag}>"
            );
        }
    }
}

/// The attributes of a tag's inside (`a href="x" title='y z'`), skipping
/// quoted values.
fn attributes(tag: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut rest = tag.trim_start_matches(|c: char| !c.is_whitespace());
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return out;
        }
        let end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = &rest[..end];
        rest = &rest[end..];
        let mut value = "";
        if let Some(after) = rest.strip_prefix('=') {
            let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'');
            match quote {
                Some(q) => {
                    let inner = &after[1..];
                    let close = inner.find(q).unwrap_or(inner.len());
                    value = &inner[..close];
                    rest = inner.get(close + 1..).unwrap_or("");
                }
                None => {
                    let close = after.find(char::is_whitespace).unwrap_or(after.len());
                    value = &after[..close];
                    rest = &after[close..];
                }
            }
        }
        out.push((name, value));
    }
}

/// A transcript line: whatever `parse_line` accepts is independent of
/// where the line sits (but for a synthetic id), and a message it read,
/// written back the way the store writes, is one line that reads back the
/// same.
pub fn store_line(data: &[u8]) {
    const AT: u64 = 4096;
    let Some(m) = parse_line(data, AT) else {
        return;
    };
    assert_eq!(m.offset, AT);
    let elsewhere = parse_line(data, AT + 1).expect("the same bytes read at any offset");
    if m.message.id == format!("L{AT}") && elsewhere.message.id == format!("L{}", AT + 1) {
        // An id derived from the offset (the line carries none).
    } else {
        assert_eq!(elsewhere.message, m.message);
    }
    if let Some(reason) = &m.message.stop_reason {
        assert!(
            reason == "aborted" || reason == "error" || reason == "toolUse",
            "{reason:?}"
        );
    }

    let timestamp_ms = OffsetDateTime::parse(&m.message.timestamp, &Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
        .unwrap_or(0);
    let mut written = NewMessage::new(m.message.role, m.message.content.clone(), timestamp_ms);
    written.client_id = m.client_id.clone();
    written.reply_to = m.reply_to.clone();
    written.stop_reason = m.message.stop_reason.clone();
    if let (Some(tool_call_id), Some(tool_name)) = (&m.message.tool_call_id, &m.message.tool_name) {
        written.tool_result = Some(crate::store::ToolResultMeta {
            tool_call_id: tool_call_id.clone(),
            tool_name: tool_name.clone(),
            is_error: m.message.is_error.unwrap_or(false),
        });
    }
    let parent = m.message.parent_id.as_deref();
    let line = written.to_line(&m.message.id, parent);
    assert_eq!(line.last(), Some(&b'\n'));
    assert_eq!(
        line.iter().filter(|b| **b == b'\n').count(),
        1,
        "a written message is exactly one line"
    );
    let back = parse_line(&line[..line.len() - 1], AT).expect("a written line reads back");
    assert_eq!(back.message, written.to_message(&m.message.id, parent));
    // Written in pi's block form, read back as the same text.
    assert_eq!(back.message.content.text(), m.message.content.text());
    assert_eq!(back.client_id, m.client_id);
    assert_eq!(back.reply_to, m.reply_to);
}

/// `sessions.json`: an index that reads, written back as the store writes
/// it, reads back equal; a session it yields never names a file outside the
/// sessions directory.
pub fn store_index(data: &[u8]) {
    let Ok(entries) = parse_index(data) else {
        return;
    };
    let bytes = index_bytes(&entries).expect("an index serialises");
    let again = parse_index(&bytes).expect("a written index reads back");
    assert_eq!(again, entries);
    for (key, raw) in &entries {
        let Some(entry) = SessionEntry::from_raw(key, raw) else {
            continue;
        };
        let id = &entry.session_id;
        assert!(
            !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "unsafe sessionId {id:?}"
        );
        assert_eq!(SessionEntry::from_raw(key, &again[key]), Some(entry));
    }
}

/// `POST /webchat/rpc`: the body decoded and checked as the handler does.
/// An accepted request has a valid key, level and id; the request as a
/// client would re-send it decodes to the same and gets the same verdict.
pub fn rpc_body(data: &[u8]) {
    let req: RpcRequest = match decode_json(data) {
        Ok(r) => r,
        Err(e) => {
            // A session key is checked as it is read.
            assert!(
                matches!(e.code, ErrorCode::BadRequest | ErrorCode::InvalidSessionKey),
                "{e:?}"
            );
            return;
        }
    };
    let verdict = crate::http::rpc::check_request(&req);
    match &verdict {
        Ok((key, thinking)) => {
            assert!(validate_session_key(key).is_ok(), "{key:?}");
            assert_eq!(key, req.session.as_deref().unwrap_or(DEFAULT_SESSION));
            assert_eq!(thinking.is_some(), req.thinking.is_some());
            if let Some(t) = thinking {
                assert_eq!(ThinkingLevel::parse(t.as_str()), Some(*t));
            }
            if let Some(id) = &req.id {
                assert!((1..=200).contains(&id.chars().count()), "{id:?}");
            }
        }
        Err(e) => assert!(
            matches!(e.code, ErrorCode::BadRequest | ErrorCode::InvalidSessionKey),
            "{e:?}"
        ),
    }
    let resent = serde_json::to_vec(&req).expect("a request serialises");
    let again: RpcRequest = decode_json(&resent).expect("a re-sent request decodes");
    assert_eq!(format!("{again:?}"), format!("{req:?}"));
    assert_eq!(
        format!("{:?}", crate::http::rpc::check_request(&again)),
        format!("{verdict:?}")
    );
}

/// `POST /webchat/notify`: the body decoded and turned into a draft as the
/// handler does. An accepted draft obeys every limit, and posted again as a
/// request it is accepted unchanged.
pub fn notify_body(data: &[u8]) {
    let body: Value = match decode_json(data) {
        Ok(v) => v,
        Err(e) => {
            assert_eq!(e.code, ErrorCode::BadRequest);
            return;
        }
    };
    let d = match crate::http::notify::draft(body) {
        Ok(d) => d,
        Err(e) => {
            assert!(
                matches!(e.code, ErrorCode::BadRequest | ErrorCode::InvalidSessionKey),
                "{e:?}"
            );
            return;
        }
    };
    assert!((1..=5).contains(&d.priority));
    assert!(!(d.title.trim().is_empty() && d.body.trim().is_empty()));
    assert!(d.title.chars().count() <= MAX_TITLE_CHARS);
    assert!(d.body.len() <= MAX_BODY_BYTES);
    assert!(d.tags.len() <= MAX_TAGS);
    assert!(d.tags.iter().all(|t| !t.is_empty()));
    if let Some(key) = &d.session {
        assert!(validate_session_key(key).is_ok());
    }
    if let Some(id) = &d.id {
        assert!(is_valid_id(id));
    }
    if let Some(click) = &d.click {
        assert!(loopchat_proto::is_relay_path(click), "{click:?}");
    }
    let req = NotifyRequest {
        title: d.title.clone(),
        body: d.body.clone(),
        priority: Some(d.priority),
        tags: d.tags.clone(),
        click: d.click.clone(),
        session: d.session.clone().map(|key| {
            loopchat_proto::SessionKey::try_from(key).expect("a draft's session key is valid")
        }),
        id: d.id.clone(),
        ..Default::default()
    };
    let again = crate::http::notify::draft(serde_json::to_value(&req).expect("serialises"))
        .expect("an accepted notification is accepted again");
    assert_eq!(again, d);
}

/// Most split points the OpenAI stream target takes from its input.
const MAX_SPLITS: usize = 16;
/// Longest body also fed one byte at a time.
const BYTEWISE_MAX: usize = 4096;

/// The OpenAI streamed reply: input byte 0 tells how many split points
/// follow (two bytes each); the rest is the response body. The body read
/// in one chunk, in the chunks the split points cut, and one byte at a time
/// yields the same events and the same end: how the network cuts a stream
/// never changes the reply.
pub fn openai_sse(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n) % (MAX_SPLITS + 1);
    let cut = rest.len().min(2 * n);
    let (points, body) = rest.split_at(cut);
    let mut splits: Vec<usize> = points
        .chunks_exact(2)
        .map(|p| usize::from(u16::from_le_bytes([p[0], p[1]])) % (body.len() + 1))
        .collect();
    splits.sort_unstable();
    let mut chunks = Vec::with_capacity(splits.len() + 1);
    let mut start = 0;
    for s in splits {
        chunks.push(&body[start..s]);
        start = s;
    }
    chunks.push(&body[start..]);

    // The event stream itself, against a plain reading of the spec.
    let mut decoder = Decoder::default();
    let fed = decoder.feed(body);
    let events: Vec<String> = std::iter::from_fn(|| decoder.next_event()).collect();
    assert_eq!(
        (events, fed.err()),
        reference_events(body),
        "the incremental reader disagrees with the whole-body reading"
    );

    const URL: &str = "http://model.test/v1/chat/completions";
    let whole = decode_reply(URL, [body]);
    for e in &whole.0 {
        if let AgentEvent::Delta(t) | AgentEvent::Thinking(t) = e {
            assert!(!t.is_empty(), "an empty event is never passed on");
        }
    }
    let split = decode_reply(URL, chunks);
    assert_eq!(split, whole, "split differently, the reply changed");
    if body.len() <= BYTEWISE_MAX {
        let bytewise = decode_reply(URL, body.chunks(1));
        assert_eq!(bytewise, whole, "fed byte by byte, the reply changed");
    }
}

/// Server-sent events of a whole body, read the simplest way: BOM off,
/// split at CRLF, CR or LF (an unterminated last line is dropped), then
/// field by field.
fn reference_events(body: &[u8]) -> (Vec<String>, Option<DecodeError>) {
    let body = body
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(body);
    let mut lines = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < body.len() {
        match body[i] {
            b'\n' => {
                lines.push(&body[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&body[start..i]);
                if body.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    for line in lines {
        let Ok(line) = std::str::from_utf8(line) else {
            return (events, Some(DecodeError::Utf8));
        };
        if line.is_empty() {
            events.extend(data.take());
        } else if let Some(value) = line.strip_prefix("data") {
            let value = match value.strip_prefix(':') {
                Some(v) => v.strip_prefix(' ').unwrap_or(v),
                None if value.is_empty() => "",
                None => continue, // a longer field name
            };
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_owned()),
            }
        }
    }
    (events, None)
}

/// `relay.json`: a file that reads, written back as the relay writes it,
/// reads back equal.
pub fn discovery(data: &[u8]) {
    let Ok(d) = loopchat_proto::Discovery::parse(data) else {
        return;
    };
    let bytes = crate::discovery::encode(&d).expect("a discovery file serialises");
    assert_eq!(
        loopchat_proto::Discovery::parse(&bytes).expect("a written discovery file reads back"),
        d
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn attributes_skip_quoted_values() {
        assert_eq!(
            super::attributes(r#"a href="x y" title='on=1 z' onclick=go data"#),
            vec![
                ("href", "x y"),
                ("title", "on=1 z"),
                ("onclick", "go"),
                ("data", "")
            ]
        );
    }
}
