//! Issue 17, item 2: full-text search across every session. The relay keeps a
//! tantivy index up to date off the turn's path; these tests wait for what
//! it indexes by polling the search endpoint with a deadline.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use loopchat_tests::{Api, Relay, loopchat_bin};
use serde_json::{Value, json};

/// Long enough for a loaded two-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

fn q(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn search(api: &Api, query: &str, extra: &str) -> (u16, Value) {
    api.get_json(&format!("/webchat/search?q={}{extra}", q(query)))
        .await
}

/// Polls the search until `pred` holds for its hits; panics at the deadline
/// with the last answer.
async fn wait_for_hits(
    api: &Api,
    query: &str,
    extra: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let (s, v) = search(api, query, extra).await;
        assert_eq!(s, 200, "{v}");
        let hits = v["hits"].as_array().cloned().unwrap_or_default();
        if pred(&hits) {
            return hits;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no such hits for {query:?} within {DEADLINE:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ids(hits: &[Value]) -> Vec<String> {
    hits.iter()
        .map(|h| h["messageId"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn transcript(home: &Path, session_id: &str) -> PathBuf {
    home.join(format!("sessions/{session_id}.jsonl"))
}

fn pi_line(id: &str, parent: &str, role: &str, text: &str) -> String {
    json!({
        "type": "message",
        "id": id,
        "parentId": parent,
        "timestamp": "2026-01-01T00:00:00.000Z",
        "message": {"role": role, "content": [{"type": "text", "text": text}], "timestamp": 1767225600000i64},
    })
    .to_string()
        + "\n"
}

#[tokio::test]
async fn a_turn_is_found_with_its_session_snippet_and_time() {
    let relay = Relay::start();
    let api = relay.client();
    let (s, v) = api
        .rpc(json!({"text": "the quartz sundial needs oiling", "session": "garden"}))
        .await;
    assert_eq!(s, 200, "{v}");
    // The user's message, as the history serves it (the reply may hang
    // under the session's title entry rather than the message itself).
    let (_, history) = api.get_json("/webchat/history?session=garden").await;
    let user_id = history["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "user"))
        .and_then(|m| m["id"].as_str())
        .expect("the user's message in the history")
        .to_owned();
    let (s, v) = api
        .rpc(json!({"text": "nothing to see", "session": "other"}))
        .await;
    assert_eq!(s, 200, "{v}");

    // The user's words and the echo's reply both hold them.
    let hits = wait_for_hits(&api, "Quartz SUNDIAL", "", |h| h.len() == 2).await;
    for hit in &hits {
        assert_eq!(hit["session"], "garden", "{hit}");
        assert!(
            hit["timestamp"]
                .as_str()
                .is_some_and(|t| t.starts_with("20")),
            "{hit}"
        );
        let html = hit["snippetHtml"].as_str().unwrap();
        assert!(html.contains("<mark>quartz</mark>"), "{html}");
        assert!(html.contains("<mark>sundial</mark>"), "{html}");
        assert!(
            hit["snippet"].as_str().unwrap().contains("quartz sundial"),
            "{hit}"
        );
    }
    let roles: Vec<&str> = hits.iter().filter_map(|h| h["role"].as_str()).collect();
    assert!(
        roles.contains(&"user") && roles.contains(&"assistant"),
        "{hits:?}"
    );
    assert!(ids(&hits).contains(&user_id), "{hits:?}");
    // Every word must match: one that is in no message finds nothing.
    let (s, v) = search(&api, "quartz zeppelin", "").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["hits"], json!([]), "{v}");
    // Restricted to another session: nothing; to its own: both.
    let (_, v) = search(&api, "quartz", "&session=other").await;
    assert_eq!(v["hits"], json!([]), "{v}");
    let (_, v) = search(&api, "quartz", "&session=garden&limit=1").await;
    assert_eq!(v["hits"].as_array().map(Vec::len), Some(1), "{v}");
    // A session that does not exist has no hits.
    let (s, v) = search(&api, "quartz", "&session=nowhere").await;
    assert_eq!((s, v["hits"].clone()), (200, json!([])), "{v}");

    // The CLI asks the same endpoint.
    let out = std::process::Command::new(loopchat_bin())
        .args(["search", "sundial", "--session", "garden", "--json"])
        .env("LOOPCHAT_HOME", &relay.home)
        .env_remove("LOOPCHAT_URL")
        .env_remove("LOOPCHAT_TOKEN")
        .output()
        .expect("loopchat search");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["hits"].as_array().map(Vec::len), Some(2), "{v}");
    let out = std::process::Command::new(loopchat_bin())
        .args(["search", "sundial"])
        .env("LOOPCHAT_HOME", &relay.home)
        .env_remove("LOOPCHAT_URL")
        .env_remove("LOOPCHAT_TOKEN")
        .output()
        .expect("loopchat search");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("garden"), "{text}");
}

#[tokio::test]
async fn hostile_text_comes_back_escaped_with_marks_only() {
    let relay = Relay::start();
    let api = relay.client();
    let hostile = "zebra <script>alert(1)</script> <img src=x onerror=alert(2)> & \"quotes\" end";
    let (s, v) = api.rpc(json!({"text": hostile, "session": "h"})).await;
    assert_eq!(s, 200, "{v}");
    let hits = wait_for_hits(&api, "zebra", "", |h| !h.is_empty()).await;
    for hit in &hits {
        let html = hit["snippetHtml"].as_str().unwrap();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;"), "{html}");
        let without_marks = html.replace("<mark>", "").replace("</mark>", "");
        assert!(!without_marks.contains('<'), "{html}");
        assert!(
            hit["snippet"].as_str().unwrap().contains("<script>"),
            "{hit}"
        );
    }
}

#[tokio::test]
async fn bad_queries_and_parameters_are_clear_400s() {
    let relay = Relay::start();
    let api = relay.client();
    let long = "a".repeat(257);
    for (path, says) in [
        ("/webchat/search".to_owned(), "q"),
        ("/webchat/search?q=".to_owned(), "word"),
        ("/webchat/search?q=%20%2B%2B%20--%20%22".to_owned(), "word"),
        (format!("/webchat/search?q={long}"), "256"),
        ("/webchat/search?q=x&limit=0".to_owned(), "limit"),
        ("/webchat/search?q=x&limit=101".to_owned(), "limit"),
        ("/webchat/search?q=x&limit=many".to_owned(), "invalid"),
        ("/webchat/search?q=x&bogus=1".to_owned(), "bogus"),
    ] {
        let (s, v) = api.get_json(&path).await;
        assert_eq!(s, 400, "{path}: {v}");
        assert_eq!(v["code"], "bad_request", "{path}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| e.contains(says)),
            "{path}: {v}"
        );
    }
    let (s, v) = api.get_json("/webchat/search?q=x&session=no%20way").await;
    assert_eq!(
        (s, v["code"].as_str()),
        (400, Some("invalid_session_key")),
        "{v}"
    );
    // Query syntax of search engines is plain text here: nothing to reject.
    let (s, v) = api
        .get_json(&format!("/webchat/search?q={}", q("title:(x AND \"y")))
        .await;
    assert_eq!(s, 200, "{v}");

    // No token: 401; a notify-only token: 403.
    let anon = Api {
        token: None,
        ..relay.client()
    };
    let (s, _) = anon.get_json("/webchat/search?q=x").await;
    assert_eq!(s, 401);
    let out = std::process::Command::new(loopchat_bin())
        .args(["token", "create", "--scope", "notify", "--name", "n"])
        .env("LOOPCHAT_HOME", &relay.home)
        .output()
        .expect("token create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scoped = Api {
        token: Some(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
        ..relay.client()
    };
    let (s, v) = scoped.get_json("/webchat/search?q=x").await;
    assert_eq!((s, v["code"].as_str()), (403, Some("forbidden")), "{v}");
}

#[tokio::test]
async fn another_programs_append_is_found() {
    let relay = Relay::start();
    let api = relay.client();
    let (s, v) = api.rpc(json!({"text": "first", "session": "shared"})).await;
    assert_eq!(s, 200, "{v}");
    let reply = v["message"]["id"].as_str().unwrap().to_owned();
    let path = transcript(&relay.home, v["sessionId"].as_str().unwrap());
    // Nobody reads or watches this session now: the sweep must find it.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    f.write_all(pi_line("foreign-1", &reply, "user", "a marmalade from elsewhere").as_bytes())
        .expect("append");
    drop(f);
    let hits = wait_for_hits(&api, "marmalade", "", |h| !h.is_empty()).await;
    assert_eq!(ids(&hits), vec!["foreign-1"]);
    assert_eq!(hits[0]["session"], "shared");
}

#[tokio::test]
async fn an_index_deleted_while_stopped_is_rebuilt_at_start() {
    let mut relay = Relay::start();
    let api = relay.client();
    for (i, word) in ["pelican", "gondola", "pelican gondola"].iter().enumerate() {
        let (s, v) = api
            .rpc(json!({"text": word, "session": format!("s{i}")}))
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let before = wait_for_hits(&api, "pelican", "", |h| h.len() == 4).await;
    assert_eq!(relay.stop(), Some(0));
    let dir = relay.home.join("search");
    assert!(dir.is_dir(), "the index lives in the home's search/");
    std::fs::remove_dir_all(&dir).expect("remove the index");
    relay.restart();
    let api = relay.client();
    let after = wait_for_hits(&api, "pelican", "", |h| h.len() == 4).await;
    let mut a = ids(&before);
    let mut b = ids(&after);
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert!(
        relay.logs().contains("building the search index"),
        "{}",
        relay.logs()
    );

    // A corrupt one (its metadata overwritten) is rebuilt too.
    assert_eq!(relay.stop(), Some(0));
    std::fs::write(dir.join("meta.json"), b"{not json").expect("corrupt");
    relay.restart();
    let api = relay.client();
    wait_for_hits(&api, "gondola", "", |h| h.len() == 4).await;

    // Killed before its batch is committed: the catch-up at start reads
    // the turn again.
    let (s, v) = api
        .rpc(json!({"text": "lighthouse", "session": "s9"}))
        .await;
    assert_eq!(s, 200, "{v}");
    relay.kill9();
    relay.restart();
    let api = relay.client();
    wait_for_hits(&api, "lighthouse", "", |h| h.len() == 2).await;
}

fn contents(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match &m["content"] {
            Value::String(s) => s.clone(),
            parts => parts[0]["text"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

#[tokio::test]
async fn history_pages_around_a_message_and_onwards() {
    let relay = Relay::start();
    let api = relay.client();
    // 30 turns: 60 messages, "m0", "echo: m0", …
    for i in 0..30 {
        let (s, v) = api
            .rpc(json!({"text": format!("m{i}"), "session": "long"}))
            .await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, all) = api
        .get_json("/webchat/history?session=long&limit=1000")
        .await;
    let all_ids: Vec<String> = all["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(all_ids.len(), 60);
    let anchor = &all_ids[20]; // "m10"

    let (s, page) = api
        .get_json(&format!(
            "/webchat/history?session=long&around={anchor}&limit=9"
        ))
        .await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(contents(&page)[4], "m10", "{page}");
    let got: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        all_ids[16..25]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert_eq!(page["hasMore"], true);
    assert_eq!(page["hasNewer"], true);

    // Back from there with `before`, forward with `after`: the whole path.
    let mut older = got.first().map(|s| s.to_string()).unwrap();
    let mut collected: Vec<String> = got.iter().map(|s| s.to_string()).collect();
    loop {
        let (s, p) = api
            .get_json(&format!(
                "/webchat/history?session=long&before={older}&limit=7"
            ))
            .await;
        assert_eq!(s, 200, "{p}");
        let ids: Vec<String> = p["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        collected = [ids.clone(), collected].concat();
        if p["hasMore"] != true {
            break;
        }
        older = ids[0].clone();
    }
    let mut newer = got.last().map(|s| s.to_string()).unwrap();
    loop {
        let (s, p) = api
            .get_json(&format!(
                "/webchat/history?session=long&after={newer}&limit=7"
            ))
            .await;
        assert_eq!(s, 200, "{p}");
        let ids: Vec<String> = p["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect();
        collected.extend(ids.clone());
        if p["hasNewer"] != true {
            assert!(p.get("hasNewer").is_none(), "false is left out: {p}");
            break;
        }
        newer = ids.last().unwrap().clone();
    }
    assert_eq!(collected, all_ids);

    // Near the end, what does not fit after the message goes before it.
    let last = all_ids.last().unwrap();
    let (_, p) = api
        .get_json(&format!(
            "/webchat/history?session=long&around={last}&limit=5"
        ))
        .await;
    let got: Vec<String> = p["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(got, all_ids[55..]);
    assert!(p.get("hasNewer").is_none(), "{p}");

    // Unknown ids are 404; placing a page twice is a 400.
    let (s, v) = api
        .get_json("/webchat/history?session=long&around=nope")
        .await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = api
        .get_json(&format!(
            "/webchat/history?session=long&around={anchor}&before={anchor}"
        ))
        .await;
    assert_eq!((s, v["code"].as_str()), (400, Some("bad_request")), "{v}");
    let (s, _) = api
        .get_json(&format!(
            "/webchat/history?session=long&around={anchor}&after={anchor}"
        ))
        .await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn around_follows_the_branch_it_is_asked_for() {
    let relay = Relay::start();
    let api = relay.client();
    let (s, first) = api
        .rpc(json!({"text": "root question", "session": "b"}))
        .await;
    assert_eq!(s, 200, "{first}");
    let (s, old) = api.rpc(json!({"text": "old branch", "session": "b"})).await;
    assert_eq!(s, 200, "{old}");
    let old_user = old["message"]["parentId"].as_str().unwrap().to_owned();
    // A new branch from the first reply: "old branch" is off the path now.
    let parent = first["message"]["id"].as_str().unwrap();
    let (s, v) = api
        .rpc(json!({"text": "new branch", "session": "b", "parentId": parent}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api
        .get_json(&format!("/webchat/history?session=b&around={old_user}"))
        .await;
    assert_eq!(s, 404, "{v}");
    let (s, p) = api
        .get_json(&format!(
            "/webchat/history?session=b&around={old_user}&leaf={old_user}"
        ))
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(
        contents(&p),
        vec!["root question", "echo: root question", "old branch"]
    );
    // Both branches are searched.
    wait_for_hits(&api, "branch", "", |h| h.len() == 4).await;
}
