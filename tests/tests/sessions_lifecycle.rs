//! Issue 17 item 1: titles, rename, delete (archive) / restore / purge, pin,
//! and the session list pushed over the event stream — against the real
//! relay binary, its CLI and its files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use loopchat_tests::{Api, Relay, RelayOptions, SseReader, loopchat_bin, session_keys};
use serde_json::{Value, json};

fn cli(home: &Path, args: &[&str]) -> Output {
    Command::new(loopchat_bin())
        .args(args)
        .env("LOOPCHAT_HOME", home)
        .env_remove("LOOPCHAT_URL")
        .env_remove("LOOPCHAT_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run loopchat")
}

fn ok_cli(home: &Path, args: &[&str]) -> String {
    let o = cli(home, args);
    assert!(
        o.status.success(),
        "loopchat {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

async fn send(api: &Api, session: &str, text: &str) {
    let (status, v) = api.rpc(json!({"session": session, "text": text})).await;
    assert_eq!(status, 200, "{v}");
}

async fn post(api: &Api, path: &str, body: Value) -> (u16, Value) {
    let r = api.post(path).json(&body).send().await.expect("post");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json answer"))
}

async fn list(api: &Api) -> Value {
    let (status, v) = api.get_json("/webchat/sessions").await;
    assert_eq!(status, 200, "{v}");
    v
}

fn row<'a>(list: &'a Value, key: &str) -> &'a Value {
    list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no {key} in {list}"))
}

async fn archived(api: &Api) -> Vec<Value> {
    let (status, v) = api.get_json("/webchat/archived").await;
    assert_eq!(status, 200, "{v}");
    v["sessions"].as_array().unwrap().clone()
}

fn transcript(home: &Path, id: &str) -> PathBuf {
    home.join("sessions").join(format!("{id}.jsonl"))
}

fn archived_transcript(home: &Path, id: &str) -> PathBuf {
    home.join("archive").join(format!("{id}.jsonl"))
}

fn index(home: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(home.join("sessions/sessions.json")).unwrap()).unwrap()
}

async fn sse(api: &Api, query: &str) -> SseReader {
    let r = api
        .get(&format!("/webchat/events?{query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    SseReader::new(r)
}

/// The next `sessions` event of `key` (others are skipped), with its SSE id.
async fn next_list_event(s: &mut SseReader, key: &str) -> (String, Value) {
    loop {
        let (id, v) = s.next().await.expect("stream open");
        if v["type"] == "sessions" && v["key"] == key {
            return (id, v);
        }
    }
}

fn assert_error(status: u16, body: &Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["ok"], false, "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn a_new_session_is_titled_from_its_first_line_and_renames_win() {
    let relay = Relay::start();
    let api = relay.client();
    send(&api, "t1", "  How do lifetimes work?  \nsecond line").await;
    send(&api, "t1", "A different question").await;
    let l = list(&api).await;
    assert_eq!(row(&l, "t1")["title"], "How do lifetimes work?");
    // Stored as pi stores names, so pi shows it too.
    let id = row(&l, "t1")["sessionId"].as_str().unwrap().to_owned();
    let file = std::fs::read_to_string(transcript(&relay.home, &id)).unwrap();
    let infos: Vec<Value> = file
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|e| e["type"] == "session_info")
        .collect();
    assert_eq!(infos.len(), 1, "titled once, not per turn: {file}");
    assert_eq!(infos[0]["name"], "How do lifetimes work?");

    // Bounded, cut on a char boundary.
    send(&api, "long", &"é".repeat(300)).await;
    let title = row(&list(&api).await, "long")["title"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(title.chars().count(), 81, "{title}");
    assert!(title.ends_with('…'));

    // The CLI renames; the list shows it at once.
    let out = ok_cli(&relay.home, &["sessions", "rename", "t1", "Lifetimes"]);
    assert!(out.contains("Lifetimes"), "{out}");
    assert_eq!(row(&list(&api).await, "t1")["title"], "Lifetimes");
    // A later turn does not title it again.
    send(&api, "t1", "third").await;
    assert_eq!(row(&list(&api).await, "t1")["title"], "Lifetimes");

    // Bad input: unknown key, bad key, control characters.
    let (s, v) = post(
        &api,
        "/webchat/rename",
        json!({"session": "nope", "name": "x"}),
    )
    .await;
    assert_error(s, &v, 404, "not_found");
    let (s, v) = post(
        &api,
        "/webchat/rename",
        json!({"session": "a b", "name": "x"}),
    )
    .await;
    assert_error(s, &v, 400, "invalid_session_key");
    let (s, v) = post(
        &api,
        "/webchat/rename",
        json!({"session": "t1", "name": "a\u{7}b"}),
    )
    .await;
    assert_error(s, &v, 400, "bad_request");
    let o = cli(&relay.home, &["sessions", "rename", "nope", "x"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no session"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(row(&list(&api).await, "t1")["title"], "Lifetimes");
}

#[tokio::test]
async fn pinned_sessions_come_first_and_stay_pinned_across_a_restart() {
    let mut relay = Relay::start();
    let api = relay.client();
    send(&api, "older", "one").await;
    send(&api, "newer", "two").await;
    assert_eq!(session_keys(&list(&api).await), ["newer", "older"]);
    let (s, v) = post(
        &api,
        "/webchat/pin",
        json!({"session": "older", "pinned": true}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["session"]["pinned"], true);
    assert_eq!(session_keys(&list(&api).await), ["older", "newer"]);
    assert_eq!(index(&relay.home)["older"]["pinned"], true, "durable");
    // A newer turn elsewhere does not move it.
    send(&api, "newer", "three").await;
    assert_eq!(session_keys(&list(&api).await), ["older", "newer"]);

    relay.stop();
    relay.restart();
    let api = relay.client();
    let l = list(&api).await;
    assert_eq!(session_keys(&l), ["older", "newer"]);
    assert_eq!(row(&l, "older")["pinned"], true);
    assert!(row(&l, "newer").get("pinned").is_none());

    let out = ok_cli(&relay.home, &["sessions"]);
    assert!(out.lines().next().unwrap().starts_with("* older"), "{out}");
    ok_cli(&relay.home, &["sessions", "unpin", "older"]);
    assert_eq!(session_keys(&list(&api).await), ["newer", "older"]);
    ok_cli(&relay.home, &["sessions", "pin", "newer"]);
    assert_eq!(row(&list(&api).await, "newer")["pinned"], true);

    let (s, v) = post(
        &api,
        "/webchat/pin",
        json!({"session": "nope", "pinned": true}),
    )
    .await;
    assert_error(s, &v, 404, "not_found");
    let (s, v) = post(
        &api,
        "/webchat/pin",
        json!({"session": "../x", "pinned": true}),
    )
    .await;
    assert_error(s, &v, 400, "invalid_session_key");
    let (s, v) = post(&api, "/webchat/pin", json!({"session": "newer"})).await;
    assert_error(s, &v, 400, "bad_request");
}

#[tokio::test]
async fn delete_archives_restore_is_exact_and_purge_is_final() {
    let relay = Relay::start();
    let api = relay.client();
    send(&api, "d1", "keep me").await;
    send(&api, "d1", "and me").await;
    send(&api, "other", "x").await;
    let id = row(&list(&api).await, "d1")["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let bytes = std::fs::read(transcript(&relay.home, &id)).unwrap();

    let (s, v) = post(&api, "/webchat/archive", json!({"session": "d1"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["archived"]["sessionId"], id.as_str());
    assert_eq!(v["archived"]["key"], "d1");
    assert_eq!(v["archived"]["title"], "keep me");
    assert!(
        v["archived"]["purgeAt"].as_i64().unwrap() > v["archived"]["archivedAt"].as_i64().unwrap()
    );
    assert_eq!(session_keys(&list(&api).await), ["other"]);
    assert!(index(&relay.home).get("d1").is_none());
    assert!(!transcript(&relay.home, &id).exists());
    assert_eq!(
        std::fs::read(archived_transcript(&relay.home, &id)).unwrap(),
        bytes
    );
    let a = archived(&api).await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0]["sessionId"], id.as_str());

    // Bad input, each a clear error that changes nothing.
    let (s, v) = post(&api, "/webchat/archive", json!({"session": "d1"})).await;
    assert_error(s, &v, 404, "not_found");
    let (s, v) = post(&api, "/webchat/archive", json!({"session": "a b"})).await;
    assert_error(s, &v, 400, "invalid_session_key");
    let (s, v) = post(
        &api,
        "/webchat/archive",
        json!({"session": "d1", "extra": 1}),
    )
    .await;
    assert_error(s, &v, 400, "bad_request");
    let (s, v) = post(&api, "/webchat/restore", json!({"sessionId": "no-such-id"})).await;
    assert_error(s, &v, 404, "not_found");
    let (s, v) = post(&api, "/webchat/restore", json!({"sessionId": "../../x"})).await;
    assert_error(s, &v, 400, "bad_request");
    assert_eq!(archived(&api).await.len(), 1);

    // Restore: the same transcript, byte for byte, under its key.
    let (s, v) = post(&api, "/webchat/restore", json!({"sessionId": id})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["session"]["key"], "d1");
    assert_eq!(v["session"]["title"], "keep me");
    assert_eq!(std::fs::read(transcript(&relay.home, &id)).unwrap(), bytes);
    assert!(!archived_transcript(&relay.home, &id).exists());
    assert!(archived(&api).await.is_empty());
    let (_, h) = api.get_json("/webchat/history?session=d1").await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 4, "{h}");
    send(&api, "d1", "alive again").await;

    // Archived again, then the key is used again: restoring onto it is refused.
    let out = ok_cli(&relay.home, &["sessions", "delete", "d1"]);
    assert!(out.contains(&id), "{out}");
    send(&api, "d1", "a new session under the old key").await;
    let new_id = row(&list(&api).await, "d1")["sessionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_id, id);
    let (s, v) = post(&api, "/webchat/restore", json!({"sessionId": id})).await;
    assert_error(s, &v, 409, "conflict");
    assert!(
        archived_transcript(&relay.home, &id).exists(),
        "left in the archive"
    );
    assert_eq!(row(&list(&api).await, "d1")["sessionId"], new_id.as_str());
    let o = cli(&relay.home, &["sessions", "restore", &id]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("exists again"));

    // Both sessions of the key can sit in the archive.
    ok_cli(&relay.home, &["sessions", "delete", "d1"]);
    let listed = ok_cli(&relay.home, &["sessions", "--archived"]);
    assert!(listed.contains(&id) && listed.contains(&new_id), "{listed}");

    // Purge: bad requests first.
    let (s, v) = post(&api, "/webchat/purge", json!({})).await;
    assert_error(s, &v, 400, "bad_request");
    let (s, v) = post(
        &api,
        "/webchat/purge",
        json!({"sessionId": id, "all": true}),
    )
    .await;
    assert_error(s, &v, 400, "bad_request");
    let (s, v) = post(&api, "/webchat/purge", json!({"sessionId": "unknown"})).await;
    assert_error(s, &v, 404, "not_found");
    assert_eq!(archived(&api).await.len(), 2);
    let (s, v) = post(&api, "/webchat/purge", json!({"sessionId": id})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["purged"], 1);
    assert!(!archived_transcript(&relay.home, &id).exists());
    let (s, v) = post(&api, "/webchat/restore", json!({"sessionId": id})).await;
    assert_error(s, &v, 404, "not_found");
    let out = ok_cli(&relay.home, &["sessions", "purge", "--all"]);
    assert!(out.contains("purged 1"), "{out}");
    assert!(archived(&api).await.is_empty());
    assert!(!archived_transcript(&relay.home, &new_id).exists());
    assert_eq!(session_keys(&list(&api).await), ["other"]);
}

#[tokio::test]
async fn a_notify_only_token_may_not_tidy_sessions() {
    let relay = Relay::start();
    let api = relay.client();
    send(&api, "s", "x").await;
    let token = ok_cli(
        &relay.home,
        &["token", "create", "--scope", "notify", "--name", "cron"],
    )
    .trim()
    .to_owned();
    let scoped = Api {
        token: Some(token),
        ..relay.client()
    };
    for (path, body) in [
        ("/webchat/archive", json!({"session": "s"})),
        ("/webchat/restore", json!({"sessionId": "x"})),
        ("/webchat/purge", json!({"all": true})),
        ("/webchat/pin", json!({"session": "s", "pinned": true})),
        ("/webchat/rename", json!({"session": "s", "name": "n"})),
    ] {
        let (s, v) = post(&scoped, path, body).await;
        assert_error(s, &v, 403, "forbidden");
    }
    let (s, _) = scoped.get_json("/webchat/archived").await;
    assert_eq!(s, 403);
    let l = list(&api).await;
    assert_eq!(session_keys(&l), ["s"]);
    assert!(row(&l, "s").get("pinned").is_none());
}

#[tokio::test]
async fn deleting_a_session_while_its_turn_runs_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let gate = tmp.path().join("gate");
    let script = format!(
        "read -r line; while [ ! -e '{}' ]; do sleep 0.05; done; echo \"done: $line\"",
        gate.display()
    );
    let relay = Relay::start_with(
        RelayOptions::default()
            .env("LOOPCHAT_AGENT", "command")
            .env(
                "LOOPCHAT_AGENT_COMMAND",
                &json!(["sh", "-c", script]).to_string(),
            ),
    );
    let api = relay.client();
    let mut events = sse(&api, "session=busy").await;
    let turn = {
        let api = api.clone();
        tokio::spawn(async move { api.rpc(json!({"session": "busy", "text": "hold"})).await })
    };
    events.until("run.start").await;
    let (s, v) = post(&api, "/webchat/archive", json!({"session": "busy"})).await;
    assert_error(s, &v, 409, "turn_in_progress");
    assert!(v["error"].as_str().unwrap().contains("stop it"), "{v}");
    assert_eq!(session_keys(&list(&api).await), ["busy"]);
    assert!(archived(&api).await.is_empty());

    std::fs::write(&gate, "").unwrap();
    let (status, reply) = turn.await.unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["message"]["content"], "done: hold");
    let (s, v) = post(&api, "/webchat/archive", json!({"session": "busy"})).await;
    assert_eq!(s, 200, "{v}");
    // The archived transcript holds the whole turn.
    let id = v["archived"]["sessionId"].as_str().unwrap();
    let file = std::fs::read_to_string(archived_transcript(&relay.home, id)).unwrap();
    assert!(file.contains("done: hold"), "{file}");
}

#[tokio::test]
async fn every_stream_is_told_of_each_list_change() {
    let relay = Relay::start();
    let api = relay.client();
    // A window on another session and a notifications-only stream.
    let mut window = sse(&api, "session=elsewhere").await;
    let mut plain = sse(&api, "").await;

    send(&api, "p1", "Pushed title\nmore").await;
    for s in [&mut window, &mut plain] {
        let (sse_id, e) = next_list_event(s, "p1").await;
        assert_eq!(e["change"], "created", "{e}");
        assert_eq!(e["session"]["title"], "Pushed title", "{e}");
        assert_eq!(e["seq"], 0);
        assert!(sse_id.is_empty(), "not a resume position: {sse_id:?}");
        let (_, e) = next_list_event(s, "p1").await;
        assert_eq!(e["change"], "updated", "{e}");
        assert_eq!(e["session"]["preview"], "echo: Pushed title more", "{e}");
    }
    let (s, _) = post(
        &api,
        "/webchat/rename",
        json!({"session": "p1", "name": "Renamed"}),
    )
    .await;
    assert_eq!(s, 200);
    let (_, e) = next_list_event(&mut window, "p1").await;
    assert_eq!(
        (e["change"].as_str(), e["session"]["title"].as_str()),
        (Some("updated"), Some("Renamed"))
    );
    let (s, _) = post(
        &api,
        "/webchat/pin",
        json!({"session": "p1", "pinned": true}),
    )
    .await;
    assert_eq!(s, 200);
    let (_, e) = next_list_event(&mut window, "p1").await;
    assert_eq!(e["change"], "pinned");
    assert_eq!(e["session"]["pinned"], true);
    let (s, v) = post(&api, "/webchat/archive", json!({"session": "p1"})).await;
    assert_eq!(s, 200);
    let (_, e) = next_list_event(&mut window, "p1").await;
    assert_eq!(e["change"], "archived");
    assert!(e.get("session").is_none(), "{e}");
    let (s, _) = post(
        &api,
        "/webchat/restore",
        json!({"sessionId": v["archived"]["sessionId"]}),
    )
    .await;
    assert_eq!(s, 200);
    let (_, e) = next_list_event(&mut window, "p1").await;
    assert_eq!(e["change"], "restored");
    assert_eq!(e["session"]["title"], "Renamed");
    // The notifications-only stream saw the same changes, in order.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let (_, e) = next_list_event(&mut plain, "p1").await;
        seen.push(e["change"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["updated", "pinned", "archived", "restored"]);
}

#[tokio::test]
async fn the_agent_titles_a_new_session_when_asked() {
    let relay = Relay::start_with(RelayOptions::default().config("auto_title = true\n"));
    let api = relay.client();
    let mut window = sse(&api, "").await;
    send(&api, "auto", "Tell me about rust").await;
    // The echo agent answers the title request with its own text: proof
    // that the agent, not the first line, wrote it.
    let title = loop {
        let (_, e) = next_list_event(&mut window, "auto").await;
        let t = e["session"]["title"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if t.starts_with("echo: Write a title") {
            break t;
        }
    };
    assert!(title.chars().count() <= 81, "{title}");
    assert_eq!(row(&list(&api).await, "auto")["title"], title.as_str());
}

#[tokio::test]
async fn archives_past_their_time_are_purged_at_start() {
    let mut relay = Relay::start_with(RelayOptions::default().config("archive_keep_days = 2\n"));
    let api = relay.client();
    send(&api, "old", "x").await;
    send(&api, "recent", "y").await;
    let (_, old) = post(&api, "/webchat/archive", json!({"session": "old"})).await;
    let (_, recent) = post(&api, "/webchat/archive", json!({"session": "recent"})).await;
    let old_id = old["archived"]["sessionId"].as_str().unwrap().to_owned();
    let recent_id = recent["archived"]["sessionId"].as_str().unwrap().to_owned();
    let day = 24 * 60 * 60 * 1000;
    assert_eq!(
        old["archived"]["purgeAt"].as_i64().unwrap(),
        old["archived"]["archivedAt"].as_i64().unwrap() + 2 * day
    );
    relay.stop();
    // Three days pass for one of them.
    let path = relay.home.join("archive/archive.json");
    let mut archive: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let at = archive[&old_id]["archivedAt"].as_i64().unwrap();
    archive[&old_id]["archivedAt"] = json!(at - 3 * day);
    std::fs::write(&path, serde_json::to_vec(&archive).unwrap()).unwrap();
    relay.restart();
    let api = relay.client();
    // Swept at start, before the relay answers anything.
    let left = archived(&api).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["sessionId"], recent_id.as_str());
    assert!(!archived_transcript(&relay.home, &old_id).exists());
    assert!(archived_transcript(&relay.home, &recent_id).exists());
}

/// The states a relay killed between the steps of an archive or a restore
/// leaves behind, made by hand (each step is one rename or one atomic file
/// write), and what the next start makes of them: never a lost session.
#[tokio::test]
async fn a_move_cut_short_is_finished_or_undone_at_start() {
    let mut relay = Relay::start();
    let api = relay.client();
    for key in ["a", "b", "c"] {
        send(&api, key, &format!("session {key}")).await;
    }
    let l = list(&api).await;
    let ids: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|k| row(&l, k)["sessionId"].as_str().unwrap().to_owned())
        .collect();
    let bytes: Vec<Vec<u8>> = ids
        .iter()
        .map(|id| std::fs::read(transcript(&relay.home, id)).unwrap())
        .collect();
    // c goes to the archive properly: its entry is the template.
    let (s, _) = post(&api, "/webchat/archive", json!({"session": "c"})).await;
    assert_eq!(s, 200);
    relay.stop();
    let home = relay.home.clone();
    let path = home.join("archive/archive.json");
    let mut archive: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let idx = index(&home);
    // Archived just now, so the start's sweep leaves them be.
    let now = archive[&ids[2]]["archivedAt"].clone();
    // a: killed after the archive entry was written, before the rename.
    archive[&ids[0]] = json!({"key": "a", "archivedAt": now, "file": true, "entry": idx["a"]});
    // b: killed after the rename, before the index lost its entry.
    archive[&ids[1]] = json!({"key": "b", "archivedAt": now, "file": true, "entry": idx["b"]});
    std::fs::rename(
        transcript(&home, &ids[1]),
        archived_transcript(&home, &ids[1]),
    )
    .unwrap();
    // c: killed mid-restore, after the rename back, before the index entry.
    std::fs::rename(
        archived_transcript(&home, &ids[2]),
        transcript(&home, &ids[2]),
    )
    .unwrap();
    std::fs::write(&path, serde_json::to_vec(&archive).unwrap()).unwrap();

    relay.restart();
    let api = relay.client();
    let l = list(&api).await;
    let mut keys = session_keys(&l);
    keys.sort();
    assert_eq!(keys, ["a", "c"], "a was never archived, c was restored");
    let a = archived(&api).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["sessionId"], ids[1].as_str(), "b is archived");
    assert!(index(&home).get("b").is_none());
    // Nothing lost, nothing changed.
    assert_eq!(std::fs::read(transcript(&home, &ids[0])).unwrap(), bytes[0]);
    assert_eq!(
        std::fs::read(archived_transcript(&home, &ids[1])).unwrap(),
        bytes[1]
    );
    assert_eq!(std::fs::read(transcript(&home, &ids[2])).unwrap(), bytes[2]);
    let (s, v) = post(&api, "/webchat/restore", json!({"sessionId": ids[1]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(std::fs::read(transcript(&home, &ids[1])).unwrap(), bytes[1]);
}

#[tokio::test]
async fn a_foreign_store_is_not_archived_or_pinned() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("openclaw");
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    std::fs::copy(
        fixtures.join("openclaw/sessions.json"),
        dir.join("sessions.json"),
    )
    .unwrap();
    std::fs::copy(
        fixtures.join("pi-0.73.1/all-types.jsonl"),
        dir.join("2026-12-02T20-57-52-870Z_01a2388c-abe2-741c-91c2-9f0fce388451.jsonl"),
    )
    .unwrap();
    let snapshot = |d: &Path| {
        let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let b = std::fs::read(&p).unwrap();
                (p, b)
            })
            .collect();
        files.sort();
        files
    };
    let before = snapshot(&dir);
    let relay = Relay::start_with(
        RelayOptions::default()
            .arg("--store")
            .arg(&format!("openclaw={}", dir.display())),
    );
    let api = relay.client();
    let (s, v) = post(
        &api,
        "/webchat/archive",
        json!({"session": "agent:main:main"}),
    )
    .await;
    assert_error(s, &v, 409, "conflict");
    assert!(
        v["error"].as_str().unwrap().contains("foreign store"),
        "{v}"
    );
    let (s, v) = post(
        &api,
        "/webchat/pin",
        json!({"session": "agent:main:main", "pinned": true}),
    )
    .await;
    assert_error(s, &v, 409, "conflict");
    let (s, v) = api.get_json("/webchat/archived").await;
    assert_error(s, &v, 409, "conflict");
    assert!(session_keys(&list(&api).await).contains(&"agent:main:main".to_owned()));
    assert_eq!(
        snapshot(&dir),
        before,
        "nothing in the foreign folder changed"
    );
}
