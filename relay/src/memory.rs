//! Approximate heap sizes, for the per-session byte budget
//! (`session_memory_bytes`): what the event ring and the recent-message
//! window keep is counted in bytes, because a count of items says nothing
//! when one message can be a megabyte.
//!
//! The figures are estimates: string and vector lengths plus a fixed
//! allowance per allocation. They only need to grow with what is really
//! held, so that the budget bounds it.

use loopchat_proto::{Content, Event, EventBody, Message};
use serde_json::Value;

/// Makes large blocks go back to the kernel as soon as they are freed.
///
/// glibc raises its mmap threshold each time a mapped block is freed (up to
/// 32 MiB), after which large message buffers come from its heap arenas,
/// where freed space stays in the RSS: 60 turns of 900 KB left the relay at
/// 142 MiB with only 8 MiB of caches, and 18 MiB with a fixed threshold
/// (docs/benchmarks.md). Blocks of 256 KiB and more are mapped on their own
/// and unmapped when freed; small allocations, nearly all of them, are not
/// affected. Called once at start (mallopt is thread-safe).
pub fn give_large_blocks_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: i32 = 256 * 1024;
        // SAFETY: mallopt only changes allocator tuning; a fixed threshold
        // is a documented setting.
        let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
    }
}

/// Per allocation (header, pointer, length, capacity) and per struct.
const OVERHEAD: usize = 32;

/// Bytes held by `message`, its content and rendered HTML included.
pub fn message_bytes(m: &Message) -> usize {
    let content = match &m.content {
        Content::Text(s) => s.len(),
        Content::Parts(parts) => parts.iter().map(value_bytes).sum(),
    };
    4 * OVERHEAD
        + m.id.len()
        + m.timestamp.len()
        + content
        + m.html.as_ref().map_or(0, String::len)
        + m.stop_reason.as_ref().map_or(0, String::len)
        + m.tool_call_id.as_ref().map_or(0, String::len)
        + m.tool_name.as_ref().map_or(0, String::len)
}

/// Bytes held by one event of a session's log.
pub fn event_bytes(e: &Event) -> usize {
    let body = match &e.body {
        EventBody::Message { message, run_id } => {
            message_bytes(message) + run_id.as_ref().map_or(0, String::len)
        }
        EventBody::Delta { run_id, text } | EventBody::Thinking { run_id, text } => {
            run_id.len() + text.len()
        }
        EventBody::RunStart { run_id } => run_id.len(),
        EventBody::ToolApproval {
            run_id,
            call_id,
            name,
            args,
            expires_at,
        } => run_id.len() + call_id.len() + name.len() + value_bytes(args) + expires_at.len(),
        EventBody::ToolStart {
            run_id,
            call_id,
            name,
            args,
        } => run_id.len() + call_id.len() + name.len() + value_bytes(args),
        EventBody::ToolArgs {
            run_id,
            call_id,
            name,
            delta,
        } => run_id.len() + call_id.len() + name.len() + delta.len(),
        EventBody::ToolUpdate {
            run_id,
            call_id,
            text,
        } => run_id.len() + call_id.len() + text.len(),
        EventBody::ToolApprovalResolved {
            run_id, call_id, ..
        }
        | EventBody::ToolEnd {
            run_id, call_id, ..
        } => run_id.len() + call_id.len(),
        EventBody::RunEnd { run_id, error, .. } => {
            run_id.len() + error.as_ref().map_or(0, String::len)
        }
        EventBody::Notification { notification } => {
            notification.id.len()
                + notification.title.len()
                + notification.body.len()
                + notification.tags.iter().map(String::len).sum::<usize>()
        }
        // Never kept in a session's log.
        EventBody::Reset | EventBody::Sessions { .. } => 0,
    };
    // The Arc, the event itself and its strings.
    3 * OVERHEAD + body
}

/// Bytes held by a JSON value (content parts of stored messages).
pub fn value_bytes(v: &Value) -> usize {
    OVERHEAD
        + match v {
            Value::String(s) => s.len(),
            Value::Array(items) => items.iter().map(value_bytes).sum(),
            Value::Object(fields) => fields
                .iter()
                .map(|(k, v)| OVERHEAD + k.len() + value_bytes(v))
                .sum(),
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopchat_proto::Role;

    #[test]
    fn sizes_grow_with_what_is_held() {
        let mut m = Message::new(
            "m1",
            Role::Assistant,
            Content::Text("x".repeat(10_000)),
            "2026-01-01T00:00:00Z",
        );
        let plain = message_bytes(&m);
        assert!(plain > 10_000 && plain < 11_000, "{plain}");
        m.html = Some("y".repeat(5_000));
        assert!(message_bytes(&m) > plain + 5_000 - 1);
        m.content = Content::Parts(vec![
            serde_json::json!({"type": "text", "text": "z".repeat(20_000)}),
        ]);
        assert!(message_bytes(&m) > 25_000);
        let e = Event {
            seq: 1,
            body: EventBody::Message {
                message: m.clone(),
                run_id: None,
            },
        };
        assert!(event_bytes(&e) > message_bytes(&m));
    }
}
