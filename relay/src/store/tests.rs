use std::fs;
use std::io::Write;
use std::sync::Arc;

use loopchat_proto::{Content, Role};

use super::*;

fn plain() -> Decorate {
    Arc::new(|_| {})
}

/// Message `m<i>` with text `text <i>`; the store's other test modules use it too.
pub(super) fn msg(i: usize, role: Role) -> NewMessage {
    NewMessage {
        id: format!("m{i}"),
        role,
        content: Content::Text(format!("text {i}")),
        timestamp_ms: 1_700_000_000_000 + i as i64,
        client_id: None,
        reply_to: None,
        stop_reason: None,
        error_message: None,
        tool_result: None,
    }
}

#[tokio::test]
async fn append_latest_and_page_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), plain()).unwrap();
    let s = store.get_or_create("main").await.unwrap();
    let t = store.transcript(&s.session_id).unwrap();
    let mut last = 0;
    for i in 0..1500 {
        let (_, g) = t.append(&msg(i, Role::User)).unwrap();
        last = g;
    }
    t.durable(last).await.unwrap();

    // A fresh store reads the same file from disk.
    let store = Store::open(dir.path(), plain()).unwrap();
    let t = store.transcript(&s.session_id).unwrap();
    let page = t.latest(100).unwrap();
    assert!(page.has_more);
    let ids: Vec<_> = page.messages.iter().map(|m| m.message.id.clone()).collect();
    assert_eq!(ids.first().unwrap(), "m1400");
    assert_eq!(ids.last().unwrap(), "m1499");

    // Walk all the way back with `before`.
    let mut before = ids[0].clone();
    let mut seen = 100;
    loop {
        let page = t.before(&before, 300).unwrap().unwrap();
        seen += page.messages.len();
        let expected_first = 1400usize.saturating_sub(seen - 100);
        assert_eq!(page.messages[0].message.id, format!("m{expected_first}"));
        if !page.has_more {
            break;
        }
        before = page.messages[0].message.id.clone();
    }
    assert_eq!(seen, 1500);
    assert!(t.before("nope", 10).unwrap().is_none());
}

#[tokio::test]
async fn torn_last_line_is_cut_and_appends_stay_clean() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), plain()).unwrap();
    let s = store.get_or_create("k").await.unwrap();
    let path = {
        let t = store.transcript(&s.session_id).unwrap();
        let (_, g) = t.append(&msg(1, Role::User)).unwrap();
        t.durable(g).await.unwrap();
        t.path().to_owned()
    };
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(br#"{"type":"message","id":"torn","message":{"ro"#)
        .unwrap();

    let store = Store::open(dir.path(), plain()).unwrap();
    let t = store.transcript(&s.session_id).unwrap();
    assert_eq!(t.latest(10).unwrap().messages.len(), 1);
    let (_, g) = t.append(&msg(2, Role::Assistant)).unwrap();
    t.durable(g).await.unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2);
    for line in text.lines() {
        assert!(parse_line(line.as_bytes(), 0).is_some(), "bad line {line}");
    }
}

#[tokio::test]
async fn opens_a_pi_store_and_preserves_unknown_fields() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("sessions.json"),
        r#"{"agent:main":{"sessionId":"0b7d8a4e-0000-4000-8000-000000000001","updatedAt":1700000000000,"thinkingLevel":"low","model":"x","systemSent":true},
           "weird":{"sessionId":"../../etc/passwd"}}"#,
    )
    .unwrap();
    fs::write(
        dir.path().join("0b7d8a4e-0000-4000-8000-000000000001.jsonl"),
        concat!(
            r#"{"type":"session","id":"0b7d8a4e","timestamp":"2025-01-01T00:00:00Z","cwd":"/"}"#, "\n",
            r#"{"type":"message","timestamp":"2025-01-01T00:00:01Z","message":{"role":"user","content":[{"type":"text","text":"hello"}],"timestamp":1735689601000}}"#, "\n",
            r#"{"type":"model_change","model":"m"}"#, "\n",
            r#"{"type":"message","timestamp":"2025-01-01T00:00:02Z","message":{"role":"assistant","content":[{"type":"thinking","thinking":"hm"},{"type":"text","text":"hi **there**"}],"stopReason":"stop"}}"#, "\n",
        ),
    )
    .unwrap();
    let store = Store::open(dir.path(), plain()).unwrap();
    let sessions = store.sessions();
    assert_eq!(sessions.len(), 1, "the unsafe sessionId is ignored");
    assert_eq!(sessions[0].thinking_level, "low");
    let t = store.transcript(&sessions[0].session_id).unwrap();
    let page = t.latest(10).unwrap();
    assert_eq!(page.messages.len(), 2);
    assert_eq!(page.messages[0].message.content.text(), "hello");
    assert_eq!(page.messages[1].message.content.text(), "hi **there**");
    assert!(!page.has_more);

    // A new session makes the index be rewritten: the foreign fields stay.
    store.get_or_create("other").await.unwrap();
    store.touch("agent:main", 1, Some("high"));
    store.flush().await.unwrap();
    let raw: serde_json::Value =
        serde_json::from_slice(&fs::read(dir.path().join("sessions.json")).unwrap()).unwrap();
    assert_eq!(raw["agent:main"]["model"], "x");
    assert_eq!(raw["agent:main"]["systemSent"], true);
    assert_eq!(raw["agent:main"]["thinkingLevel"], "high");
    assert!(raw["other"]["sessionId"].is_string());
}

#[tokio::test]
async fn missing_keys_never_share_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), plain()).unwrap();
    let a = store.get_or_create("a").await.unwrap();
    let b = store.get_or_create("b").await.unwrap();
    assert_ne!(a.session_id, b.session_id);
    assert_eq!(store.get_or_create("a").await.unwrap(), a);
    // and it survives a restart
    let store = Store::open(dir.path(), plain()).unwrap();
    assert_eq!(store.session("b").unwrap().session_id, b.session_id);
}

#[tokio::test]
async fn finds_a_turn_by_client_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), plain()).unwrap();
    let s = store.get_or_create("k").await.unwrap();
    let t = store.transcript(&s.session_id).unwrap();
    let mut user = msg(1, Role::User);
    user.client_id = Some("c-1".into());
    t.append(&user).unwrap();
    assert!(t.find_turn("c-1").unwrap().unwrap().1.is_none());
    let mut reply = msg(2, Role::Assistant);
    reply.reply_to = Some("m1".into());
    t.append(&reply).unwrap();
    let (u, r) = t.find_turn("c-1").unwrap().unwrap();
    assert_eq!(u.message.id, "m1");
    assert_eq!(r.unwrap().message.id, "m2");
    assert!(t.find_turn("c-2").unwrap().is_none());
}

#[tokio::test]
async fn a_session_whose_index_write_failed_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), plain()).unwrap();
    store.get_or_create("old").await.unwrap();
    // The index cannot be replaced while a directory stands in its place.
    fs::remove_file(store.index_path()).unwrap();
    fs::create_dir(store.index_path()).unwrap();
    assert!(store.get_or_create("new").await.is_err());
    assert!(store.session("new").is_none(), "not stored, so not known");
    assert!(
        store.get_or_create("new").await.is_err(),
        "a second attempt writes the index again instead of using the entry"
    );
    fs::remove_dir(store.index_path()).unwrap();
    let s = store.get_or_create("new").await.unwrap();
    let on_disk = parse_index(&fs::read(store.index_path()).unwrap()).unwrap();
    assert_eq!(on_disk["new"]["sessionId"], s.session_id.as_str());
    assert!(on_disk.contains_key("old"));
}

#[tokio::test]
async fn through_ends_at_the_given_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), plain()).unwrap();
    let s = store.get_or_create("main").await.unwrap();
    let t = store.transcript(&s.session_id).unwrap();
    let mut marked = None;
    for i in 0..10 {
        let (stored, _) = t.append(&msg(i, Role::User)).unwrap();
        if i == 6 {
            marked = Some(stored);
        }
    }
    let marked = marked.unwrap();
    let ids = |page: Page| -> Vec<String> {
        page.messages.iter().map(|m| m.message.id.clone()).collect()
    };
    let page = t.through(&marked, 3).unwrap();
    assert!(page.has_more);
    assert_eq!(ids(page), ["m4", "m5", "m6"]);
    let page = t.through(&marked, 100).unwrap();
    assert!(!page.has_more);
    assert_eq!(ids(page).len(), 7);
    assert!(t.through(&marked, 0).unwrap().messages.is_empty());
}

fn big(i: usize, role: Role, bytes: usize) -> NewMessage {
    NewMessage {
        content: Content::Text(format!("{i} {}", "x".repeat(bytes))),
        ..msg(i, role)
    }
}

/// The recent window holds bytes, not a count: large messages push older
/// ones out, which are then read from the file; a retry still finds its
/// turn among the last 512 messages whatever their size.
#[tokio::test]
async fn the_recent_window_evicts_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 1024 * 1024;
    let store = Store::open_with(dir.path(), plain(), budget).unwrap();
    let s = store.get_or_create("big").await.unwrap();
    let t = store.transcript(&s.session_id).unwrap();
    let mut keyed = big(0, Role::User, 300 * 1024);
    keyed.client_id = Some("k0".into());
    t.append(&keyed).unwrap();
    let mut reply = big(1, Role::Assistant, 300 * 1024);
    reply.reply_to = Some("m0".into());
    t.append(&reply).unwrap();
    for i in 2..20 {
        t.append(&big(i, Role::User, 300 * 1024)).unwrap();
        assert!(t.window_bytes() <= budget, "{}", t.window_bytes());
    }
    assert!(t.window_bytes() > 2 * 300 * 1024, "three fit");
    // Reads past the window come from the file.
    let page = t.latest(10).unwrap();
    let ids: Vec<_> = page.messages.iter().map(|m| m.message.id.clone()).collect();
    assert_eq!(ids, (10..20).map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert!(page.has_more);
    let (u, r) = t.find_turn("k0").unwrap().expect("found by its head");
    assert_eq!(u.message.id, "m0");
    assert_eq!(r.unwrap().message.id, "m1");
    assert_eq!(t.before("m1", 5).unwrap().unwrap().messages.len(), 1);

    // Loading the window from the file keeps to the budget too.
    t.release_recent();
    assert_eq!(t.latest(1).unwrap().messages[0].message.id, "m19");
    assert!(t.window_bytes() <= budget && t.window_bytes() > 0);
    assert!(t.find_turn("k0").unwrap().is_some());
    // A message larger than the whole budget is served, not kept.
    t.append(&big(20, Role::User, 2 * budget)).unwrap();
    assert_eq!(t.window_bytes(), 0);
    assert_eq!(t.latest(1).unwrap().messages[0].message.id, "m20");
}

/// Lines another program appends are read before the next append (and
/// reported), an unfinished one is terminated first, and a replaced file is
/// read again.
#[tokio::test]
async fn foreign_appends_are_read_and_never_joined() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), plain()).unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let seen = seen.clone();
        store.on_foreign(Arc::new(move |_, change| {
            seen.lock().unwrap().push(match change {
                Foreign::Message(m) => m.message.id.clone(),
                Foreign::Replaced => "replaced".into(),
            })
        }));
    }
    let s = store.get_or_create("k").await.unwrap();
    let t = store.transcript(&s.session_id).unwrap();
    t.append(&msg(1, Role::User)).unwrap();
    assert_eq!(t.latest(10).unwrap().messages.len(), 1);
    let foreign = |i: usize| {
        let line = msg(i, Role::Assistant).to_line();
        line[..line.len() - 1].to_vec()
    };
    let mut other = fs::OpenOptions::new().append(true).open(t.path()).unwrap();
    other.write_all(&foreign(2)).unwrap();
    other.write_all(b"\n").unwrap();
    other.write_all(&foreign(3)).unwrap();
    // A poll reads the finished line and leaves the unfinished one.
    t.check_foreign().unwrap();
    assert_eq!(*seen.lock().unwrap(), ["m2"]);
    t.append(&msg(4, Role::User)).unwrap();
    assert_eq!(*seen.lock().unwrap(), ["m2", "m3"]);
    let ids = |page: Page| -> Vec<String> {
        page.messages.iter().map(|m| m.message.id.clone()).collect()
    };
    assert_eq!(ids(t.latest(10).unwrap()), ["m1", "m2", "m3", "m4"]);
    let text = fs::read_to_string(t.path()).unwrap();
    assert_eq!(text.lines().count(), 4);
    assert!(text.lines().all(|l| parse_line(l.as_bytes(), 0).is_some()));

    // Replaced (pi rewrites a session file with a temp file and a rename).
    let tmp = dir.path().join("replacement");
    fs::write(&tmp, msg(9, Role::User).to_line()).unwrap();
    fs::rename(&tmp, t.path()).unwrap();
    t.check_foreign().unwrap();
    assert_eq!(seen.lock().unwrap().last().unwrap(), "replaced");
    assert_eq!(ids(t.latest(10).unwrap()), ["m9"]);
    let (stored, _) = t.append(&msg(10, Role::User)).unwrap();
    assert_eq!(stored.offset, msg(9, Role::User).to_line().len() as u64);
    assert_eq!(fs::read_to_string(t.path()).unwrap().lines().count(), 2);
}

/// A last line that is whole JSON but lacks its newline is kept (terminated)
/// when the file is opened, not cut like a torn write.
#[tokio::test]
async fn a_whole_last_line_without_its_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let line = msg(1, Role::User).to_line();
    fs::write(&path, &line[..line.len() - 1]).unwrap();
    let t = Transcript::open(&path, plain()).unwrap();
    t.append(&msg(2, Role::User)).unwrap();
    let page = t.latest(10).unwrap();
    assert_eq!(page.messages.len(), 2);
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 2);
}
