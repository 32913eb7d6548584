//! Issue 15 item 4: `loopchat serve --store pi` and `--store openclaw[=DIR]`
//! open the stores that exist, where they are.
//!
//! The pi store is written by the REAL pi (`@mariozechner/pi-coding-agent`
//! 0.73.1, tests/pi), isolated with `PI_CODING_AGENT_DIR`, `PI_OFFLINE=1`,
//! `PI_TELEMETRY=0`, against the suites' real llama.cpp server through a
//! recording proxy (`LOOPCHAT_SKIP_LLAMA=1` skips that test with a printed
//! reason). The OpenClaw store is built from real pi files
//! (tests/fixtures/pi-0.73.1) and an OpenClaw `sessions.json` fixture.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use loopchat_tests::llama::{Llama, MODEL, RecordingProxy};
use loopchat_tests::{Api, Relay, RelayOptions, SseReader, all_messages, session_keys};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// (role, text) of every message loopchat shows for `session`.
async fn shown(api: &Api, session: &str) -> Vec<(String, String)> {
    all_messages(api, session)
        .await
        .iter()
        .map(|m| {
            let text = match &m["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            };
            (m["role"].as_str().unwrap_or_default().to_owned(), text)
        })
        .collect()
}

async fn sessions(api: &Api) -> Vec<Value> {
    let (status, list) = api.get_json("/webchat/sessions").await;
    assert_eq!(status, 200, "{list}");
    list["sessions"].as_array().unwrap().clone()
}

fn summary<'a>(list: &'a [Value], key: &str) -> &'a Value {
    list.iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no session {key} in {list:?}"))
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// The pi session files under `sessions` (pi's `--<cwd>--` folders).
fn pi_files(sessions: &Path) -> Vec<PathBuf> {
    snapshot(sessions)
        .into_keys()
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect()
}

fn header(file: &Path) -> Value {
    let bytes = std::fs::read(file).unwrap();
    let first = bytes.split(|b| *b == b'\n').next().unwrap();
    serde_json::from_slice(first).unwrap()
}

/// An isolated pi whose one provider is the recording proxy.
struct Pi {
    dir: tempfile::TempDir,
}

impl Pi {
    fn new(base_url: &str) -> Pi {
        let dir = tempfile::tempdir().unwrap();
        loopchat_tests::pi::agent_dir(dir.path(), base_url);
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        Pi { dir }
    }

    fn agent(&self) -> PathBuf {
        self.dir.path().join("pi-agent")
    }

    /// The directory pi runs in: its sessions go to `--<it>--`.
    fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// `pi -p <prompt>` (on `session` if given, else a new session).
    async fn prompt(&self, session: Option<&Path>, prompt: &str) -> String {
        let mut cmd = tokio::process::Command::new(loopchat_tests::pi::pi_bin());
        if let Some(s) = session {
            cmd.arg("--session").arg(s);
        }
        cmd.args(["--provider", loopchat_tests::pi::PROVIDER, "--model", MODEL])
            .args(["--no-tools", "-p", prompt])
            .current_dir(self.work())
            .envs(loopchat_tests::pi::pi_env(&self.agent()))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        // An external process: bounded.
        let out = tokio::time::timeout(Duration::from_secs(240), cmd.output())
            .await
            .expect("pi finished within 240 s")
            .expect("run pi");
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "pi failed ({}):\n{text}", out.status);
        text
    }

    /// pi's own SessionManager names the session in `file`.
    async fn name(&self, file: &Path, name: &str) {
        let module = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("pi/node_modules/@mariozechner/pi-coding-agent/dist/core/session-manager.js");
        let code = format!(
            "import {{ SessionManager }} from {module:?};\n\
             const sm = SessionManager.open({file:?});\n\
             sm.appendSessionInfo({name:?});",
            module = module.display().to_string(),
            file = file.display().to_string(),
        );
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new("node")
                .args(["--input-type=module", "-e", &code])
                .output(),
        )
        .await
        .expect("node finished")
        .expect("run node");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The texts of every message of a chat completion request.
fn request_texts(body: &Value) -> Vec<String> {
    let mut texts = Vec::new();
    for m in body["messages"].as_array().into_iter().flatten() {
        match &m["content"] {
            Value::String(s) => texts.push(s.clone()),
            Value::Array(parts) => texts.extend(
                parts
                    .iter()
                    .filter_map(|p| p["text"].as_str().map(str::to_owned)),
            ),
            _ => {}
        }
    }
    texts
}

#[tokio::test]
async fn the_pi_store_is_pis_folder_both_ways() {
    let Some(llama) = Llama::start().await else {
        return;
    };
    let proxy = RecordingProxy::start(llama.addr()).await;
    let pi = Pi::new(&proxy.base_url());
    let sessions_dir = pi.agent().join("sessions");

    // pi starts a session of its own, in its own folder, and names it.
    pi.prompt(None, "first from pi").await;
    let files = pi_files(&sessions_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let file = files[0].clone();
    let id = header(&file)["id"].as_str().unwrap().to_owned();
    let work = std::fs::canonicalize(pi.work()).unwrap();
    pi.name(&file, "named by pi").await;

    // loopchat finds it through PI_CODING_AGENT_DIR, as pi does.
    let relay = Relay::start_with(
        RelayOptions::default()
            .env("PI_CODING_AGENT_DIR", pi.agent().to_str().unwrap())
            .arg("--store")
            .arg("pi"),
    );
    let api = relay.client();
    let list = sessions(&api).await;
    assert_eq!(list.len(), 1, "{list:?}");
    let s = summary(&list, &id);
    assert_eq!(s["sessionId"], id.as_str());
    assert_eq!(s["title"], "named by pi");
    assert_eq!(s["cwd"], work.to_str().unwrap());
    let before = shown(&api, &id).await;
    assert_eq!(before[0], ("user".into(), "first from pi".into()));
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(before[1].0, "assistant");

    // pi appends while loopchat runs: the watching window sees it live.
    let r = api
        .get(&format!("/webchat/events?session={id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut events = SseReader::new(r);
    pi.prompt(Some(&file), "second from pi").await;
    let live = loop {
        let (_, event) = events.next().await.expect("an event");
        if event["type"] == "message" && event["message"]["role"] == "user" {
            break event;
        }
    };
    let text = match &live["message"]["content"] {
        Value::String(s) => s.clone(),
        parts => parts[0]["text"].as_str().unwrap_or_default().to_owned(),
    };
    assert_eq!(text, "second from pi", "{live}");
    // pi's reply follows on the same stream; then the history has both.
    loop {
        let (_, event) = events.next().await.expect("an event");
        if event["type"] == "message" && event["message"]["role"] == "assistant" {
            break;
        }
    }
    assert_eq!(shown(&api, &id).await.len(), 4);

    // A session pi starts while loopchat runs joins the list. There is no
    // event for a new session: the list is asked until the folder's next
    // listing (every 250 ms) has it, within a bound.
    pi.prompt(None, "another session of pi").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let other = loop {
        let list = sessions(&api).await;
        if let Some(s) = list.iter().find(|s| s["key"] != id.as_str()) {
            break s.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pi's new session never appeared: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let other_id = other["key"].as_str().unwrap().to_owned();
    assert_eq!(other["cwd"], work.to_str().unwrap());
    assert_eq!(
        shown(&api, &other_id).await[0],
        ("user".into(), "another session of pi".into())
    );

    // A loopchat turn goes into pi's file (no copy in the home), and pi
    // sends it to its model when it continues.
    let (status, v) = api
        .rpc(serde_json::json!({"session": id, "text": "from loopchat"}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["sessionId"], id.as_str());
    let home_sessions = relay.home.join("sessions");
    assert!(
        !home_sessions.exists() || pi_files(&home_sessions).is_empty(),
        "loopchat copied the session into its home"
    );
    assert!(
        String::from_utf8(std::fs::read(&file).unwrap())
            .unwrap()
            .contains("from loopchat")
    );
    let asked = proxy.bodies().len();
    pi.prompt(Some(&file), "third from pi").await;
    let context = request_texts(proxy.bodies().get(asked).expect("pi asked its model"));
    for said in [
        "first from pi",
        "second from pi",
        "from loopchat",
        "third from pi",
    ] {
        assert!(
            context.iter().any(|t| t.contains(said)),
            "{said:?} missing from pi's context {context:?}"
        );
    }

    // A session loopchat starts in this store is a pi session: pi's folder
    // for the relay's cwd, pi's file name, and pi continues it.
    let (status, v) = api
        .rpc(serde_json::json!({"session": "fresh", "text": "started by loopchat"}))
        .await;
    assert_eq!(status, 200, "{v}");
    let new_id = v["sessionId"].as_str().unwrap().to_owned();
    let created: Vec<_> = pi_files(&sessions_dir)
        .into_iter()
        .filter(|p| header(p)["id"] == new_id.as_str())
        .collect();
    assert_eq!(created.len(), 1, "{created:?}");
    let relay_cwd = std::env::current_dir().unwrap();
    let folder = format!(
        "--{}--",
        relay_cwd
            .to_str()
            .unwrap()
            .trim_start_matches('/')
            .replace('/', "-")
    );
    assert_eq!(
        created[0].parent().unwrap().file_name().unwrap(),
        folder.as_str()
    );
    let name = created[0].file_name().unwrap().to_str().unwrap();
    assert!(
        name.ends_with(&format!("_{new_id}.jsonl")) && name.len() == 24 + 1 + new_id.len() + 6,
        "{name}"
    );
    assert_eq!(header(&created[0])["id"], new_id.as_str());
    let asked = proxy.bodies().len();
    pi.prompt(Some(&created[0]), "pi continues").await;
    let context = request_texts(&proxy.bodies()[asked]);
    assert!(
        context.iter().any(|t| t.contains("started by loopchat")),
        "{context:?}"
    );
    drop(llama);
}

/// The OpenClaw layout: real pi files and an OpenClaw `sessions.json`.
fn openclaw_store(parent: &Path) -> PathBuf {
    let dir = parent.join(".openclaw/agents/main/sessions");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixtures().join("openclaw/sessions.json"),
        dir.join("sessions.json"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("pi-0.73.1/all-types.jsonl"),
        dir.join("2026-12-02T20-57-52-870Z_01a2388c-abe2-741c-91c2-9f0fce388451.jsonl"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("pi-0.73.1/branch.jsonl"),
        dir.join("01a23780-5d7d-7562-b477-3a104b514a33.jsonl"),
    )
    .unwrap();
    dir
}

#[tokio::test]
async fn an_openclaw_store_is_listed_and_shown_as_openclaw_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = openclaw_store(tmp.path());
    let before = snapshot(tmp.path());
    // The default folder, found through HOME.
    let relay = Relay::start_with(
        RelayOptions::default()
            .env("HOME", tmp.path().to_str().unwrap())
            .arg("--store")
            .arg("openclaw"),
    );
    let api = relay.client();
    let list = sessions(&api).await;
    let (_, raw) = api.get_json("/webchat/sessions").await;
    let keys = session_keys(&raw);
    assert!(keys.contains(&"agent:main:main".to_owned()), "{keys:?}");
    assert!(
        keys.contains(&"agent:main:telegram:42".to_owned()),
        "{keys:?}"
    );
    let main = summary(&list, "agent:main:main");
    assert_eq!(main["title"], "all types");
    assert_eq!(main["cwd"], "/home/user/work");
    assert_eq!(main["thinkingLevel"], "low");
    let tg = summary(&list, "agent:main:telegram:42");
    assert_eq!(tg["title"], "branch demo");
    // The live path of pi's branched session.
    let shown_tg = shown(&api, "agent:main:telegram:42").await;
    assert!(
        shown_tg.iter().any(|(_, t)| t == "alternative prompt"),
        "{shown_tg:?}"
    );
    let shown_main = shown(&api, "agent:main:main").await;
    assert_eq!(shown_main[0], ("user".into(), "hello".into()));
    // `sessionFile` pointing out of the folder is not followed, and looking
    // creates nothing.
    let escape = summary(&list, "agent:main:escape");
    assert!(escape["title"].is_null());
    assert!(shown(&api, "agent:main:escape").await.is_empty());
    assert!(!tmp.path().join(".openclaw/outside.jsonl").exists());
    assert_eq!(snapshot(tmp.path()), before, "reading wrote into the store");

    // A turn appends to OpenClaw's transcript, after its bytes.
    let original = std::fs::read(dir.join("01a23780-5d7d-7562-b477-3a104b514a33.jsonl")).unwrap();
    let (status, v) = api
        .rpc(serde_json::json!({"session": "agent:main:telegram:42", "text": "hi from loopchat"}))
        .await;
    assert_eq!(status, 200, "{v}");
    let now = std::fs::read(dir.join("01a23780-5d7d-7562-b477-3a104b514a33.jsonl")).unwrap();
    assert!(now.starts_with(&original) && now.len() > original.len());
    // OpenClaw adds a session while loopchat runs (it rewrites its index by
    // rename): the list has it once the index's next check (every 250 ms)
    // has seen it; there is no event for that, so the list is asked within
    // a bound.
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("sessions.json")).unwrap()).unwrap();
    index["agent:main:discord:7"] =
        serde_json::json!({"sessionId": "bc143340-59f2-412f-89a5-0e3e86e49832", "updatedAt": 9});
    std::fs::copy(
        fixtures().join("pi-0.73.1/compaction.jsonl"),
        dir.join("bc143340-59f2-412f-89a5-0e3e86e49832.jsonl"),
    )
    .unwrap();
    let tmp_index = dir.join(".sessions.json.openclaw");
    std::fs::write(&tmp_index, index.to_string()).unwrap();
    std::fs::rename(&tmp_index, dir.join("sessions.json")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = sessions(&api).await;
        if list.iter().any(|s| s["key"] == "agent:main:discord:7") {
            assert_eq!(summary(&list, "agent:main:discord:7")["cwd"], "/tmp/pfx");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "OpenClaw's new session never appeared: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        shown(&api, "agent:main:discord:7")
            .await
            .iter()
            .any(|(_, t)| t == "third question")
    );

    // OpenClaw's fields survive in its index.
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("sessions.json")).unwrap()).unwrap();
    assert_eq!(index["agent:main:main"]["lastChannel"], "webchat");
}

fn fails_to_start(env: &[(&str, &str)], args: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    match Relay::spawn(&tmp.path().join("home"), &env, &args) {
        Ok(_) => panic!("the relay started with {args:?}"),
        Err(stderr) => stderr,
    }
}

#[tokio::test]
async fn a_bad_store_is_a_clear_error_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-folder");
    let err = fails_to_start(&[], &["--store", &format!("pi={}", missing.display())]);
    assert!(
        err.contains("cannot open the store folder") && err.contains("no-such-folder"),
        "{err}"
    );
    assert!(!missing.exists(), "the relay made up the folder");

    let err = fails_to_start(
        &[],
        &["--store", &format!("openclaw={}", missing.display())],
    );
    assert!(err.contains("cannot open the store folder"), "{err}");
    assert!(!missing.exists());

    // A file where the folder should be.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = fails_to_start(&[], &["--store", &format!("pi={}", file.display())]);
    assert!(err.contains("not a directory"), "{err}");

    // No OpenClaw folder at the defaults.
    let err = fails_to_start(
        &[("HOME", tmp.path().to_str().unwrap())],
        &["--store", "openclaw"],
    );
    assert!(err.contains("pass --store openclaw=DIR"), "{err}");

    // A folder others can write: they could slip sessions in.
    {
        use std::os::unix::fs::PermissionsExt;
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = fails_to_start(&[], &["--store", &format!("pi={}", open.display())]);
        assert!(err.contains("group or others could add sessions"), "{err}");
        assert_eq!(
            std::fs::metadata(&open).unwrap().permissions().mode() & 0o777,
            0o777,
            "the relay changed another tool's folder"
        );
    }

    // Not a store loopchat knows.
    let err = fails_to_start(&[], &["--store", "clawd"]);
    assert!(err.contains("unknown store"), "{err}");

    // A sessions.json that does not parse: the error names it, and neither
    // it nor the transcripts change.
    let store = tmp.path().join("claw");
    let dir = openclaw_store(&store);
    std::fs::write(
        dir.join("sessions.json"),
        b"{\"agent:main:main\": {\"sessionId\": ",
    )
    .unwrap();
    let before = snapshot(&store);
    let err = fails_to_start(&[], &["--store", &format!("openclaw={}", dir.display())]);
    assert!(
        err.contains("sessions.json is not a valid session index"),
        "{err}"
    );
    assert_eq!(snapshot(&store), before);

    // A folder without sessions.json is not an OpenClaw store.
    std::fs::remove_file(dir.join("sessions.json")).unwrap();
    let before = snapshot(&store);
    let err = fails_to_start(&[], &["--store", &format!("openclaw={}", dir.display())]);
    assert!(err.contains("has no sessions.json"), "{err}");
    assert_eq!(snapshot(&store), before);

    // An unreadable folder (meaningless for root, who reads anything).
    if unsafe { libc::geteuid() } != 0 {
        use std::os::unix::fs::PermissionsExt;
        let locked = tmp.path().join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        let err = fails_to_start(&[], &["--store", &format!("pi={}", locked.display())]);
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(err.contains("cannot read the store folder"), "{err}");
    } else {
        eprintln!("skipping the unreadable-folder case: running as root");
    }
}
