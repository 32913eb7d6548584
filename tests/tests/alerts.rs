//! Issue 13: alerts people act on — images (CLI and HTTP, notify-only
//! tokens, no orphans), read state and dismissal in the relay, checks
//! (schedules, timeouts, history, run now), "ask the agent". Real binary,
//! real sockets, real child processes.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use base64::Engine;
use loopchat_tests::{Api, Relay, RelayOptions, SseReader, loopchat_bin};
use serde_json::{Value, json};

// ---------------------------------------------------------------- helpers

async fn cli(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(loopchat_bin());
    cmd.args(args)
        .env("LOOPCHAT_HOME", home)
        .env_remove("LOOPCHAT_URL")
        .env_remove("LOOPCHAT_TOKEN")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("run loopchat")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn with_token(relay: &Relay, token: &str) -> Api {
    Api {
        token: Some(token.to_owned()),
        ..relay.client()
    }
}

async fn create_notify_token(home: &Path, name: &str) -> String {
    let out = cli(
        home,
        &["token", "create", "--scope", "notify", "--name", name],
        &[],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

async fn list(api: &Api) -> Vec<Value> {
    let (s, v) = api.get_json("/webchat/notifications?limit=500").await;
    assert_eq!(s, 200, "{v}");
    v["notifications"].as_array().unwrap().clone()
}

async fn find(api: &Api, id: &str) -> Option<Value> {
    list(api).await.into_iter().find(|n| n["id"] == id)
}

async fn post(api: &Api, path: &str, body: Value) -> (u16, Value) {
    let r = api.post(path).json(&body).send().await.expect("post");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// A real 2×2 PNG (Chromium decodes it).
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==";

fn png() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(PNG_B64)
        .unwrap()
}

fn images_dir(home: &Path) -> PathBuf {
    home.join("alert-images")
}

fn image_files(home: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(images_dir(home))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// ---------------------------------------------------------------- images

#[tokio::test]
async fn an_image_alert_from_a_notify_token_is_stored_served_to_the_owner_only_and_collected() {
    let relay = Relay::start();
    let main = relay.client();
    let notify_token = create_notify_token(&relay.home, "charts").await;
    let tmp = tempfile::tempdir().unwrap();
    let chart = tmp.path().join("chart.png");
    std::fs::write(&chart, png()).unwrap();
    let env = [
        ("LOOPCHAT_TOKEN", notify_token.as_str()),
        ("LOOPCHAT_URL", relay.origin().leak() as &str),
    ];
    let chart_arg = chart.to_str().unwrap();
    for id in ["img-1", "img-2"] {
        let out = cli(
            &relay.home,
            &[
                "notify",
                "--title",
                "Disk",
                "--body",
                "see chart",
                "--id",
                id,
                "--image",
                chart_arg,
            ],
            &env,
        )
        .await;
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let n = find(&main, "img-1").await.expect("kept");
    let image = n["image"].as_str().expect("has an image").to_owned();
    assert!(image.ends_with(".png") && image.len() == 64 + 4, "{image}");
    assert_eq!(n["source"], format!("token:{}", token_id(&relay.home)));
    assert_eq!(
        image_files(&relay.home),
        vec![image.clone()],
        "one file, content-addressed"
    );
    assert_eq!(
        std::fs::read(images_dir(&relay.home).join(&image)).unwrap(),
        png()
    );

    // The owner reads it back; the notify token may not read anything.
    let r = main
        .get("/webchat/notifications/img-1/image")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap().as_ref(), png().as_slice());
    let scoped = with_token(&relay, &notify_token);
    for path in [
        "/webchat/notifications/img-1/image",
        "/webchat/notifications",
    ] {
        let r = scoped.get(path).send().await.unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let r = Api {
        token: None,
        ..relay.client()
    }
    .get("/webchat/notifications/img-1/image")
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 401);

    // Two alerts share the file: it stays until the last one leaves.
    let (s, v) = post(&main, "/webchat/notifications/img-1/dismiss", json!({})).await;
    assert_eq!(s, 200, "{v}");
    assert!(
        find(&main, "img-1").await.is_none(),
        "dismissed: not listed"
    );
    assert_eq!(
        image_files(&relay.home),
        vec![image.clone()],
        "img-2 still uses it"
    );
    // An update without an image replaces the one with it.
    let (s, v) = post(
        &main,
        "/webchat/notify",
        json!({"id": "img-2", "title": "Disk", "body": "fine now"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(image_files(&relay.home).is_empty(), "no orphan left");
    let r = main
        .get("/webchat/notifications/img-2/image")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

fn token_id(home: &Path) -> String {
    let v: Value =
        serde_json::from_slice(&std::fs::read(home.join("tokens.json")).unwrap()).unwrap();
    let tokens = v
        .get("tokens")
        .and_then(Value::as_array)
        .or_else(|| v.as_array())
        .unwrap();
    tokens[0]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn images_no_alert_uses_go_at_start_and_kept_ones_stay() {
    let mut relay = Relay::start();
    let main = relay.client();
    let (s, v) = post(
        &main,
        "/webchat/notify",
        json!({"title": "kept", "image": {"mimeType": "image/png", "data": PNG_B64}}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let kept = image_files(&relay.home);
    assert_eq!(kept.len(), 1);
    relay.stop();
    // What a crash between a removal and its collection would leave.
    let stray = format!("{}.png", "a".repeat(64));
    std::fs::write(images_dir(&relay.home).join(&stray), png()).unwrap();
    std::fs::write(
        images_dir(&relay.home).join(format!(".{stray}.99999.tmp")),
        b"half",
    )
    .unwrap();
    relay.restart();
    assert_eq!(image_files(&relay.home), kept);
}

#[tokio::test]
async fn bad_images_get_clear_errors_and_nothing_is_stored() {
    let relay = Relay::start();
    let main = relay.client();
    let tmp = tempfile::tempdir().unwrap();
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut big = png();
    big.resize(512 * 1024 + 1, 0);
    for (image, status, says) in [
        (
            json!({"mimeType": "image/png", "data": b64(&big)}),
            413,
            "512 KiB",
        ),
        (
            json!({"mimeType": "image/png", "data": b64(b"hello, not a png")}),
            400,
            "not a png",
        ),
        (
            json!({"mimeType": "text/plain", "data": b64(b"hello")}),
            415,
            "PNG, JPEG, GIF, WebP",
        ),
        (
            json!({"mimeType": "image/png", "data": "%%%"}),
            400,
            "base64",
        ),
        (json!({"mimeType": "image/png"}), 400, "invalid image"),
        (
            json!({"mimeType": "image/png", "data": "", "x": 1}),
            400,
            "invalid image",
        ),
        (json!("chart.png"), 400, "invalid image"),
    ] {
        let (s, v) = post(
            &main,
            "/webchat/notify",
            json!({"title": "t", "image": image}),
        )
        .await;
        assert_eq!(s, status, "{image}: {v}");
        let err = v["error"].as_str().unwrap().to_lowercase();
        assert!(err.contains(&says.to_lowercase()), "{image}: {err}");
    }
    assert!(list(&main).await.is_empty(), "no alert was posted");
    assert!(image_files(&relay.home).is_empty());

    // The CLI names the file and the rule before anything is sent.
    let huge = tmp.path().join("huge.png");
    std::fs::write(&huge, &big).unwrap();
    let notes = tmp.path().join("notes.txt");
    std::fs::write(&notes, "not an image").unwrap();
    for (file, says) in [
        (&huge, "512 KiB"),
        (&notes, "is not a PNG, JPEG, GIF or WebP"),
        (&tmp.path().join("missing.png"), "cannot read --image"),
    ] {
        let out = cli(
            &relay.home,
            &["notify", "--title", "t", "--image", file.to_str().unwrap()],
            &[],
        )
        .await;
        assert_eq!(out.status.code(), Some(1), "{}", file.display());
        let err = text(&out.stderr);
        assert!(
            err.contains(says) && err.contains(file.to_str().unwrap()),
            "{err}"
        );
    }
    assert!(list(&main).await.is_empty());
}

// ---------------------------------------------------------------- read state

#[tokio::test]
async fn read_state_lives_in_the_relay_and_reaches_every_stream() {
    let relay = Relay::start();
    let main = relay.client();
    for id in ["a", "b", "c"] {
        let (s, _) = post(&main, "/webchat/notify", json!({"id": id, "title": id})).await;
        assert_eq!(s, 200);
    }
    let before = find(&main, "a").await.unwrap();
    assert_eq!(before.get("read"), None, "unread by default");
    let r = main
        .get("/webchat/events?session=main&notifySince=0")
        .send()
        .await
        .unwrap();
    let mut stream = SseReader::new(r);
    let (s, v) = post(
        &main,
        "/webchat/notifications/read",
        json!({"ids": ["a", "nope"]}),
    )
    .await;
    assert_eq!((s, v["marked"].as_u64()), (200, Some(1)), "{v}");
    // Live: the stream delivers the read version (same id, new seq).
    let read_a = next_notification(&mut stream, |n| n["id"] == "a" && n["read"] == true).await;
    assert!(read_a["seq"].as_u64() > before["seq"].as_u64());
    assert_eq!(
        read_a["timestamp"], before["timestamp"],
        "same alert, same time"
    );
    let (s, v) = post(&main, "/webchat/notifications/read", json!({"all": true})).await;
    assert_eq!((s, v["marked"].as_u64()), (200, Some(2)), "{v}");
    assert!(list(&main).await.iter().all(|n| n["read"] == true));
    // An update by its poster is news again.
    post(
        &main,
        "/webchat/notify",
        json!({"id": "b", "title": "b again"}),
    )
    .await;
    assert_eq!(find(&main, "b").await.unwrap().get("read"), None);
    // Dismissal: gone from the list, announced to the streams.
    let (s, _) = post(&main, "/webchat/notifications/c/dismiss", json!({})).await;
    assert_eq!(s, 200);
    next_notification(&mut stream, |n| n["id"] == "c" && n["dismissed"] == true).await;
    assert!(find(&main, "c").await.is_none());
    let (s, v) = post(&main, "/webchat/notifications/c/dismiss", json!({})).await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = post(&main, "/webchat/notifications/read", json!({"id": "a"})).await;
    assert_eq!(s, 400, "unknown field: {v}");
}

async fn next_notification(stream: &mut SseReader, pred: impl Fn(&Value) -> bool) -> Value {
    let wait = async {
        loop {
            let (kind, v) = stream.next().await.expect("stream open");
            let _ = kind;
            if v["type"] == "notification" {
                let n = v["notification"].clone();
                if pred(&n) {
                    return n;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("the notification arrives")
}

// ---------------------------------------------------------------- checks

fn with_checks(toml: &str) -> Relay {
    Relay::start_with(RelayOptions::default().config(toml))
}

async fn run_check(api: &Api, name: &str) -> (u16, Value) {
    post(api, &format!("/webchat/checks/{name}/run"), json!({})).await
}

/// The alert of check `name`, as listed.
async fn check_alert(api: &Api, name: &str) -> Option<Value> {
    find(api, &format!("check:{name}")).await
}

#[tokio::test]
async fn a_failing_check_raises_one_alert_that_a_success_resolves_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let flag = tmp.path().join("fixed");
    let relay = with_checks(&format!(
        "[[checks]]\nname = \"disk\"\nshell = \"if [ -e {} ]; then echo all fine; else echo 'disk / is 97% full'; exit 3; fi\"\n\
         every = \"1h\"\npriority = 5\n",
        flag.display()
    ));
    let main = relay.client();
    // Run now from the CLI: it prints the run and exits 1 for a failure.
    let out = cli(&relay.home, &["check", "run", "disk"], &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("exit 3"),
        "{}",
        text(&out.stdout)
    );
    let failing = check_alert(&main, "disk").await.expect("alert raised");
    assert!(
        failing["title"]
            .as_str()
            .unwrap()
            .contains("disk failing (exit 3)")
    );
    assert!(failing["body"].as_str().unwrap().contains("97% full"));
    assert_eq!(failing["priority"], 5);
    assert_eq!(failing["source"], "check:disk");
    assert_eq!(failing["check"]["exitCode"], 3);
    assert_eq!(failing["check"]["state"], "failing");
    let (_, status) = main.get_json("/webchat/status").await;
    assert_eq!(
        status["checks"],
        json!({"ok": 0, "failing": 1, "running": 0})
    );

    // Fixed; run now from the API: the same alert, resolved, new seq.
    std::fs::write(&flag, "").unwrap();
    let (s, v) = run_check(&main, "disk").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["run"]["exitCode"], 0);
    let resolved = check_alert(&main, "disk").await.unwrap();
    assert_eq!(resolved["id"], failing["id"]);
    assert!(resolved["seq"].as_u64() > failing["seq"].as_u64());
    assert_eq!(resolved["check"]["state"], "resolved");
    assert!(resolved["title"].as_str().unwrap().contains("resolved"));
    let all = list(&main).await;
    assert_eq!(
        all.iter().filter(|n| n["tags"] == json!(["check"])).count(),
        1,
        "one alert for the incident: {all:?}"
    );
    // Another pass raises nothing new.
    run_check(&main, "disk").await;
    assert_eq!(
        check_alert(&main, "disk").await.unwrap()["seq"],
        resolved["seq"]
    );
    let (_, status) = main.get_json("/webchat/status").await;
    assert_eq!(
        status["checks"],
        json!({"ok": 1, "failing": 0, "running": 0})
    );

    // List, from the API and the CLI.
    let (s, v) = main.get_json("/webchat/checks").await;
    assert_eq!(s, 200);
    let c = &v["checks"][0];
    assert_eq!(
        (c["name"].as_str(), c["status"].as_str()),
        (Some("disk"), Some("ok"))
    );
    assert_eq!(c["schedule"], "every 1h");
    assert!(c["nextRun"].is_string(), "{c}");
    let out = cli(&relay.home, &["check", "list"], &[]).await;
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("disk") && text(&out.stdout).contains("every 1h"));
}

fn processes_matching(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(cmd);
            }
        }
    }
    found
}

#[tokio::test]
async fn a_hanging_check_is_killed_at_its_timeout_with_its_whole_group() {
    let relay = with_checks(
        "[[checks]]\nname = \"hang\"\ncommand = [\"sh\", \"-c\", \"sleep 7731 & echo started; sleep 7732\"]\n\
         every = \"1h\"\ntimeout = \"1s\"\n",
    );
    let main = relay.client();
    let (s, v) = run_check(&main, "hang").await;
    assert_eq!(s, 200, "{v}");
    let run = &v["run"];
    assert_eq!(run["timedOut"], true, "{run}");
    assert_eq!(run["exitCode"], Value::Null);
    assert!(run["output"].as_str().unwrap().contains("started"), "{run}");
    assert!(
        run["output"].as_str().unwrap().contains("killed after 1 s"),
        "{run}"
    );
    for n in ["sleep 7731", "sleep 7732"] {
        assert_eq!(
            processes_matching(n),
            Vec::<String>::new(),
            "{n} left behind"
        );
    }
    let alert = check_alert(&main, "hang").await.unwrap();
    assert!(
        alert["title"]
            .as_str()
            .unwrap()
            .contains("timed out after 1s"),
        "{alert}"
    );
}

#[tokio::test]
async fn a_relay_stopped_mid_run_leaves_no_check_process_behind() {
    let mut relay = with_checks(
        "[[checks]]\nname = \"long\"\ncommand = [\"sh\", \"-c\", \"sleep 7741 & sleep 7742\"]\n\
         every = \"1s\"\ntimeout = \"1h\"\n",
    );
    let main = relay.client();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = main.get_json("/webchat/checks/long").await;
        if v["check"]["running"] == true && !processes_matching("sleep 7741").is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never ran: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(relay.stop(), Some(0));
    for n in ["sleep 7741", "sleep 7742"] {
        assert_eq!(
            processes_matching(n),
            Vec::<String>::new(),
            "{n} outlived the relay"
        );
    }
}

#[tokio::test]
async fn overlapping_schedules_never_overlap_runs_and_history_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    // Every second, each run taking 1.5 s: every other slot finds it running.
    let mut relay = with_checks(&format!(
        "[[checks]]\nname = \"slow\"\nshell = \"echo start >> {log}; sleep 1.5; echo end >> {log}\"\n\
         every = \"1s\"\nalert = \"always\"\n",
        log = log.display()
    ));
    let main = relay.client();
    let r = main
        .get("/webchat/events?notifySince=0")
        .send()
        .await
        .unwrap();
    let mut stream = SseReader::new(r);
    let mut seen = 0;
    let mut manual_refused = false;
    while seen < 3 {
        next_notification(&mut stream, |n| n["id"] == "check:slow").await;
        seen += 1;
        if !manual_refused {
            // Right after a run ends the next has not begun; poll until a
            // run is in progress, then ask for another.
            loop {
                let (_, v) = main.get_json("/webchat/checks/slow").await;
                if v["check"]["running"] == true {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let (s, v) = run_check(&main, "slow").await;
            assert_eq!((s, v["code"].as_str()), (409, Some("check_running")), "{v}");
            manual_refused = true;
        }
    }
    let lines = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    for pair in lines.chunks(2) {
        assert!(
            pair[0] == "start" && pair.get(1).is_none_or(|l| *l == "end"),
            "{lines:?}"
        );
    }
    let (_, before) = main.get_json("/webchat/checks/slow").await;
    let runs = before["runs"].as_array().unwrap().clone();
    assert!(runs.len() >= 3, "{before}");
    for w in runs.windows(2) {
        assert!(
            w[0]["endedAt"].as_str() <= w[1]["startedAt"].as_str(),
            "{runs:?}"
        );
    }
    relay.stop();
    let kept = std::fs::read_to_string(relay.home.join("checks/slow.jsonl")).unwrap();
    relay.restart();
    let (_, after) = relay.client().get_json("/webchat/checks/slow").await;
    let after_runs = after["runs"].as_array().unwrap();
    assert!(after_runs.len() >= runs.len());
    assert_eq!(
        &after_runs[..runs.len()],
        &runs[..],
        "the same runs after a restart"
    );
    assert_eq!(
        kept.lines().count(),
        after_runs.len().max(kept.lines().count())
    );
}

#[tokio::test]
async fn a_check_attaches_an_image_through_loopchat_alert_image() {
    let relay = with_checks(&format!(
        "[[checks]]\nname = \"chart\"\nshell = \"echo {PNG_B64} | base64 -d > \\\"$LOOPCHAT_ALERT_IMAGE\\\"; echo drawn; exit 1\"\n\
         every = \"1h\"\n"
    ));
    let main = relay.client();
    let (s, v) = run_check(&main, "chart").await;
    assert_eq!(s, 200, "{v}");
    let alert = check_alert(&main, "chart").await.unwrap();
    let image = alert["image"].as_str().expect("image attached");
    assert_eq!(image_files(&relay.home), vec![image.to_owned()]);
    let r = main
        .get("/webchat/notifications/check:chart/image")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), png().as_slice());
    let scratch: Vec<_> = std::fs::read_dir(relay.home.join("checks/runs"))
        .unwrap()
        .collect();
    assert!(scratch.is_empty(), "the run's image file is removed");
}

#[tokio::test]
async fn unknown_checks_and_bad_config_get_clear_errors() {
    let relay = with_checks("[[checks]]\nname = \"ok\"\ncommand = [\"true\"]\nevery = \"1h\"\n");
    let main = relay.client();
    let (s, v) = run_check(&main, "nope").await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")), "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("no check named \"nope\"")
    );
    let (s, _) = main.get_json("/webchat/checks/nope").await;
    assert_eq!(s, 404);
    // Not even UTF-8: still the protocol's JSON, not axum's plain text.
    for path in [
        "/webchat/checks/%FF",
        "/webchat/notifications/%FF",
        "/webchat/notifications/%FF/image",
    ] {
        let (s, v) = main.get_json(path).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (404, Some("not_found")),
            "{path}: {v}"
        );
    }
    let out = cli(&relay.home, &["check", "run", "nope"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("no check named"),
        "{}",
        text(&out.stderr)
    );
    // A notify-only token can neither list nor run checks.
    let t = create_notify_token(&relay.home, "n").await;
    let scoped = with_token(&relay, &t);
    let r = scoped.post("/webchat/checks/ok/run").send().await.unwrap();
    assert_eq!(r.status(), 403);
    // Nor post as a check.
    let (s, v) = post(
        &scoped,
        "/webchat/notify",
        json!({"id": "check:ok", "title": "fake"}),
    )
    .await;
    assert_eq!(s, 403, "{v}");

    // A bad cron expression: the relay refuses to start and names the line.
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(
        home.join("config.toml"),
        "[[checks]]\nname = \"a\"\ncommand = [\"true\"]\ncron = \"61 * * * *\"\n",
    )
    .unwrap();
    let err = match Relay::spawn(&home, &[], &[]) {
        Ok(_) => panic!("the relay started with a bad cron expression"),
        Err(e) => e,
    };
    assert!(
        err.contains("line 4") && err.contains("not a cron expression"),
        "{err}"
    );
}

// ---------------------------------------------------------------- ask

#[tokio::test]
async fn ask_alert_starts_a_turn_carrying_the_alert_and_links_it_back() {
    let relay = with_checks(
        "[[checks]]\nname = \"disk\"\nshell = \"echo 'sda1 is 97% full'; exit 2\"\nevery = \"1h\"\n",
    );
    let main = relay.client();
    run_check(&main, "disk").await;
    let out = cli(&relay.home, &["ask-alert", "check:disk"], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let session = text(&out.stdout).trim().to_owned();
    assert!(session.starts_with("alert-"), "{session}");
    // The turn may be queued, running or done: from a snapshot of the
    // session, its events after the snapshot (or from the running turn's
    // start) show the rest, so waiting for its end cannot miss it.
    let info: Value = main
        .get(&format!("/webchat/info?session={session}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let answered = info["initialMessages"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["role"] == "assistant"));
    if !answered {
        let since = match info["activeRun"]["startSeq"].as_u64() {
            Some(start) => start - 1,
            None => info["lastSeq"].as_u64().expect("lastSeq"),
        };
        let r = main
            .get(&format!("/webchat/events?session={session}&since={since}"))
            .send()
            .await
            .unwrap();
        SseReader::new(r).until("run.end").await;
    }
    let messages = loopchat_tests::all_messages(&main, &session).await;
    let first = messages.first().expect("a turn was started");
    assert_eq!(first["role"], "user");
    let said = first.to_string();
    for part in [
        "sda1 is 97% full",
        "disk failing (exit 2)",
        "exit code 2",
        "check:disk",
    ] {
        assert!(said.contains(part), "{part}: {said}");
    }
    let alert = check_alert(&main, "disk").await.unwrap();
    assert_eq!(alert["investigatedIn"], session.as_str());
    // A chosen session; an unknown alert.
    let (s, v) = post(
        &main,
        "/webchat/notifications/check:disk/ask",
        json!({"session": "ops"}),
    )
    .await;
    assert_eq!((s, v["session"].as_str()), (200, Some("ops")), "{v}");
    let (s, _) = post(&main, "/webchat/notifications/nope/ask", json!({})).await;
    assert_eq!(s, 404);
    let (s, _) = post(
        &main,
        "/webchat/notifications/check:disk/ask",
        json!({"session": "a/b"}),
    )
    .await;
    assert_eq!(s, 400);
}

// ---------------------------------------------------------------- heartbeats

/// An SSE client that stops reading (its kernel still acknowledges, then
/// its window closes): with `TCP_USER_TIMEOUT` the relay's kernel gives up
/// on it and the stream is counted out. Without it the connection would sit
/// in zero-window probing for the kernel's ~15 minutes.
#[tokio::test]
async fn an_sse_client_that_stops_reading_is_dropped_and_counted_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let relay = Relay::start_with(
        RelayOptions::default()
            .env("LOOPCHAT_TCP_USER_TIMEOUT_SECS", "2")
            // The turns below are large; the relay must not refuse them.
            .config("body_limit = 4194304\n"),
    );
    let main = relay.client();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket
        .connect(format!("127.0.0.1:{}", relay.port).parse().unwrap())
        .await
        .unwrap();
    let req = format!(
        "GET /webchat/events?session=flood HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
         Authorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        relay.port, relay.token
    );
    stalled.write_all(req.as_bytes()).await.unwrap();
    let mut head = [0u8; 512];
    let n = stalled.read(&mut head).await.unwrap();
    assert!(
        text(&head[..n]).starts_with("HTTP/1.1 200"),
        "{}",
        text(&head[..n])
    );
    let sse = |s: &Value| s["connections"]["byKind"]["sse"].as_u64().unwrap();
    let (_, s) = main.get_json("/webchat/status").await;
    assert_eq!(sse(&s), 1, "{s}");
    // Fill the client's window and the relay's send buffer with replies.
    let big = "word ".repeat(600_000);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, s) = main.get_json("/webchat/status").await;
        if sse(&s) == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still counted: {s}");
        let (code, v) = main.rpc(json!({"text": big, "session": "flood"})).await;
        assert_eq!(code, 200, "{v}");
    }
    drop(stalled);
}
