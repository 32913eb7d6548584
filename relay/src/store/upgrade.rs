//! Brings a transcript up to pi's format v3 in place: the headerless files
//! loopchat wrote before it wrote pi's format, and pi's own v1/v2 files (as
//! pi's `migrateToCurrentVersion` does when it opens one).
//!
//! Nothing is lost: every field of every line is kept (a few are added:
//! the header, ids, `parentId`, what pi requires of an assistant message;
//! a string content becomes the one text block it stands for), a line that
//! does not parse is kept as it was, and the file as it was is copied to
//! `<file>.pre-v3.bak` first, the first time only. The new file replaces the
//! old one atomically (written aside, synced, renamed).

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{Map, Value, json};

use super::StoreError;
use super::line::{SESSION_VERSION, new_entry_id, zero_usage};
use super::transcript::Shared;

/// Bytes of the first line looked at to find the header.
const HEADER_PEEK: u64 = 64 * 1024;

/// Where the file as it was before its upgrade is kept.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".pre-v3.bak");
    path.with_file_name(name)
}

/// The header's version, `None` when the first line is no header.
fn header_version(first: &[u8]) -> Option<u64> {
    match serde_json::from_slice::<Value>(first) {
        Ok(Value::Object(h)) if h.get("type").and_then(Value::as_str) == Some("session") => {
            Some(h.get("version").and_then(Value::as_u64).unwrap_or(1))
        }
        _ => None,
    }
}

/// Upgrades the file if it needs it; true when it was replaced (the caller
/// opens it again).
pub(crate) fn upgrade_if_needed(
    path: &Path,
    session_id: &str,
    file: &File,
    len: u64,
    shared: &Shared,
) -> Result<bool, StoreError> {
    if len == 0 {
        return Ok(false);
    }
    let mut peek = vec![0u8; len.min(HEADER_PEEK) as usize];
    file.read_exact_at(&mut peek, 0)?;
    let first = peek.split(|b| *b == b'\n').next().unwrap_or_default();
    let version = header_version(first);
    if version.is_some_and(|v| v >= SESSION_VERSION) {
        return Ok(false);
    }
    let mut old = vec![0u8; len as usize];
    file.read_exact_at(&mut old, 0)?;
    let new = upgraded(&old, session_id, shared);
    let backup = backup_path(path);
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&backup)
    {
        Ok(mut b) => {
            b.write_all(&old)?;
            b.sync_all()?;
        }
        // Kept from an earlier upgrade: the first one is the original.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    crate::durable::write_atomically(path, &new)?;
    tracing::info!(
        path = %path.display(),
        from_version = version.unwrap_or(0),
        "upgraded the transcript to pi's session format v3 (the original is kept beside it)"
    );
    Ok(true)
}

/// The file's lines in format v3.
pub(crate) fn upgraded(old: &[u8], session_id: &str, shared: &Shared) -> Vec<u8> {
    let lines: Vec<&[u8]> = old
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let parsed: Vec<Option<Map<String, Value>>> = lines
        .iter()
        .map(|l| match serde_json::from_slice::<Value>(l) {
            Ok(Value::Object(o)) => Some(o),
            _ => None,
        })
        .collect();
    let mut ids: HashSet<String> = parsed
        .iter()
        .flatten()
        .filter_map(|o| o.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let mut out = Vec::with_capacity(old.len() + old.len() / 4 + 256);
    let has_header = matches!(parsed.first(), Some(Some(h)) if h.get("type").and_then(Value::as_str) == Some("session"));
    if !has_header {
        let timestamp = parsed
            .iter()
            .flatten()
            .find_map(|o| {
                o.get("timestamp")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(crate::clock::now_rfc3339);
        push_line(
            &mut out,
            json!({
                "type": "session",
                "version": SESSION_VERSION,
                "id": session_id,
                "timestamp": timestamp,
                "cwd": shared.cwd,
            }),
        );
    }
    // Entry ids by line, for `firstKeptEntryIndex` (v1 compactions).
    let mut assigned: Vec<Option<String>> = vec![None; lines.len()];
    let mut previous: Option<String> = None;
    let mut entries: Vec<(usize, Map<String, Value>)> = Vec::new();
    for (i, obj) in parsed.into_iter().enumerate() {
        let Some(mut obj) = obj else { continue };
        if obj.get("type").and_then(Value::as_str) == Some("session") {
            obj.insert("version".into(), SESSION_VERSION.into());
            entries.push((i, obj));
            continue;
        }
        if !obj.contains_key("type") && obj.contains_key("role") {
            // A bare message object: pi's entries wrap it.
            let mut entry = Map::new();
            entry.insert("type".into(), "message".into());
            for key in ["id", "timestamp"] {
                if let Some(v) = obj.get(key)
                    && (key != "timestamp" || v.is_string())
                {
                    entry.insert(key.into(), v.clone());
                }
            }
            entry.insert("message".into(), Value::Object(obj));
            obj = entry;
        }
        let id = match obj.get("id").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => {
                let mut id = new_entry_id();
                while ids.contains(&id) {
                    id = new_entry_id();
                }
                ids.insert(id.clone());
                obj.insert("id".into(), id.clone().into());
                id
            }
        };
        if !obj.contains_key("parentId") {
            obj.insert(
                "parentId".into(),
                previous.clone().map_or(Value::Null, Value::from),
            );
        }
        if !obj.contains_key("timestamp") {
            let ts = obj
                .get("message")
                .and_then(|m| m.get("timestamp"))
                .and_then(Value::as_i64)
                .map(crate::clock::rfc3339_from_millis);
            if let Some(ts) = ts {
                obj.insert("timestamp".into(), ts.into());
            }
        }
        if let Some(Value::Object(message)) = obj.get_mut("message") {
            upgrade_message(message, shared);
        }
        assigned[i] = Some(id.clone());
        previous = Some(id);
        entries.push((i, obj));
    }
    let mut entries = entries.into_iter().peekable();
    for (i, line) in lines.iter().enumerate() {
        match entries.peek() {
            Some((at, _)) if *at == i => {
                let (_, mut obj) = entries.next().unwrap_or_default();
                if obj.get("type").and_then(Value::as_str) == Some("compaction")
                    && let Some(index) = obj.get("firstKeptEntryIndex").and_then(Value::as_u64)
                {
                    if let Some(Some(kept)) = assigned.get(index as usize) {
                        obj.insert("firstKeptEntryId".into(), kept.clone().into());
                    }
                    obj.remove("firstKeptEntryIndex");
                }
                push_line(&mut out, Value::Object(obj));
            }
            // Not JSON: kept as it was (pi skips such lines too).
            _ => {
                out.extend_from_slice(line);
                out.push(b'\n');
            }
        }
    }
    out
}

/// What pi needs of a message that loopchat wrote before it wrote pi's
/// format (and v2 → v3's `hookMessage` → `custom`).
fn upgrade_message(message: &mut Map<String, Value>, shared: &Shared) {
    let role = message
        .get("role")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if role == "hookMessage" {
        message.insert("role".into(), "custom".into());
        return;
    }
    if role != "user" && role != "assistant" {
        return;
    }
    match message.get_mut("content") {
        Some(Value::String(s)) => {
            let text = std::mem::take(s);
            message.insert("content".into(), json!([{"type": "text", "text": text}]));
        }
        None | Some(Value::Null) => {
            message.insert("content".into(), json!([]));
        }
        Some(Value::Array(parts)) => {
            for part in parts {
                inline_image(part, shared);
            }
        }
        Some(_) => {}
    }
    if role == "assistant" {
        let origin = super::line::Origin::default();
        message.entry("api").or_insert(origin.api.into());
        message.entry("provider").or_insert(origin.provider.into());
        message.entry("model").or_insert(origin.model.into());
        message.entry("usage").or_insert_with(zero_usage);
        message.entry("stopReason").or_insert("stop".into());
    }
    if !message.contains_key("timestamp") {
        message.insert("timestamp".into(), 0.into());
    }
}

/// An image part naming a stored attachment gets its bytes as pi's `data`.
fn inline_image(part: &mut Value, shared: &Shared) {
    let Value::Object(p) = part else { return };
    if p.get("type").and_then(Value::as_str) != Some("image") || p.contains_key("data") {
        return;
    }
    let Some(id) = p.get("attachment").and_then(Value::as_str) else {
        return;
    };
    let Some(bytes) = shared.attachment_bytes.get().and_then(|read| read(id)) else {
        tracing::warn!("an image of an old transcript names an attachment that is gone");
        return;
    };
    p.insert(
        "data".into(),
        base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into(),
    );
}

fn push_line(out: &mut Vec<u8>, v: Value) {
    // Serializing a Value tree cannot fail.
    out.extend_from_slice(&serde_json::to_vec(&v).unwrap_or_default());
    out.push(b'\n');
}
