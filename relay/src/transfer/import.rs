//! Files made into new sessions: a pi (or loopchat) session file of any
//! version the store reads, or ChatGPT's `conversations.json`.
//!
//! Everything is checked before anything is written, and an error names
//! where the file is wrong (a line, a conversation's index): a file that is
//! refused leaves the store as it was. Each session gets a new key and
//! session id, so an import never touches an existing session (a file
//! exported from this very relay comes back as a copy).

use std::collections::HashSet;

use loopchat_proto::{Content, ImportFormat, ImportedSession, Role};
use serde_json::{Map, Value};

use crate::store::{
    NewMessage, NewSession, Origin, SESSION_VERSION, Store, StoreError, new_entry_id, parse_line,
    session_info_line,
};

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file is not what it should be; nothing was written.
    #[error("{0}")]
    Invalid(String),
    #[error(
        "this relay serves another tool's sessions (--store); imports go into the loopchat home's store only"
    )]
    ForeignStore,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(message: impl Into<String>) -> ImportError {
    ImportError::Invalid(message.into())
}

/// Imports `bytes` as new sessions, one per conversation, in the file's
/// order. Blocking parts run on the blocking pool.
pub async fn import(
    store: &Store,
    bytes: Vec<u8>,
    format: ImportFormat,
) -> Result<Vec<ImportedSession>, ImportError> {
    if store.is_foreign() {
        return Err(ImportError::ForeignStore);
    }
    let prepared = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || prepare(&store, &bytes, format))
            .await
            .map_err(|e| ImportError::Store(StoreError::Io(std::io::Error::other(e))))??
    };
    let entries = store.add_sessions(prepared).await?;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let transcript = store.transcript(&e.session_id)?;
        let (messages, title) = tokio::task::spawn_blocking(move || {
            Ok::<_, StoreError>((transcript.conversation()?.len(), transcript.name()?))
        })
        .await
        .map_err(|e| StoreError::Io(std::io::Error::other(e)))??;
        out.push(ImportedSession {
            key: e.key,
            session_id: e.session_id,
            title,
            messages,
        });
    }
    Ok(out)
}

/// The sessions `bytes` makes, checked and ready to write.
pub fn prepare(
    store: &Store,
    bytes: &[u8],
    format: ImportFormat,
) -> Result<Vec<NewSession>, ImportError> {
    let format = match format {
        ImportFormat::Auto => match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => ImportFormat::Chatgpt,
            Some(b'{') => ImportFormat::Pi,
            Some(_) => {
                return Err(invalid(
                    "not a file this relay imports: expected a pi session file (JSON lines) or \
                     ChatGPT's conversations.json (a JSON array)",
                ));
            }
            None => return Err(invalid("the file is empty")),
        },
        f => f,
    };
    let mut keys = HashSet::new();
    let mut new_key = || loop {
        let mut id = uuid::Uuid::new_v4().simple().to_string();
        id.truncate(12);
        let key = format!("import-{id}");
        if store.session(&key).is_none() && keys.insert(key.clone()) {
            return key;
        }
    };
    match format {
        ImportFormat::Chatgpt => {
            let conversations = chatgpt(bytes)?;
            if conversations.is_empty() {
                return Err(invalid(
                    "no conversation in the file has a message to import",
                ));
            }
            Ok(conversations
                .into_iter()
                .map(|c| {
                    let session_id = uuid::Uuid::new_v4().to_string();
                    NewSession {
                        key: new_key(),
                        bytes: c.transcript(store, &session_id),
                        session_id,
                        updated_at: c.updated_at,
                    }
                })
                .collect())
        }
        _ => {
            let session_id = uuid::Uuid::new_v4().to_string();
            Ok(vec![NewSession {
                key: new_key(),
                bytes: pi(store, bytes, &session_id)?,
                session_id,
                updated_at: crate::clock::now_millis(),
            }])
        }
    }
}

/// A pi session file as a v3 transcript for `session_id`: every line must
/// be a JSON object (a line that is not is an error, not skipped as a
/// reader would), at least one a message; an older version is upgraded as
/// the store upgrades its own files. A v3 file is kept byte for byte but
/// for its header, which gets the new session id.
fn pi(store: &Store, bytes: &[u8], session_id: &str) -> Result<Vec<u8>, ImportError> {
    let mut version = None;
    let mut messages = 0usize;
    let mut seen_entry = false;
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let n = i + 1;
        let obj = match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(o)) => o,
            Ok(_) => return Err(invalid(format!("line {n}: not a JSON object"))),
            Err(e) => return Err(invalid(format!("line {n}: not valid JSON ({e})"))),
        };
        if obj.get("type").and_then(Value::as_str) == Some("session") {
            if seen_entry || version.is_some() {
                return Err(invalid(format!(
                    "line {n}: a session header after the first line"
                )));
            }
            let v = match obj.get("version") {
                None => 1,
                Some(v) => v.as_u64().ok_or_else(|| {
                    invalid(format!("line {n}: the header's version is not a number"))
                })?,
            };
            if v > SESSION_VERSION {
                return Err(invalid(format!(
                    "line {n}: session format v{v}; this relay reads up to v{SESSION_VERSION}"
                )));
            }
            version = Some(v);
            continue;
        }
        seen_entry = true;
        if parse_line(line, 0).is_some() {
            messages += 1;
        }
    }
    if messages == 0 {
        return Err(invalid(
            "the file has no message: not a pi session file (one JSON entry per line)",
        ));
    }
    let v3 = if version == Some(SESSION_VERSION) {
        let mut v = bytes.to_vec();
        if v.last() != Some(&b'\n') {
            v.push(b'\n');
        }
        v
    } else {
        store.as_v3(bytes, session_id)
    };
    Ok(with_session_id(&v3, session_id))
}

/// `v3` with its header's `id` set to `session_id` (the rest as it was).
fn with_session_id(v3: &[u8], session_id: &str) -> Vec<u8> {
    let start = v3.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let end = v3[start..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(v3.len(), |p| start + p);
    let Ok(Value::Object(mut header)) = serde_json::from_slice::<Value>(&v3[start..end]) else {
        return v3.to_vec();
    };
    header.insert("id".into(), session_id.into());
    let mut out = serde_json::to_vec(&Value::Object(header)).unwrap_or_default();
    out.extend_from_slice(&v3[end..]);
    out
}

/// One ChatGPT conversation, reduced to its current branch.
struct Conversation {
    title: Option<String>,
    created_at: i64,
    updated_at: i64,
    model: Option<String>,
    messages: Vec<(Role, String, i64, Option<String>)>,
}

impl Conversation {
    fn transcript(&self, store: &Store, session_id: &str) -> Vec<u8> {
        let mut out = store.header_line(session_id, self.created_at);
        let mut ids = HashSet::new();
        let mut fresh = || loop {
            let id = new_entry_id();
            if ids.insert(id.clone()) {
                return id;
            }
        };
        let mut parent: Option<String> = None;
        for (role, text, at, model) in &self.messages {
            let mut m = NewMessage::new(*role, Content::Text(text.clone()), *at);
            if *role == Role::Assistant {
                m.origin = Some(Origin {
                    api: "chatgpt-export".into(),
                    provider: "openai".into(),
                    model: model
                        .clone()
                        .or_else(|| self.model.clone())
                        .unwrap_or_else(|| "unknown".into()),
                });
            }
            let id = fresh();
            out.extend_from_slice(&m.to_line(&id, parent.as_deref()));
            parent = Some(id);
        }
        if let Some(title) = &self.title {
            out.extend_from_slice(&session_info_line(
                &fresh(),
                parent.as_deref(),
                self.updated_at,
                title,
            ));
        }
        out
    }
}

fn seconds_to_ms(v: Option<&Value>) -> Option<i64> {
    let s = v?.as_f64()?;
    (0.0..1e11)
        .contains(&s)
        .then(|| (s * 1000.0).round() as i64)
}

/// ChatGPT's export: an array of conversations, each a `mapping` of nodes
/// (`message`, `parent`, `children`) and the `current_node` the user last
/// saw. The branch is `current_node` and its parents; of it, user and
/// assistant messages with text are kept (system and hidden messages, tool
/// calls and their output are not). Conversations with nothing to keep are
/// left out.
fn chatgpt(bytes: &[u8]) -> Result<Vec<Conversation>, ImportError> {
    let all: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(format!("not valid JSON ({e})")))?;
    let Value::Array(all) = all else {
        return Err(invalid(
            "not a ChatGPT export: expected an array of conversations",
        ));
    };
    let mut out = Vec::new();
    for (i, c) in all.iter().enumerate() {
        let at = |what: String| invalid(format!("conversation at index {i}: {what}"));
        let Value::Object(c) = c else {
            return Err(at("not an object".into()));
        };
        let Some(Value::Object(mapping)) = c.get("mapping") else {
            return Err(at("no `mapping` object".into()));
        };
        let Some(current) = c.get("current_node").and_then(Value::as_str) else {
            return Err(at("no `current_node`".into()));
        };
        let title = match c.get("title") {
            Some(Value::String(t)) => {
                let t: String = t.chars().filter(|ch| !ch.is_control()).collect();
                Some(t.trim().chars().take(200).collect::<String>()).filter(|t| !t.is_empty())
            }
            None | Some(Value::Null) => None,
            Some(_) => return Err(at("`title` is not a string".into())),
        };
        let created_at = seconds_to_ms(c.get("create_time")).unwrap_or(0);
        let model = c
            .get("default_model_slug")
            .and_then(Value::as_str)
            .map(str::to_owned);
        // The branch, newest first.
        let mut branch: Vec<&Map<String, Value>> = Vec::new();
        let mut next = Some(current.to_owned());
        while let Some(id) = next {
            if branch.len() > mapping.len() {
                return Err(at("the parents of `current_node` form a cycle".into()));
            }
            let Some(Value::Object(node)) = mapping.get(&id) else {
                return Err(at(if branch.is_empty() {
                    format!("`current_node` {id:?} is not in `mapping`")
                } else {
                    format!("node {id:?}, a parent on the current branch, is not in `mapping`")
                }));
            };
            branch.push(node);
            next = match node.get("parent") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) => Some(p.clone()),
                Some(_) => return Err(at(format!("node {id:?}: `parent` is not a string"))),
            };
        }
        let mut messages = Vec::new();
        for node in branch.into_iter().rev() {
            let id = node.get("id").and_then(Value::as_str).unwrap_or("?");
            let Some(message) = node.get("message").filter(|m| !m.is_null()) else {
                continue;
            };
            let Value::Object(message) = message else {
                return Err(at(format!("node {id:?}: `message` is not an object")));
            };
            if let Some(kept) = chatgpt_message(message, created_at)
                .map_err(|what| at(format!("node {id:?}: {what}")))?
            {
                messages.push(kept);
            }
        }
        if messages.is_empty() {
            continue;
        }
        let last = messages.last().map_or(created_at, |m| m.2);
        out.push(Conversation {
            title,
            created_at,
            updated_at: seconds_to_ms(c.get("update_time"))
                .unwrap_or(last)
                .max(last),
            model,
            messages,
        });
    }
    Ok(out)
}

/// The message of one node, if it is one the chat shows.
#[allow(clippy::type_complexity)]
fn chatgpt_message(
    message: &Map<String, Value>,
    fallback_ms: i64,
) -> Result<Option<(Role, String, i64, Option<String>)>, String> {
    let role = message
        .get("author")
        .and_then(|a| a.get("role"))
        .and_then(Value::as_str)
        .ok_or("the message has no `author.role`")?;
    let role = match role {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        // system, tool: not part of the conversation as its people saw it.
        _ => return Ok(None),
    };
    let metadata = message.get("metadata");
    let hidden = metadata
        .and_then(|m| m.get("is_visually_hidden_from_conversation"))
        .and_then(Value::as_bool)
        == Some(true);
    // A call to a tool (the browser, python) is addressed to it, not "all".
    let to_tool = message
        .get("recipient")
        .and_then(Value::as_str)
        .is_some_and(|r| r != "all");
    if hidden || to_tool {
        return Ok(None);
    }
    let Some(Value::Object(content)) = message.get("content") else {
        return Err("the message has no `content` object".into());
    };
    match content.get("content_type").and_then(Value::as_str) {
        Some("text" | "multimodal_text") => {}
        // Code run by a tool, its output, reasoning, custom instructions.
        _ => return Ok(None),
    }
    let Some(Value::Array(parts)) = content.get("parts") else {
        return Err("`content.parts` is not an array".into());
    };
    // Text parts; images and files in a multimodal message are pointers to
    // ChatGPT's own storage, which the export does not contain.
    let text = parts
        .iter()
        .filter_map(Value::as_str)
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n");
    if text.trim().is_empty() {
        return Ok(None);
    }
    let at = seconds_to_ms(message.get("create_time")).unwrap_or(fallback_ms);
    let model = metadata
        .and_then(|m| m.get("model_slug"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Some((role, text, at, model)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_gets_the_new_id_and_the_rest_stays() {
        let v3 = b"{\"type\":\"session\",\"version\":3,\"id\":\"old\",\"cwd\":\"/x\"}\n{\"a\":1}\n";
        let out = with_session_id(v3, "new");
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("\"id\":\"new\""), "{text}");
        assert!(text.contains("\"cwd\":\"/x\""), "{text}");
        assert!(text.ends_with("\n{\"a\":1}\n"), "{text}");
    }

    #[test]
    fn chatgpt_errors_name_the_conversation() {
        let e = chatgpt(br#"[{"mapping":{},"current_node":"a"},{}]"#)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("conversation at index 0"), "{e}");
        let e = chatgpt(br#"{"mapping":{}}"#).err().unwrap().to_string();
        assert!(e.contains("array of conversations"), "{e}");
        let cyc = br#"[{"mapping":{"a":{"id":"a","parent":"b"},"b":{"id":"b","parent":"a"}},"current_node":"a"}]"#;
        let e = chatgpt(cyc).err().unwrap().to_string();
        assert!(e.contains("cycle"), "{e}");
    }
}
