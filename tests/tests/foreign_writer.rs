//! Issue 12, item 4: other programs write the same pi-format files as the
//! relay (the store is shared by design). Their unfinished lines never
//! swallow the relay's, their appended messages reach subscribers live, and
//! their rewrites of `sessions.json` survive the relay's next write.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use loopchat_tests::{Relay, SseReader, all_messages, assert_store_readable, session_keys};
use serde_json::{Value, json};

fn transcript(home: &Path, session_id: &str) -> PathBuf {
    home.join(format!("sessions/{session_id}.jsonl"))
}

/// Appends `bytes` the way another program would: its own descriptor,
/// no lock.
fn append(path: &Path, bytes: &[u8]) {
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open transcript")
        .write_all(bytes)
        .expect("append");
}

fn pi_line(id: &str, role: &str, text: &str) -> String {
    json!({
        "type": "message",
        "id": id,
        "timestamp": "2026-01-01T00:00:00.000Z",
        "message": {"role": role, "content": [{"type": "text", "text": text}], "timestamp": 1767225600000i64},
    })
    .to_string()
}

/// The next event of the session, past any notification (the relay posts a
/// "reply ready" alert when no window is looking) and the session list's
/// changes, which every stream carries.
async fn next_session_event(events: &mut SseReader) -> (String, Value) {
    loop {
        let (id, event) = events.next().await.expect("an event");
        if !loopchat_tests::relay_wide(&event) {
            return (id, event);
        }
    }
}

fn texts(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            parts => parts[0]["text"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// Fails on the code before the fix: the relay appended its next line onto
/// the foreign one, the two made one unreadable line, and after a restart
/// the acknowledged user message was gone and the retry ran a second turn.
#[tokio::test]
async fn an_unfinished_foreign_line_never_swallows_an_acknowledged_turn() {
    let mut relay = Relay::start();
    let api = relay.client();
    let (s, v) = api
        .rpc(json!({"text": "before", "session": "shared"}))
        .await;
    assert_eq!(s, 200, "{v}");
    let path = transcript(&relay.home, v["sessionId"].as_str().unwrap());

    // Another program has written a line but not yet its newline.
    append(
        &path,
        pi_line("foreign-1", "user", "from another tool").as_bytes(),
    );

    let turn = json!({"text": "acknowledged", "session": "shared", "id": "turn-1"});
    let (s, first) = api.rpc(turn.clone()).await;
    assert_eq!(s, 200, "{first}");
    relay.kill9();
    assert_store_readable(&relay.home);

    relay.restart();
    let api = relay.client();
    let all = all_messages(&api, "shared").await;
    assert_eq!(
        texts(&all),
        [
            "before",
            "echo: before",
            "from another tool",
            "acknowledged",
            "echo: acknowledged"
        ],
        "the foreign line and the acknowledged turn are both stored"
    );
    assert_eq!(all[2]["id"], "foreign-1");

    // The retry finds its turn: the same reply, no second run.
    let (s, again) = api.rpc(turn).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["message"]["id"], first["message"]["id"]);
    assert_eq!(all_messages(&api, "shared").await.len(), all.len());
}

/// Fails on the code before the fix: nothing outside the pipeline's own
/// turns ever reached a subscriber or the cached history.
#[tokio::test]
async fn lines_another_program_appends_reach_subscribers_live() {
    let relay = Relay::start();
    let api = relay.client();
    let (s, v) = api.rpc(json!({"text": "hello", "session": "live"})).await;
    assert_eq!(s, 200, "{v}");
    let path = transcript(&relay.home, v["sessionId"].as_str().unwrap());
    // Warm the recent window, so a stale cache would show.
    let (_, info) = api.get_json("/webchat/info?session=live").await;
    let last_seq = info["lastSeq"].as_u64().unwrap();

    // The stream is subscribed once its headers arrive.
    let r = api
        .get("/webchat/events?session=live")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut events = SseReader::new(r);

    append(
        &path,
        format!(
            "{}\n",
            pi_line("foreign-live", "assistant", "written **elsewhere**")
        )
        .as_bytes(),
    );
    let (id, event) = next_session_event(&mut events).await;
    assert_eq!(event["type"], "message", "{event}");
    assert_eq!(event["message"]["id"], "foreign-live");
    assert_eq!(event["message"]["role"], "assistant");
    assert!(
        event["message"]["html"]
            .as_str()
            .unwrap()
            .contains("<strong>elsewhere</strong>"),
        "rendered like the relay's own messages: {event}"
    );
    assert!(
        event.get("runId").is_none(),
        "no turn of the relay's: {event}"
    );
    let seq = event["seq"].as_u64().unwrap();
    assert!(seq > last_seq);
    assert_eq!(id, seq.to_string());

    // The history shows it, after the relay's own messages.
    let (s, page) = api.get_json("/webchat/history?session=live&limit=10").await;
    assert_eq!(s, 200);
    assert_eq!(
        texts(page["messages"].as_array().unwrap()),
        ["hello", "echo: hello", "written **elsewhere**"]
    );

    // Two lines at once, the second unfinished: the first is delivered now,
    // the second once it is finished.
    append(
        &path,
        format!(
            "{}\n{}",
            pi_line("foreign-2", "user", "second"),
            pi_line("foreign-3", "user", "third")
        )
        .as_bytes(),
    );
    let (_, event) = next_session_event(&mut events).await;
    assert_eq!(event["message"]["id"], "foreign-2");
    append(&path, b"\n");
    let (_, event) = next_session_event(&mut events).await;
    assert_eq!(event["message"]["id"], "foreign-3");
    assert_eq!(event["seq"].as_u64().unwrap(), seq + 2);

    // The relay's next turn follows them, in the stream and in the file.
    let (s, v) = api.rpc(json!({"text": "after", "session": "live"})).await;
    assert_eq!(s, 200, "{v}");
    let turn = events.until("run.end").await;
    assert_eq!(turn[0]["message"]["content"], "after");
    assert!(turn[0]["seq"].as_u64().unwrap() > seq + 2);
    let all = all_messages(&api, "live").await;
    assert_eq!(
        texts(&all),
        [
            "hello",
            "echo: hello",
            "written **elsewhere**",
            "second",
            "third",
            "after",
            "echo: after"
        ]
    );
    assert_store_readable(&relay.home);
}

fn read_index(home: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(home.join("sessions/sessions.json")).unwrap()).unwrap()
}

/// Rewrites the index the way pi does: a temp file renamed over it.
fn rewrite_index(home: &Path, index: &Value) {
    let dir = home.join("sessions");
    let tmp = dir.join("sessions.json.foreign-tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(index).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.join("sessions.json")).unwrap();
}

/// Fails on the code before the fix: the relay rewrote the index from what
/// it had in memory, and the other program's entry was gone.
#[tokio::test]
async fn another_programs_index_entries_survive_the_relays_writes() {
    let relay = Relay::start();
    let api = relay.client();
    let (s, v) = api.rpc(json!({"text": "one", "session": "mine"})).await;
    assert_eq!(s, 200, "{v}");
    let mine = v["sessionId"].as_str().unwrap().to_owned();

    // Another program adds a session of its own and a field to the relay's
    // entry, changing nothing the relay wrote.
    let mut index = read_index(&relay.home);
    index["agent:other"] = json!({
        "sessionId": "0b7d8a4e-0000-4000-8000-00000000f00d",
        "updatedAt": 1767225600000i64,
        "thinkingLevel": "low",
        "model": "their-model",
    });
    index["mine"]["systemSent"] = json!(true);
    rewrite_index(&relay.home, &index);

    // The relay creates a session (a durable index write) and touches its own.
    let (s, v) = api.rpc(json!({"text": "two", "session": "new-one"})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .rpc(json!({"text": "three", "session": "mine", "thinking": "high"}))
        .await;
    assert_eq!(s, 200, "{v}");

    // The touch is written within a second; wait for it, not for a time.
    let deadline = Instant::now() + Duration::from_secs(10);
    let index = loop {
        let index = read_index(&relay.home);
        if index["mine"]["thinkingLevel"] == "high" || Instant::now() > deadline {
            break index;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(index["mine"]["sessionId"], mine.as_str());
    assert_eq!(index["mine"]["thinkingLevel"], "high", "the relay's change");
    assert_eq!(
        index["mine"]["systemSent"], true,
        "their field on our entry"
    );
    assert!(index["new-one"]["sessionId"].is_string());
    let other = &index["agent:other"];
    assert_eq!(other["sessionId"], "0b7d8a4e-0000-4000-8000-00000000f00d");
    assert_eq!(other["model"], "their-model");

    // The relay knows the other program's session too.
    let (_, list) = api.get_json("/webchat/sessions").await;
    let keys = session_keys(&list);
    assert!(keys.contains(&"agent:other".to_owned()), "{keys:?}");
    let (_, info) = api.get_json("/webchat/info?session=agent:other").await;
    assert_eq!(info["sessionId"], "0b7d8a4e-0000-4000-8000-00000000f00d");
    assert_eq!(info["thinkingLevel"], "low");
}
