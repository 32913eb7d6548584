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
    let mut m = NewMessage::new(
        role,
        Content::Text(format!("text {i}")),
        1_700_000_000_000 + i as i64,
    );
    m.id = format!("m{i}");
    m
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
    assert_eq!(text.lines().count(), 3, "the header and two messages");
    for line in text.lines().skip(1) {
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
    let seen = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    {
        let seen = seen.clone();
        store.on_foreign(Arc::new(move |_, change| {
            seen.lock().push(match change {
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
        let line = msg(i, Role::Assistant).to_line(&format!("m{i}"), Some(&format!("m{}", i - 1)));
        line[..line.len() - 1].to_vec()
    };
    let mut other = fs::OpenOptions::new().append(true).open(t.path()).unwrap();
    other.write_all(&foreign(2)).unwrap();
    other.write_all(b"\n").unwrap();
    other.write_all(&foreign(3)).unwrap();
    // A poll reads the finished line and leaves the unfinished one.
    t.check_foreign().unwrap();
    assert_eq!(*seen.lock(), ["m2"]);
    t.append(&msg(4, Role::User)).unwrap();
    assert_eq!(*seen.lock(), ["m2", "m3"]);
    let ids = |page: Page| -> Vec<String> {
        page.messages.iter().map(|m| m.message.id.clone()).collect()
    };
    assert_eq!(ids(t.latest(10).unwrap()), ["m1", "m2", "m3", "m4"]);
    let text = fs::read_to_string(t.path()).unwrap();
    assert_eq!(text.lines().count(), 5, "the header and four messages");
    assert!(
        text.lines()
            .skip(1)
            .all(|l| parse_line(l.as_bytes(), 0).is_some())
    );

    // Replaced (pi rewrites a session file with a temp file and a rename).
    let tmp = dir.path().join("replacement");
    let header = line::header_line("other", "/", 0);
    let nine = msg(9, Role::User).to_line("m9", None);
    fs::write(&tmp, [header.clone(), nine.clone()].concat()).unwrap();
    fs::rename(&tmp, t.path()).unwrap();
    t.check_foreign().unwrap();
    assert_eq!(seen.lock().last().unwrap(), "replaced");
    assert_eq!(ids(t.latest(10).unwrap()), ["m9"]);
    let (stored, _) = t.append(&msg(10, Role::User)).unwrap();
    assert_eq!(stored.offset, (header.len() + nine.len()) as u64);
    assert_eq!(stored.message.parent_id.as_deref(), Some("m9"));
    assert_eq!(fs::read_to_string(t.path()).unwrap().lines().count(), 3);
}

/// A last line that is whole JSON but lacks its newline is kept (terminated)
/// when the file is opened, not cut like a torn write.
#[tokio::test]
async fn a_whole_last_line_without_its_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.jsonl");
    let line = msg(1, Role::User).to_line("m1", None);
    fs::write(&path, &line[..line.len() - 1]).unwrap();
    let t = Transcript::open(&path, plain()).unwrap();
    t.append(&msg(2, Role::User)).unwrap();
    let page = t.latest(10).unwrap();
    assert_eq!(page.messages.len(), 2);
    // A headerless file is upgraded to pi's format when opened.
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 3);
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/fixtures/pi-0.73.1/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn ids_of(page: &Page) -> Vec<String> {
    page.messages.iter().map(|m| m.message.id.clone()).collect()
}

/// A session the real pi branched: only the leaf's path is the
/// conversation, the file is left byte for byte, and an append continues
/// the leaf (whatever the leaf's type).
#[test]
fn reads_the_leaf_path_of_a_branched_pi_session() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let original = fixture("branch.jsonl");
    fs::write(&path, &original).unwrap();
    let t = Transcript::open(&path, plain()).unwrap();
    let page = t.latest(50).unwrap();
    assert_eq!(ids_of(&page), ["b0d1f681", "f5974c8f", "a324b00b"]);
    assert!(!page.has_more);
    assert_eq!(
        page.messages[0].message.kind.as_deref(),
        Some("branch_summary")
    );
    assert_eq!(
        page.messages[1].message.parent_id.as_deref(),
        Some("b0d1f681")
    );
    // The agent gets the summary as pi frames it, as the user's.
    let context = t.latest_plain(50).unwrap();
    assert_eq!(context.messages[0].message.role, Role::User);
    assert!(
        context.messages[0]
            .message
            .content
            .text()
            .starts_with("The following is a summary of a branch")
    );
    // Paging back from the branch never shows the abandoned one.
    let older = t.before("f5974c8f", 10).unwrap().unwrap();
    assert_eq!(ids_of(&older), ["b0d1f681"]);
    assert_eq!(fs::read(&path).unwrap(), original, "read without a change");

    let mut new = msg(1, Role::User);
    new.id = String::new();
    let (stored, _) = t.append(&new).unwrap();
    assert_eq!(stored.message.id.len(), 8, "pi's short ids");
    assert_eq!(
        stored.message.parent_id.as_deref(),
        Some("d92d5505"),
        "the session_info entry is the leaf"
    );
    let text = fs::read(&path).unwrap();
    assert_eq!(&text[..original.len()], &original[..]);
    assert_eq!(
        ids_of(&t.latest(50).unwrap()),
        [
            "b0d1f681",
            "f5974c8f",
            "a324b00b",
            stored.message.id.as_str()
        ]
    );
    // A fresh reader agrees.
    let t = Transcript::open(&path, plain()).unwrap();
    assert_eq!(ids_of(&t.latest(50).unwrap()).len(), 4);
}

/// Compaction: the UI sees the whole path with a marker; an agent sees the
/// summary, then the path from `firstKeptEntryId` on.
#[test]
fn compaction_is_honoured_for_the_agent_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let mut file = line::header_line("s", "/", 0);
    let mut parent = None;
    for i in 1..=4 {
        let id = format!("m{i}");
        file.extend(msg(i, Role::User).to_line(&id, parent.as_deref()));
        parent = Some(id);
    }
    file.extend_from_slice(
        br#"{"type":"compaction","id":"c1","parentId":"m4","timestamp":"2026-01-01T00:00:00.000Z","summary":"earlier talk","firstKeptEntryId":"m3","tokensBefore":100}"#,
    );
    file.push(b'\n');
    file.extend(msg(5, Role::User).to_line("m5", Some("c1")));
    fs::write(&path, &file).unwrap();
    let t = Transcript::open(&path, plain()).unwrap();
    assert_eq!(
        ids_of(&t.latest(50).unwrap()),
        ["m1", "m2", "m3", "m4", "c1", "m5"]
    );
    let context = t.latest_plain(50).unwrap();
    assert_eq!(ids_of(&context), ["c1", "m3", "m4", "m5"]);
    assert!(
        context.messages[0]
            .message
            .content
            .text()
            .contains("earlier talk")
    );
    // A limit smaller than what is kept still starts with the summary.
    let context = t.latest_plain(2).unwrap();
    assert_eq!(ids_of(&context), ["c1", "m4", "m5"]);
}

/// Another program's append that starts a branch (pi's /tree, then a
/// prompt) switches the conversation to it: readers start over.
#[tokio::test]
async fn a_foreign_branch_switches_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), plain()).unwrap();
    let seen = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    {
        let seen = seen.clone();
        store.on_foreign(Arc::new(move |_, change| {
            seen.lock().push(match change {
                Foreign::Message(m) => m.message.id.clone(),
                Foreign::Replaced => "replaced".into(),
            })
        }));
    }
    let s = store.get_or_create("k").await.unwrap();
    let t = store.transcript(&s.session_id).unwrap();
    for i in 1..=3 {
        t.append(&msg(i, Role::User)).unwrap();
    }
    let mut other = fs::OpenOptions::new().append(true).open(t.path()).unwrap();
    other
        .write_all(&msg(4, Role::User).to_line("m4", Some("m1")))
        .unwrap();
    t.check_foreign().unwrap();
    assert_eq!(*seen.lock(), ["replaced"]);
    assert_eq!(ids_of(&t.latest(10).unwrap()), ["m1", "m4"]);
    // And one that continues it is a plain message.
    other
        .write_all(&msg(5, Role::Assistant).to_line("m5", Some("m4")))
        .unwrap();
    t.check_foreign().unwrap();
    assert_eq!(*seen.lock(), ["replaced", "m5"]);
    assert_eq!(ids_of(&t.latest(10).unwrap()), ["m1", "m4", "m5"]);
}

/// A long abandoned branch between the leaf and its fork point is passed
/// over, and paging back follows the path across it.
#[test]
fn paging_follows_the_path_across_a_long_abandoned_branch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let mut file = line::header_line("s", "/", 0);
    let mut parent: Option<String> = None;
    for i in 0..50 {
        let id = format!("m{i}");
        file.extend(msg(i, Role::User).to_line(&id, parent.as_deref()));
        parent = Some(id);
    }
    // Abandoned: 2000 entries after m49.
    for i in 0..2000 {
        let id = format!("x{i}");
        file.extend(msg(1000 + i, Role::User).to_line(&id, parent.as_deref()));
        parent = Some(id);
    }
    parent = Some("m49".into());
    for i in 50..60 {
        let id = format!("m{i}");
        file.extend(msg(i, Role::User).to_line(&id, parent.as_deref()));
        parent = Some(id);
    }
    fs::write(&path, &file).unwrap();
    let t = Transcript::open(&path, plain()).unwrap();
    let want = |r: std::ops::Range<usize>| r.map(|i| format!("m{i}")).collect::<Vec<_>>();
    let page = t.latest(15).unwrap();
    assert_eq!(ids_of(&page), want(45..60));
    let mut seen = ids_of(&page);
    let mut before = seen[0].clone();
    loop {
        let page = t.before(&before, 7).unwrap().unwrap();
        let mut ids = ids_of(&page);
        ids.extend(seen);
        seen = ids;
        if !page.has_more {
            break;
        }
        before = seen[0].clone();
    }
    assert_eq!(seen, want(0..60));
    // The second walk over the abandoned branch jumps by the index.
    t.release_recent();
    assert_eq!(ids_of(&t.latest(60).unwrap()), want(0..60));
}

/// A transcript loopchat wrote before it wrote pi's format is upgraded in
/// place: every field of every line kept, a line that does not parse kept,
/// the original copied aside once.
#[test]
fn a_headerless_transcript_is_upgraded_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.jsonl");
    let old = concat!(
        r#"{"type":"message","id":"2b6c1e0a-1111-4222-8333-444455556666","timestamp":"2026-01-01T00:00:00Z","clientId":"c1","message":{"role":"user","content":"hello","timestamp":1767225600000}}"#,
        "\n",
        r#"{"type":"message","id":"3c7d2f1b-1111-4222-8333-444455556666","timestamp":"2026-01-01T00:00:01Z","replyTo":"2b6c1e0a-1111-4222-8333-444455556666","message":{"role":"assistant","content":"hi there","timestamp":1767225601000,"stopReason":"aborted"}}"#,
        "\n",
        "not json at all\n",
        r#"{"type":"message","id":"4d8e3a2c-1111-4222-8333-444455556666","timestamp":"2026-01-01T00:00:02Z","message":{"role":"user","content":[{"type":"image","mimeType":"image/png","attachment":"a1.png","url":"attachments/a1.png"}],"timestamp":1767225602000}}"#,
        "\n",
    );
    fs::write(&path, old).unwrap();
    let mut shared = transcript::Shared::new(plain());
    shared.cwd = "/work".into();
    let _ = shared.attachment_bytes.set(Arc::new(|id: &str| {
        (id == "a1.png").then(|| b"PNG".to_vec())
    }));
    let t = Transcript::open_shared(&path, "sess-1", shared.clone()).unwrap();
    let backup = backup_path(&path);
    assert_eq!(fs::read_to_string(&backup).unwrap(), old);
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5);
    let header: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(header["type"], "session");
    assert_eq!(header["version"], 3);
    assert_eq!(header["id"], "sess-1");
    assert_eq!(header["cwd"], "/work");
    assert_eq!(lines[3], "not json at all");
    let user: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    let reply: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    let image: serde_json::Value = serde_json::from_str(lines[4]).unwrap();
    assert_eq!(user["parentId"], serde_json::Value::Null);
    assert_eq!(user["clientId"], "c1");
    assert_eq!(user["message"]["content"][0]["text"], "hello");
    assert_eq!(reply["parentId"], user["id"]);
    assert_eq!(reply["replyTo"], user["id"]);
    assert_eq!(reply["message"]["stopReason"], "aborted");
    assert_eq!(reply["message"]["usage"]["totalTokens"], 0);
    assert_eq!(reply["message"]["content"][0]["text"], "hi there");
    assert_eq!(image["parentId"], reply["id"]);
    assert_eq!(image["message"]["content"][0]["data"], "UE5H");
    assert_eq!(image["message"]["content"][0]["attachment"], "a1.png");
    // Every field of every old line is still there.
    let old_objects = old.lines().filter(|l| l.starts_with('{'));
    for (old_line, new_line) in old_objects.zip([lines[1], lines[2], lines[4]]) {
        let o: serde_json::Value = serde_json::from_str(old_line).unwrap();
        let n: serde_json::Value = serde_json::from_str(new_line).unwrap();
        for (k, v) in o.as_object().unwrap() {
            if k != "message" {
                assert_eq!(&n[k], v, "{k}");
            }
        }
        for (k, v) in o["message"].as_object().unwrap() {
            if k != "content" {
                assert_eq!(&n["message"][k], v, "{k}");
            }
        }
    }
    let page = t.latest(10).unwrap();
    assert_eq!(page.messages.len(), 3);
    assert_eq!(page.messages[0].client_id.as_deref(), Some("c1"));
    assert!(
        page.messages[2].message.content.text().is_empty()
            && !serde_json::to_string(&page.messages[2].message.content)
                .unwrap()
                .contains("UE5H"),
        "the bytes stay in the file"
    );
    drop(t);
    // Opening it again changes nothing, and the backup stays the original.
    let upgraded = fs::read(&path).unwrap();
    let _t = Transcript::open_shared(&path, "sess-1", shared).unwrap();
    assert_eq!(fs::read(&path).unwrap(), upgraded);
    assert_eq!(fs::read_to_string(&backup).unwrap(), old);
}

/// Every entry type pi writes stays byte for byte; the messages shown are
/// the ones loopchat shows; an append hangs under the leaf (`session_info`).
#[test]
fn every_pi_entry_type_is_kept_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.jsonl");
    let original = fixture("all-types.jsonl");
    fs::write(&path, &original).unwrap();
    let t = Transcript::open(&path, plain()).unwrap();
    let page = t.latest(50).unwrap();
    let shown: Vec<(Role, String)> = page
        .messages
        .iter()
        .map(|m| (m.message.role, m.message.content.text()))
        .collect();
    assert_eq!(
        shown,
        [
            (Role::User, "hello".to_owned()),
            (Role::Assistant, "hi".to_owned()),
            (Role::Assistant, String::new()),
            (Role::User, "retry".to_owned()),
            (Role::Assistant, "ok".to_owned()),
        ]
    );
    assert_eq!(
        page.messages[2].message.stop_reason.as_deref(),
        Some("error")
    );
    let (stored, _) = t.append(&msg(1, Role::User)).unwrap();
    assert_eq!(stored.message.parent_id.as_deref(), Some("63f47d3e"));
    let now = fs::read(&path).unwrap();
    assert_eq!(&now[..original.len()], &original[..]);
    assert!(!backup_path(&path).exists(), "a v3 file is never rewritten");
}

/// A v2 file is migrated as pi migrates it (version 3, `hookMessage` →
/// `custom`), its tree and every other byte of meaning kept, the original
/// copied aside.
#[test]
fn a_v2_file_is_migrated_as_pi_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.jsonl");
    let old = concat!(
        r#"{"type":"session","version":2,"id":"s2","timestamp":"2025-06-01T00:00:00.000Z","cwd":"/w"}"#,
        "\n",
        r#"{"type":"message","id":"aaaa0001","parentId":null,"timestamp":"2025-06-01T00:00:01.000Z","message":{"role":"user","content":[{"type":"text","text":"q"}],"timestamp":1}}"#,
        "\n",
        r#"{"type":"message","id":"aaaa0002","parentId":"aaaa0001","timestamp":"2025-06-01T00:00:02.000Z","message":{"role":"hookMessage","content":"note","timestamp":2}}"#,
        "\n",
        r#"{"type":"message","id":"aaaa0003","parentId":"aaaa0001","timestamp":"2025-06-01T00:00:03.000Z","message":{"role":"assistant","content":[{"type":"text","text":"a"}],"api":"x","provider":"p","model":"m","usage":{"input":1,"output":2,"cacheRead":0,"cacheWrite":0,"totalTokens":3,"cost":{"input":0,"output":0,"cacheRead":0,"cacheWrite":0,"total":0}},"stopReason":"stop","timestamp":3}}"#,
        "\n",
    );
    fs::write(&path, old).unwrap();
    let t = Transcript::open(&path, plain()).unwrap();
    assert_eq!(fs::read_to_string(backup_path(&path)).unwrap(), old);
    let lines: Vec<serde_json::Value> = fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["version"], 3);
    assert_eq!(lines[0]["id"], "s2");
    assert_eq!(lines[2]["message"]["role"], "custom");
    assert_eq!(lines[3]["parentId"], "aaaa0001", "the branch is kept");
    assert_eq!(
        lines[3]["message"]["usage"]["totalTokens"], 3,
        "nothing overwritten"
    );
    // The leaf's path: the hook message's branch is not on it.
    assert_eq!(ids_of(&t.latest(10).unwrap()), ["aaaa0001", "aaaa0003"]);
}

const PI_HEADER: &str = r#"{"type":"session","version":3,"id":"pi-1","timestamp":"2026-12-02T16:04:49.156Z","cwd":"/w"}"#;

#[tokio::test]
async fn a_pi_folder_is_listed_and_new_sessions_keep_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("--w--");
    fs::create_dir(&folder).unwrap();
    fs::write(
        folder.join("2026-12-02T16-04-49-156Z_pi-1.jsonl"),
        format!("{PI_HEADER}\n"),
    )
    .unwrap();
    // Not sessions: no header, another extension.
    fs::write(folder.join("notes.jsonl"), "{\"type\":\"message\"}\n").unwrap();
    fs::write(folder.join("pi-1.txt"), format!("{PI_HEADER}\n")).unwrap();
    let source = Source::Pi(dir.path().to_owned());
    let store = Store::open_source(&source, Path::new("/nonexistent"), plain(), 1 << 20).unwrap();
    let keys: Vec<_> = store.sessions().into_iter().map(|s| s.key).collect();
    assert_eq!(keys, ["pi-1"]);
    assert_eq!(
        store.cwd(&store.session("pi-1").unwrap()).as_deref(),
        Some("/w")
    );

    let fresh = store.get_or_create("fresh").await.unwrap();
    assert_ne!(fresh.session_id, "fresh");
    // Listed again (as the watcher does): the new file is one session, still
    // under the key it was made for, not a second one under its id.
    store.refresh_index().unwrap();
    let mut keys: Vec<_> = store.sessions().into_iter().map(|s| s.key).collect();
    keys.sort();
    assert_eq!(keys, ["fresh", "pi-1"]);
    let t = store.transcript(&fresh.session_id).unwrap();
    assert!(t.path().starts_with(dir.path()));
    assert!(
        t.path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with(&format!("_{}.jsonl", fresh.session_id))
    );
    let (_, g) = t.append(&msg(1, Role::User)).unwrap();
    t.durable(g).await.unwrap();
    // One header only: the file was created with it.
    let headers = fs::read_to_string(t.path())
        .unwrap()
        .lines()
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"] == "session")
        .count();
    assert_eq!(headers, 1);
}

#[tokio::test]
async fn a_foreign_store_never_cuts_a_line_another_tool_is_writing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("2026-12-02T16-04-49-156Z_pi-1.jsonl");
    // pi's line half written: a home store would cut it as torn.
    let torn = format!("{PI_HEADER}\n{{\"type\":\"message\",\"id\":\"a\",\"par");
    fs::write(&file, &torn).unwrap();
    let store = Store::open_source(
        &Source::Pi(dir.path().to_owned()),
        Path::new("/nonexistent"),
        plain(),
        1 << 20,
    )
    .unwrap();
    let t = store.transcript("pi-1").unwrap();
    assert!(t.latest(10).unwrap().messages.is_empty());
    assert_eq!(fs::read_to_string(&file).unwrap(), torn);
}

#[tokio::test]
async fn an_openclaw_index_is_read_where_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("sessions");
    let err = Store::open_source(
        &Source::OpenClaw(missing.clone()),
        dir.path(),
        plain(),
        1 << 20,
    )
    .err()
    .unwrap();
    assert!(
        err.to_string().contains("cannot open the store folder"),
        "{err}"
    );
    assert!(!missing.exists());
    fs::create_dir(&missing).unwrap();
    fs::write(
        missing.join("sessions.json"),
        r#"{"agent:main:main": {"sessionId": "s1", "sessionFile": "/elsewhere/x_s1.jsonl", "updatedAt": 5}}"#,
    )
    .unwrap();
    fs::write(missing.join("x_s1.jsonl"), "").unwrap();
    let store = Store::open_source(
        &Source::OpenClaw(missing.clone()),
        dir.path(),
        plain(),
        1 << 20,
    )
    .unwrap();
    let s = store.session("agent:main:main").unwrap();
    assert_eq!(
        store.transcript(&s.session_id).unwrap().path(),
        missing.join("x_s1.jsonl")
    );
}

#[tokio::test]
async fn a_flat_pi_session_dir_gets_its_new_sessions_flat() {
    // pi's --session-dir: no per-cwd folders, pi writes into it directly.
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("2026-12-02T16-04-49-156Z_pi-1.jsonl"),
        format!("{PI_HEADER}\n"),
    )
    .unwrap();
    let store = Store::open_source(
        &Source::Pi(dir.path().to_owned()),
        Path::new("/nonexistent"),
        plain(),
        1 << 20,
    )
    .unwrap();
    let fresh = store.get_or_create("fresh").await.unwrap();
    let t = store.transcript(&fresh.session_id).unwrap();
    assert_eq!(t.path().parent().unwrap(), dir.path());
}

#[tokio::test]
async fn a_conditional_rename_never_overwrites_a_newer_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("sessions"), plain()).unwrap();
    let s = store.get_or_create("main").await.unwrap();
    let t = store.transcript(&s.session_id).unwrap();
    t.append(&msg(0, Role::User)).unwrap();
    assert!(t.rename_if(None, "first line").unwrap().is_some());
    assert!(
        t.rename_if(None, "again").unwrap().is_none(),
        "named already"
    );
    // The user renames before the agent's title arrives: the user wins.
    t.rename("mine").unwrap();
    assert!(
        t.rename_if(Some("first line"), "agent's")
            .unwrap()
            .is_none()
    );
    assert_eq!(t.name().unwrap().as_deref(), Some("mine"));
    assert!(t.rename_if(Some("mine"), "next").unwrap().is_some());
    assert_eq!(t.name().unwrap().as_deref(), Some("next"));
}

#[tokio::test]
async fn archive_restore_and_purge_move_the_file_and_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let sessions = dir.path().join("sessions");
    let store = Store::open(&sessions, plain()).unwrap();
    let s = store.get_or_create("k").await.unwrap();
    let t = store.transcript(&s.session_id).unwrap();
    let (_, g) = t.append(&msg(0, Role::User)).unwrap();
    t.durable(g).await.unwrap();
    let file = sessions.join(format!("{}.jsonl", s.session_id));
    let bytes = fs::read(&file).unwrap();
    let (id, archived) = store.archive("k").await.unwrap();
    assert_eq!(id, s.session_id);
    assert!(archived.file);
    assert!(store.session("k").is_none());
    assert!(!file.exists());
    assert!(matches!(
        store.archive("k").await,
        Err(ArchiveError::NotFound(_))
    ));
    // A fresh store (a restart) agrees.
    let store = Store::open(&sessions, plain()).unwrap();
    assert!(store.session("k").is_none());
    assert_eq!(store.archived().unwrap().len(), 1);
    let back = store.restore(&id).await.unwrap();
    assert_eq!(back.session_id, id);
    assert_eq!(fs::read(&file).unwrap(), bytes);
    assert!(store.archived().unwrap().is_empty());
    // A session never written has no file to move.
    store.get_or_create("empty").await.unwrap();
    let (empty, e) = store.archive("empty").await.unwrap();
    assert!(!e.file);
    assert_eq!(store.purge(Purge::One(empty)).await.unwrap(), 1);
    assert_eq!(store.purge(Purge::All).await.unwrap(), 0);
}
