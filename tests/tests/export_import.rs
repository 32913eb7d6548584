//! Export (Markdown, self-contained HTML, the JSONL as stored) and import
//! (pi session files, ChatGPT's conversations.json) against the real relay:
//! the endpoints, the CLI, and broken files refused with nothing written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use loopchat_tests::{Api, Relay, RelayOptions, all_messages, loopchat_bin, session_keys};
use serde_json::{Value, json};

const PNG: [u8; 33] = [
    0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R', 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1f, 0x15, 0xc4, 0x89,
];

const CODE_TURN: &str = "code:\n```rust\nfn main() { println!(\"hi\"); }\n```";

fn chatgpt_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/chatgpt/conversations.json")
}

fn cli(relay: &Relay, args: &[&str]) -> Output {
    Command::new(loopchat_bin())
        .args(args)
        .env("LOOPCHAT_HOME", &relay.home)
        .env_remove("LOOPCHAT_URL")
        .env_remove("LOOPCHAT_TOKEN")
        .output()
        .expect("run loopchat")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every file under the home, with the size of each in `sessions/`, to show
/// that a refused import wrote nothing (other files, such as the index
/// rewritten after a turn, may be rewritten in between).
fn files(home: &Path) -> BTreeSet<(PathBuf, u64)> {
    let sessions = home.join("sessions");
    all_files(home)
        .into_iter()
        .map(|(p, len)| {
            let len = if p.parent() == Some(&sessions) && !p.ends_with("sessions.json") {
                len
            } else {
                0
            };
            (p, len)
        })
        .collect()
}

fn all_files(home: &Path) -> BTreeSet<(PathBuf, u64)> {
    fn walk(dir: &Path, out: &mut BTreeSet<(PathBuf, u64)>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let path = e.path();
            let meta = e.metadata().expect("metadata");
            if meta.is_dir() {
                walk(&path, out);
            } else {
                out.insert((path, meta.len()));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(home, &mut out);
    out
}

async fn export(
    api: &Api,
    session: &str,
    format: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let r = api
        .get(&format!(
            "/webchat/export?session={session}&format={format}"
        ))
        .send()
        .await
        .expect("export");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.expect("body").to_vec())
}

async fn import(api: &Api, format: &str, body: Vec<u8>) -> (u16, Value) {
    let r = api
        .post(&format!("/webchat/import?format={format}"))
        .body(body)
        .send()
        .await
        .expect("import");
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

/// A session with a picture, a code reply and a second turn.
async fn session_with_code_and_image(api: &Api, key: &str) {
    let r = api
        .post("/webchat/attachments")
        .header("content-type", "image/png")
        .body(PNG.to_vec())
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 200);
    let id = r.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (s, v) = api
        .rpc(json!({"session": key, "text": "look at this", "attachments": [{"id": id}]}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api.rpc(json!({"session": key, "text": CODE_TURN})).await;
    assert_eq!(s, 200, "{v}");
}

fn texts(messages: &[Value]) -> Vec<(String, String)> {
    messages
        .iter()
        .map(|m| {
            let text = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter(|p| p["type"] == "text")
                    .map(|p| p["text"].as_str().unwrap_or("").to_owned())
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            };
            (m["role"].as_str().unwrap_or("").to_owned(), text)
        })
        .collect()
}

#[tokio::test]
async fn each_format_holds_the_conversation() {
    let relay = Relay::start();
    let api = relay.client();
    session_with_code_and_image(&api, "ex").await;
    let (s, _) = api
        .post("/webchat/rename")
        .json(&json!({"session": "ex", "name": "Export <me> & co"}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .expect("rename");
    assert_eq!(s, 200);

    let (s, h, html) = export(&api, "ex", "html").await;
    assert_eq!(s, 200, "{}", String::from_utf8_lossy(&html));
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(h["content-disposition"], "attachment; filename=\"ex.html\"");
    let html = String::from_utf8(html).expect("utf-8");
    assert!(!html.contains("<script"), "a script in the export");
    assert!(
        !html.contains("src=\"http"),
        "a remote source in the export"
    );
    assert!(html.contains("default-src 'none'"), "no CSP");
    assert!(
        html.contains("src=\"data:image/png;base64,"),
        "the image is not inlined"
    );
    assert!(html.contains("class=\"hl-"), "the code is not highlighted");
    assert!(
        html.contains("prefers-color-scheme: dark"),
        "no dark styles"
    );
    assert!(
        html.contains("Export &lt;me&gt; &amp; co"),
        "the title, escaped"
    );
    assert!(html.contains("look at this"));

    let (s, h, md) = export(&api, "ex", "md").await;
    assert_eq!(s, 200);
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/markdown")
    );
    let md = String::from_utf8(md).expect("utf-8");
    assert!(md.starts_with("# Export <me> & co\n"), "{md}");
    assert!(
        md.contains("```rust\nfn main() { println!(\"hi\"); }\n```"),
        "the fence is kept: {md}"
    );
    assert!(md.contains("## User · "), "{md}");
    assert!(md.contains("## Assistant · "), "{md}");
    assert!(md.contains("![image](data:image/png;base64,"), "{md}");

    // The transcript, byte for byte as it is on disk.
    let (s, h, jsonl) = export(&api, "ex", "jsonl").await;
    assert_eq!(s, 200);
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"ex.jsonl\""
    );
    let (_, info) = api.get_json("/webchat/info?session=ex").await;
    let id = info["sessionId"].as_str().expect("sessionId");
    let on_disk = std::fs::read(relay.home.join(format!("sessions/{id}.jsonl"))).expect("file");
    assert_eq!(jsonl, on_disk);

    // The CLI writes the same file.
    let out_path = relay.home.parent().unwrap().join("out.jsonl");
    stdout(&cli(
        &relay,
        &[
            "export",
            "ex",
            "--format",
            "jsonl",
            "-o",
            out_path.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::read(&out_path).expect("written"), on_disk);
    let md_cli = stdout(&cli(&relay, &["export", "ex", "--format", "md"]));
    assert!(md_cli.contains("```rust\n"), "{md_cli}");

    // Bad requests: an unknown session or format.
    let (s, _, body) = export(&api, "nope", "md").await;
    assert_eq!(s, 404, "{}", String::from_utf8_lossy(&body));
    let (s, _, body) = export(&api, "ex", "pdf").await;
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&body));
    let bad = cli(&relay, &["export", "ex", "--format", "pdf"]);
    assert!(!bad.status.success());
}

#[tokio::test]
async fn an_exported_jsonl_comes_back_as_the_same_conversation() {
    let relay = Relay::start();
    let api = relay.client();
    session_with_code_and_image(&api, "orig").await;
    let (_, _, jsonl) = export(&api, "orig", "jsonl").await;
    let (s, v) = import(&api, "auto", jsonl).await;
    assert_eq!(s, 200, "{v}");
    let sessions = v["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 1, "{v}");
    let key = sessions[0]["key"].as_str().expect("key").to_owned();
    assert_ne!(key, "orig");
    assert_eq!(sessions[0]["messages"], 4, "{v}");
    let before = all_messages(&api, "orig").await;
    let after = all_messages(&api, &key).await;
    assert_eq!(texts(&after), texts(&before));
    let ids = |ms: &[Value]| ms.iter().map(|m| m["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&after), ids(&before), "entry ids are kept");
    // A session of its own: the copy's file is not the original's.
    assert_ne!(sessions[0]["sessionId"], {
        let (_, info) = api.get_json("/webchat/info?session=orig").await;
        info["sessionId"].clone()
    });
    let (_, list) = api.get_json("/webchat/sessions").await;
    assert!(session_keys(&list).contains(&key));

    // The CLI imports the same way.
    let path = relay.home.parent().unwrap().join("orig.jsonl");
    let (_, _, jsonl) = export(&api, "orig", "jsonl").await;
    std::fs::write(&path, jsonl).unwrap();
    let out = stdout(&cli(&relay, &["import", path.to_str().unwrap(), "--json"]));
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["sessions"][0]["messages"], 4, "{v}");
}

#[tokio::test]
async fn an_old_headerless_transcript_is_upgraded_on_import() {
    let relay = Relay::start();
    let api = relay.client();
    // loopchat's format before pi's: bare message objects, no header.
    let old = concat!(
        r#"{"role":"user","content":"old question","timestamp":1700000000000}"#,
        "\n",
        r#"{"role":"assistant","content":"old answer","timestamp":1700000001000}"#,
        "\n"
    );
    let (s, v) = import(&api, "pi", old.as_bytes().to_vec()).await;
    assert_eq!(s, 200, "{v}");
    let key = v["sessions"][0]["key"].as_str().unwrap().to_owned();
    let id = v["sessions"][0]["sessionId"].as_str().unwrap().to_owned();
    let got = all_messages(&api, &key).await;
    assert_eq!(
        texts(&got),
        vec![
            ("user".into(), "old question".into()),
            ("assistant".into(), "old answer".into())
        ]
    );
    let file = std::fs::read_to_string(relay.home.join(format!("sessions/{id}.jsonl"))).unwrap();
    let header: Value = serde_json::from_str(file.lines().next().unwrap()).unwrap();
    assert_eq!(header["type"], "session");
    assert_eq!(header["version"], 3);
    assert_eq!(header["id"], id.as_str());
}

#[tokio::test]
async fn a_chatgpt_export_becomes_one_session_per_conversation_on_its_branch() {
    let relay = Relay::start();
    let api = relay.client();
    let bytes = std::fs::read(chatgpt_fixture()).expect("fixture");
    let (s, v) = import(&api, "auto", bytes).await;
    assert_eq!(s, 200, "{v}");
    let sessions = v["sessions"].as_array().expect("sessions").clone();
    assert_eq!(sessions.len(), 2, "{v}");
    assert_eq!(sessions[0]["title"], "Greetings");
    assert_eq!(sessions[0]["messages"], 2);
    assert_eq!(sessions[1]["title"], "Rust lifetimes 🦀 — ünïcödé");
    assert_eq!(sessions[1]["messages"], 4);

    let key = sessions[1]["key"].as_str().unwrap();
    let got = all_messages(&api, key).await;
    let t = texts(&got);
    let roles: Vec<&str> = t.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"], "{t:?}");
    assert!(t[0].1.contains("日本語 🦀"), "{t:?}");
    assert!(
        t[1].1.starts_with("A lifetime names"),
        "the current branch's answer: {t:?}"
    );
    assert!(
        t.iter().all(|(_, text)| !text.contains("OLD ANSWER")),
        "the regenerated answer is off the branch: {t:?}"
    );
    assert_eq!(
        t[2].1,
        "First part: here is a screenshot of the borrow checker's error.\n\nSecond part: why does it \
         say « borrowed value does not live long enough »? ✓"
    );
    assert!(t[3].1.contains("ça marche ✅"));
    assert!(
        !t.iter().any(|(_, text)| text.contains("analysing")),
        "tool call skipped"
    );
    // Create times kept (seconds → RFC 3339).
    assert_eq!(got[0]["timestamp"], "2024-12-06T15:46:40.125Z");
    assert_eq!(got[3]["timestamp"], "2024-12-06T15:48:40.750Z");
    // The reply renders like any other.
    assert!(
        got[1]["html"].as_str().unwrap_or("").contains("hl-"),
        "{}",
        got[1]
    );
    // Titles reach the session list.
    let (_, list) = api.get_json("/webchat/sessions").await;
    let titles: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["title"].as_str())
        .collect();
    assert!(titles.contains(&"Greetings"), "{list}");

    // And it exports again, as any session does.
    let (s, _, md) = export(&api, key, "md").await;
    assert_eq!(s, 200);
    assert!(
        String::from_utf8(md)
            .unwrap()
            .starts_with("# Rust lifetimes 🦀")
    );
}

#[tokio::test]
async fn broken_files_are_refused_whole_and_nothing_is_written() {
    let relay = Relay::start_with(RelayOptions::default().config("import_limit = 65536\n"));
    let api = relay.client();
    // One session to export and to count against.
    let (s, v) = api.rpc(json!({"session": "base", "text": "hello"})).await;
    assert_eq!(s, 200, "{v}");
    let (_, _, good) = export(&api, "base", "jsonl").await;
    let good = String::from_utf8(good).unwrap();
    let fixture = std::fs::read_to_string(chatgpt_fixture()).unwrap();
    let (_, info) = api.get_json("/webchat/info").await;
    assert_eq!(info["importLimit"], 65536);

    let lines: Vec<&str> = good.lines().collect();
    let last_line = format!("line {}: not valid JSON", lines.len());
    let bad_middle = format!("{}\n{}\n{{not json\n{}\n", lines[0], lines[1], lines[2]);
    let truncated_jsonl = &good[..good.len() - 10];
    let truncated_chatgpt = &fixture[..fixture.len() / 2];
    let wrong_branch = fixture.replacen(
        "\"current_node\": \"fff1-answer\"",
        "\"current_node\": \"nowhere\"",
        1,
    );
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "bad line in the middle",
            "auto",
            bad_middle.into_bytes(),
            "line 3: not valid JSON",
        ),
        (
            "truncated JSONL",
            "pi",
            truncated_jsonl.as_bytes().to_vec(),
            &last_line,
        ),
        (
            "truncated ChatGPT export",
            "auto",
            truncated_chatgpt.as_bytes().to_vec(),
            "not valid JSON",
        ),
        (
            "an object where an array is",
            "chatgpt",
            br#"{"mapping":{}}"#.to_vec(),
            "array of conversations",
        ),
        (
            "a line that is no object",
            "pi",
            format!("{}\n[1,2]\n", lines[0]).into_bytes(),
            "line 2: not a JSON object",
        ),
        (
            "JSON that is no session",
            "auto",
            b"{\"hello\":1}\n".to_vec(),
            "no message",
        ),
        (
            "a conversation without mapping",
            "auto",
            format!("[{}, {{\"title\":\"x\"}}]", &fixture[1..fixture.len() - 1]).into_bytes(),
            "conversation at index 2: no `mapping`",
        ),
        (
            "a current_node not in mapping",
            "auto",
            wrong_branch.into_bytes(),
            "conversation at index 1: `current_node` \"nowhere\"",
        ),
        (
            "a newer format",
            "pi",
            b"{\"type\":\"session\",\"version\":9,\"id\":\"x\"}\n".to_vec(),
            "v9",
        ),
        (
            "not JSON at all",
            "auto",
            b"hello".to_vec(),
            "not a file this relay imports",
        ),
        ("empty", "auto", Vec::new(), "empty"),
    ];
    let before = files(&relay.home);
    let (_, list) = api.get_json("/webchat/sessions").await;
    let count = session_keys(&list).len();
    for (what, format, body, expected) in cases {
        let (s, v) = import(&api, format, body).await;
        assert_eq!(s, 400, "{what}: {v}");
        assert_eq!(v["code"], "bad_request", "{what}: {v}");
        let error = v["error"].as_str().unwrap_or("");
        assert!(
            error.contains(expected),
            "{what}: {error:?} lacks {expected:?}"
        );
    }
    // Too large: refused before it is read, with its own code.
    let (s, v) = import(&api, "auto", vec![b' '; 65537]).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["code"], "payload_too_large");
    // The CLI says why, and exits non-zero.
    let broken = relay.home.parent().unwrap().join("broken.jsonl");
    std::fs::write(&broken, "{\"type\":\"session\",\"version\":3}\n{oops\n").unwrap();
    let out = cli(&relay, &["import", broken.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2: not valid JSON"), "{err}");

    assert_eq!(
        files(&relay.home),
        before,
        "a refused import wrote something"
    );
    let (_, list) = api.get_json("/webchat/sessions").await;
    assert_eq!(session_keys(&list).len(), count);
}

#[tokio::test]
async fn a_notify_only_token_can_neither_export_nor_import() {
    let relay = Relay::start();
    let api = relay.client();
    let (s, _) = api.rpc(json!({"session": "main", "text": "hello"})).await;
    assert_eq!(s, 200);
    let out = cli(&relay, &["token", "create", "--scope", "notify"]);
    let token = stdout(&out).trim().to_owned();
    let scoped = Api {
        token: Some(token),
        ..relay.client()
    };
    let (s, _, body) = export(&scoped, "main", "jsonl").await;
    assert_eq!(s, 403, "{}", String::from_utf8_lossy(&body));
    let before = files(&relay.home);
    let (s, v) = import(&scoped, "auto", std::fs::read(chatgpt_fixture()).unwrap()).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(v["code"], "forbidden");
    assert_eq!(files(&relay.home), before);
    let anonymous = Api {
        token: None,
        ..relay.client()
    };
    let (s, _, _) = export(&anonymous, "main", "md").await;
    assert_eq!(s, 401);
}
