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

#[allow(dead_code)]
fn unused(_: RelayOptions) {}
