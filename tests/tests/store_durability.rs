//! Issue 2: the store under concurrency, crashes and foreign (pi) files.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use loopchat_tests::{Relay, RelayOptions, assert_store_readable};
use serde_json::{Value, json};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

#[tokio::test]
async fn opens_an_existing_pi_store() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/pi-store"),
        &home,
    );
    let relay = Relay::start_with(RelayOptions {
        home: Some(home.clone()),
        ..Default::default()
    });
    let api = relay.client();
    let (s, info) = api.get_json("/webchat/info?session=agent:main:main").await;
    assert_eq!(s, 200);
    assert_eq!(info["sessionId"], "3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b");
    assert_eq!(info["thinkingLevel"], "low");
    let msgs = info["initialMessages"].as_array().unwrap();
    // 6 messages and the compaction's marker; the session header,
    // model_change and the torn last line are skipped.
    let roles: Vec<_> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        [
            "user",
            "assistant",
            "user",
            "assistant",
            "toolResult",
            "system",
            "assistant"
        ]
    );
    assert_eq!(msgs[5]["kind"], "compaction");
    assert_eq!(msgs[5]["content"], "user listed files");
    // One text block is served as the string it stands for.
    assert_eq!(msgs[0]["content"], "What's 2+2?");
    assert_eq!(msgs[0]["timestamp"], "2025-01-01T00:00:01.000Z");
    assert!(
        msgs[1]["html"]
            .as_str()
            .unwrap()
            .contains("<strong>4</strong>")
    );
    assert!(
        !msgs[1]["html"]
            .as_str()
            .unwrap()
            .contains("simple arithmetic"),
        "thinking is not the reply"
    );
    assert_eq!(msgs[2]["content"], "run ls");
    // The v1 file was brought to v3 as pi does when it opens one (the
    // original kept beside it): every entry has an id and a parent.
    let file = home.join("sessions/3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["version"], 3);
    assert!(
        home.join("sessions/3f1c2a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b.jsonl.pre-v3.bak")
            .exists()
    );
    assert_eq!(msgs[1]["parentId"], msgs[0]["id"]);
    let id = msgs[3]["id"].as_str().unwrap();
    let (s, page) = api
        .get_json(&format!(
            "/webchat/history?session=agent:main:main&before={id}&limit=2"
        ))
        .await;
    assert_eq!(s, 200);
    let older: Vec<_> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(older, vec![msgs[1]["id"].clone(), msgs[2]["id"].clone()]);

    // A turn appends cleanly after the torn line, and the index keeps the
    // fields this relay does not know.
    let (s, _) = api
        .rpc(json!({"text": "more", "session": "agent:main:main"}))
        .await;
    assert_eq!(s, 200);
    drop(relay);
    assert_store_readable(&home);
    let index: Value =
        serde_json::from_slice(&std::fs::read(home.join("sessions/sessions.json")).unwrap())
            .unwrap();
    let e = &index["agent:main:main"];
    assert_eq!(e["model"], "claude-x");
    assert_eq!(e["skillsSnapshot"]["version"], 3);
    assert_eq!(e["contextTokens"], 200000);
}

#[tokio::test]
async fn turns_in_one_session_are_serialized_in_arrival_order() {
    let relay = Relay::start_with(RelayOptions::default().env("LOOPCHAT_ECHO_DELAY_MS", "5"));
    let api = relay.client();
    // Streaming requests answer with headers once queued: waiting for the
    // headers of request i before sending i+1 fixes the arrival order.
    let mut streams = Vec::new();
    for i in 0..12 {
        let r = api
            .post("/webchat/rpc")
            .json(&json!({"text": format!("n{i} a b c"), "session": "order", "stream": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        streams.push(loopchat_tests::SseReader::new(r));
    }
    for mut s in streams {
        let events = s.until("done").await;
        assert_eq!(events.last().unwrap()["type"], "done");
    }
    let (_, info) = api.get_json("/webchat/info?session=order").await;
    let msgs = info["initialMessages"].as_array().unwrap();
    assert_eq!(msgs.len(), 24);
    for (i, pair) in msgs.chunks(2).enumerate() {
        assert_eq!(pair[0]["content"], format!("n{i} a b c"), "arrival order");
        assert_eq!(
            pair[1]["content"],
            format!("echo: n{i} a b c"),
            "no interleaving"
        );
    }
}

#[tokio::test]
async fn concurrent_sends_across_sessions_lose_nothing() {
    let relay = Relay::start();
    let api = relay.client();
    let mut tasks = Vec::new();
    for c in 0..16 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                let session = if c % 2 == 0 {
                    "shared".to_owned()
                } else {
                    format!("own{c}")
                };
                let (s, v) = api
                    .rpc(json!({"text": format!("c{c}-{i}"), "session": session}))
                    .await;
                assert_eq!(s, 200, "{v}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, info) = api
        .get_json("/webchat/info?session=shared&limit=1000")
        .await;
    let msgs = info["initialMessages"].as_array().unwrap();
    assert_eq!(msgs.len(), 8 * 25 * 2);
    for pair in msgs.chunks(2) {
        assert_eq!(
            pair[1]["content"],
            format!("echo: {}", pair[0]["content"].as_str().unwrap())
        );
    }
    for c in (1..16).step_by(2) {
        let (_, info) = api
            .get_json(&format!("/webchat/info?session=own{c}&limit=1000"))
            .await;
        assert_eq!(info["initialMessages"].as_array().unwrap().len(), 50);
    }
    drop(relay);
}

/// A keyed turn whose reply was lost in a crash runs again when it is
/// retried, and answers its own message in the context it had, even when
/// other turns of the session landed in between.
#[tokio::test]
async fn a_keyed_retry_after_a_crash_answers_in_its_own_context() {
    let mut relay = Relay::start();
    let api = relay.client();
    let keyed = json!({"text": "first", "session": "ctx", "id": "k-first"});
    let (s, v) = api.rpc(keyed.clone()).await;
    assert_eq!(s, 200, "{v}");
    let (_, info) = api.get_json("/webchat/info?session=ctx").await;
    let session_id = info["sessionId"].as_str().unwrap().to_owned();
    relay.kill9();

    // The crash came after the user message was written and before the
    // reply was: drop the reply line.
    let path = relay.home.join(format!("sessions/{session_id}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).unwrap()["replyTo"].is_null())
        .collect();
    assert_eq!(kept.len(), text.lines().count() - 1, "one reply removed");
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();

    relay.restart();
    let api = relay.client();
    let (s, v) = api.rpc(json!({"text": "second", "session": "ctx"})).await;
    assert_eq!(
        (s, v["message"]["content"].as_str()),
        (200, Some("echo: second"))
    );
    let (s, v) = api.rpc(keyed).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v["message"]["content"], "echo: first",
        "the re-run answered a later message"
    );
    let contents: Vec<Value> = loopchat_tests::all_messages(&api, "ctx")
        .await
        .iter()
        .map(|m| m["content"].clone())
        .collect();
    assert_eq!(contents, ["first", "second", "echo: second", "echo: first"]);
    // A second retry is answered from the transcript, not run a third time.
    let (s, again) = api
        .rpc(json!({"text": "first", "session": "ctx", "id": "k-first"}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(again["message"]["id"], v["message"]["id"]);
}

/// kill -9 during concurrent sends: every acknowledged turn is on disk and
/// the store still reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crash_loses_no_acknowledged_turn() {
    let mut relay = Relay::start();
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(String, String)>::new()));
    for round in 0..3 {
        let api = relay.client();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for c in 0..8 {
            let (api, stop, acked) = (api.clone(), stop.clone(), acked.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) {
                    let session = format!("crash{}", c % 4);
                    let text = format!("r{round}-c{c}-{i}");
                    let r = api
                        .post("/webchat/rpc")
                        .json(&json!({"text": text, "session": session}))
                        .send()
                        .await;
                    let Ok(r) = r else { break };
                    if r.status() != 200 {
                        break;
                    }
                    if r.json::<Value>().await.is_ok() {
                        acked.lock().unwrap().push((session, text));
                    }
                    i += 1;
                }
            }));
        }
        // Let acknowledgements accumulate, then crash mid-stream.
        loop {
            let n = acked.lock().unwrap().len();
            if n >= (round + 1) * 150 {
                break;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        relay.kill9();
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            let _ = t.await;
        }
        assert_store_readable(&relay.home);
        relay.restart();
    }
    let api = relay.client();
    let mut stored = HashSet::new();
    for s in 0..4 {
        for m in &loopchat_tests::all_messages(&api, &format!("crash{s}")).await {
            if m["role"] == "user" {
                stored.insert((
                    format!("crash{s}"),
                    m["content"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    let acked = acked.lock().unwrap();
    let missing: Vec<_> = acked.iter().filter(|t| !stored.contains(*t)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert!(acked.len() >= 450);
}
