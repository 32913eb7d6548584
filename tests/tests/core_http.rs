//! Issue 2: the relay's HTTP rules, against the real binary on a real port.

use std::os::unix::fs::PermissionsExt;

use loopchat_tests::{Api, Relay, RelayOptions, session_keys};
use serde_json::{Value, json};

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn token_rules_and_fragment_entry() {
    let relay = Relay::start();
    let anon = Api {
        token: None,
        ..relay.client()
    };
    // Open without a token: health and the static UI.
    let (s, v) = anon.get_json("/healthz").await;
    assert_eq!((s, v["ok"].as_bool()), (200, Some(true)));
    assert_eq!(anon.get("/webchat/").send().await.unwrap().status(), 200);

    // Everything else needs it.
    for path in [
        "/webchat/info",
        "/webchat/sessions",
        "/webchat/history",
        "/webchat/events?session=main",
    ] {
        let (s, v) = anon.get_json(path).await;
        assert_eq!((s, code(&v)), (401, "unauthorized"), "{path}");
        assert_eq!(v["ok"], false);
    }
    let wrong = Api {
        token: Some("x".repeat(43)),
        ..relay.client()
    };
    let (s, v) = wrong.rpc(json!({"text":"hi"})).await;
    assert_eq!((s, code(&v)), (401, "unauthorized"));

    // The legacy ?token= link: a 302 that moves the token into the fragment
    // (which no browser sends to any server), and no cookie.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = no_redirect
        .get(relay.url(&format!("/webchat/?token={}&session=work", relay.token)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(
        r.headers()["location"],
        format!("/webchat/?session=work#token={}", relay.token).as_str()
    );
    assert!(r.headers().get("set-cookie").is_none(), "no cookie is set");
    assert_eq!(r.headers()["cache-control"], "no-store");

    // The cookie of earlier versions is no credential, anywhere: a browser
    // would send it to every other server on 127.0.0.1.
    let cookie = format!("loopchat_token={}", relay.token);
    for path in [
        "/webchat/info",
        "/webchat/sessions",
        "/webchat/events?session=main",
    ] {
        let r = no_redirect
            .get(relay.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with only the cookie");
    }
    let r = no_redirect
        .post(relay.url("/webchat/rpc"))
        .header("cookie", &cookie)
        .json(&json!({"text": "by cookie", "session": "cookie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "rpc with only the cookie");

    // A wrong token: redirected to the clean URL, nothing in the fragment.
    let r = no_redirect
        .get(relay.url("/webchat/?token=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/webchat/");
    assert!(r.headers().get("set-cookie").is_none());

    // The token never reaches the logs, even from the query string.
    assert!(
        !relay.logs().contains(&relay.token),
        "token leaked into logs"
    );
}

/// A browser cannot set `Authorization` on a WebSocket: the token goes in
/// the subprotocol list, and only `loopchat` comes back.
#[tokio::test]
async fn websocket_takes_the_token_as_a_subprotocol() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let relay = Relay::start();
    let request = |protocols: Option<String>| {
        let mut req = format!("ws://127.0.0.1:{}/webchat/socket?session=ws", relay.port)
            .into_client_request()
            .unwrap();
        if let Some(p) = protocols {
            req.headers_mut()
                .insert("sec-websocket-protocol", p.parse().unwrap());
        }
        req
    };
    let (mut ws, answer) = tokio_tungstenite::connect_async(request(Some(format!(
        "loopchat, bearer.{}",
        relay.token
    ))))
    .await
    .expect("the subprotocol token opens the socket");
    assert_eq!(answer.status(), 101);
    assert_eq!(answer.headers()["sec-websocket-protocol"], "loopchat");
    for (name, value) in answer.headers() {
        assert!(
            !value
                .as_bytes()
                .windows(relay.token.len())
                .any(|w| w == relay.token.as_bytes()),
            "the handshake answer carries the token in {name}"
        );
    }
    relay
        .client()
        .rpc(json!({"text": "over ws", "session": "ws"}))
        .await;
    loop {
        let m = ws.next().await.expect("open").expect("frame");
        let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        if v["type"] == "run.end" {
            break;
        }
    }

    // Without it, or with a wrong one, or with the cookie of earlier
    // versions: 401.
    let mut cookie = request(Some("loopchat".into()));
    cookie.headers_mut().insert(
        "cookie",
        format!("loopchat_token={}", relay.token).parse().unwrap(),
    );
    for (what, req) in [
        ("no token", request(None)),
        ("only loopchat", request(Some("loopchat".into()))),
        (
            "a wrong token",
            request(Some(format!("loopchat, bearer.{}", "x".repeat(43)))),
        ),
        ("the cookie", cookie),
    ] {
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status(), 401, "{what}")
            }
            other => panic!(
                "{what}: expected a 401, got {:?}",
                other.map(|(_, r)| r.status())
            ),
        }
    }
    // The subprotocol is read on the upgrade only: elsewhere it is no token.
    let r = reqwest::Client::new()
        .get(relay.url("/webchat/info"))
        .header(
            "sec-websocket-protocol",
            format!("loopchat, bearer.{}", relay.token),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn host_and_origin_checks() {
    let relay = Relay::start_with(RelayOptions::default().env("LOOPCHAT_TEST", "1"));
    let api = relay.client();
    let status = |host: &'static str, origin: Option<&'static str>| {
        let api = api.clone();
        async move {
            let mut r = api.get("/webchat/info").header("host", host);
            if let Some(o) = origin {
                r = r.header("origin", o);
            }
            let r = r.send().await.unwrap();
            let s = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (s, code(&v).to_owned())
        }
    };
    // Loopback names on ANY port (a tunnel's local port differs).
    for ok in [
        "localhost:1",
        "127.0.0.1:65000",
        "127.3.2.1",
        "[::1]:8080",
        "localhost",
    ] {
        assert_eq!(status(ok, None).await.0, 200, "{ok}");
    }
    for bad in [
        "evil.com",
        "attacker.example:80",
        "localhost.evil.com",
        "10.0.0.1:80",
    ] {
        assert_eq!(
            status(bad, None).await,
            (403, "forbidden_host".into()),
            "{bad}"
        );
    }
    assert_eq!(
        status("localhost:9", Some("http://localhost:9")).await.0,
        200,
        "the relay's own page"
    );
    // Another local web server's page is same-site but not same-origin:
    // refused.
    for bad in [
        "http://evil.com",
        "null",
        "https://127.0.0.1.evil.com",
        "http://localhost:4444",
        "http://127.0.0.1:9",
    ] {
        assert_eq!(
            status("localhost:9", Some(bad)).await,
            (403, "forbidden_origin".into()),
            "{bad}"
        );
    }
    // The static page is guarded too (DNS rebinding reads it otherwise).
    let r = api
        .http
        .get(relay.url("/webchat/"))
        .header("host", "evil.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn allowed_hosts_from_config() {
    let relay =
        Relay::start_with(RelayOptions::default().config("allowed_hosts = [\"box.lan\"]\n"));
    let r = relay
        .client()
        .get("/webchat/info")
        .header("host", "box.lan:7000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn bodies_json_and_keys() {
    let relay = Relay::start();
    let api = relay.client();
    // 1 MiB limit, JSON error.
    let big = json!({"text": "x".repeat(1024 * 1024 + 10)});
    let (s, v) = api.rpc(big).await;
    assert_eq!((s, code(&v)), (413, "payload_too_large"));
    // Malformed JSON and wrong types.
    for body in [
        "{",
        "[]",
        "{\"text\": 5}",
        "",
        "{\"text\":\"a\",\"bogus\":1}",
    ] {
        let r = api.post("/webchat/rpc").body(body).send().await.unwrap();
        let s = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert_eq!((s, code(&v)), (400, "bad_request"), "{body:?}");
        assert!(v["error"].as_str().unwrap().len() > 5);
    }
    // Empty text.
    let (s, v) = api.rpc(json!({"text": "   "})).await;
    assert_eq!((s, code(&v)), (400, "empty_text"));
    // Bad session keys, everywhere a key is taken.
    for key in ["", "a/b", "../etc", "x y", &"k".repeat(129), "ümlaut"] {
        let (s, v) = api.rpc(json!({"text": "hi", "session": key})).await;
        assert_eq!((s, code(&v)), (400, "invalid_session_key"), "rpc {key:?}");
        let q = format!("/webchat/info?session={}", urlencode(key));
        let (s, v) = api.get_json(&q).await;
        assert_eq!((s, code(&v)), (400, "invalid_session_key"), "info {key:?}");
        let q = format!("/webchat/history?session={}", urlencode(key));
        assert_eq!(api.get_json(&q).await.0, 400);
    }
    // Absurd paging values.
    for q in [
        "limit=0",
        "limit=-1",
        "limit=100000",
        "limit=abc",
        "before=nope",
    ] {
        let (s, _) = api
            .get_json(&format!("/webchat/history?session=main&{q}"))
            .await;
        assert!(
            s == 400 || (q.starts_with("before") && s == 200),
            "{q}: {s}"
        );
    }
    // Unknown endpoint and method.
    let (s, v) = api.get_json("/webchat/nope").await;
    assert_eq!((s, code(&v)), (404, "not_found"));
    let r = api
        .http
        .delete(relay.url("/webchat/rpc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn echo_turn_info_history_sessions() {
    let relay = Relay::start();
    let api = relay.client();
    let (s, v) = api
        .rpc(json!({"text": "hello **world**", "session": "s1"}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"]["content"], "echo: hello **world**");
    assert_eq!(v["payloads"][0]["text"], "echo: hello **world**");
    assert!(
        v["payloads"][0]["html"]
            .as_str()
            .unwrap()
            .contains("<strong>world</strong>")
    );
    let sid = v["sessionId"].as_str().unwrap().to_owned();

    let (_, info) = api.get_json("/webchat/info?session=s1").await;
    assert_eq!(info["sessionId"], sid.as_str());
    assert_eq!(info["token"], relay.token.as_str());
    assert_eq!(info["agent"]["backend"], "echo");
    let msgs = info["initialMessages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(msgs[1]["role"], "assistant");
    assert!(msgs[1]["html"].is_string());
    assert_eq!(info["hasMore"], false);

    // A missing key is a new, empty session — never another one.
    let (_, other) = api.get_json("/webchat/info?session=fresh").await;
    assert!(other["sessionId"].is_null());
    assert_eq!(other["initialMessages"].as_array().unwrap().len(), 0);
    let (_, v2) = api.rpc(json!({"text": "x", "session": "fresh"})).await;
    assert_ne!(v2["sessionId"], sid.as_str());

    let (_, list) = api.get_json("/webchat/sessions").await;
    let keys = session_keys(&list);
    assert_eq!(keys, vec!["fresh", "s1"], "newest first");
    assert_eq!(list["sessions"][0]["preview"], "echo: x");
}

#[tokio::test]
async fn history_pages_back_through_a_session() {
    let relay = Relay::start();
    let api = relay.client();
    for i in 0..30 {
        let (s, _) = api
            .rpc(json!({"text": format!("m{i}"), "session": "p"}))
            .await;
        assert_eq!(s, 200);
    }
    let (_, info) = api.get_json("/webchat/info?session=p&limit=7").await;
    assert_eq!(info["hasMore"], true);
    let mut all: Vec<Value> = info["initialMessages"].as_array().unwrap().clone();
    loop {
        let before = all[0]["id"].as_str().unwrap().to_owned();
        let (s, page) = api
            .get_json(&format!(
                "/webchat/history?session=p&before={before}&limit=7"
            ))
            .await;
        assert_eq!(s, 200);
        let mut msgs = page["messages"].as_array().unwrap().clone();
        msgs.extend(all);
        all = msgs;
        if page["hasMore"] == false {
            break;
        }
    }
    assert_eq!(all.len(), 60);
    for (i, pair) in all.chunks(2).enumerate() {
        assert_eq!(pair[0]["content"], format!("m{i}"));
        assert_eq!(pair[1]["content"], format!("echo: m{i}"));
    }
    let (s, v) = api
        .get_json("/webchat/history?session=p&before=no-such-id")
        .await;
    assert_eq!((s, code(&v)), (404, "not_found"));
}

#[tokio::test]
async fn idempotent_retries_make_one_turn() {
    let mut relay = Relay::start();
    let api = relay.client();
    let body = json!({"text": "once", "session": "idem", "id": "client-uuid-1"});
    let (a, b, c) = tokio::join!(
        api.rpc(body.clone()),
        api.rpc(body.clone()),
        api.rpc(body.clone())
    );
    for (s, v) in [&a, &b, &c] {
        assert_eq!(*s, 200, "{v}");
    }
    assert_eq!(a.1["runId"], b.1["runId"]);
    assert_eq!(a.1["message"]["id"], c.1["message"]["id"]);
    let (_, info) = api.get_json("/webchat/info?session=idem").await;
    assert_eq!(info["initialMessages"].as_array().unwrap().len(), 2);

    // After a restart the key is still known (it is in the transcript).
    relay.stop();
    relay.restart();
    let api = relay.client();
    let (s, again) = api.rpc(body).await;
    assert_eq!(s, 200);
    assert_eq!(again["message"]["id"], a.1["message"]["id"]);
    let (_, info) = api.get_json("/webchat/info?session=idem").await;
    assert_eq!(info["initialMessages"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn files_permissions_discovery_and_port_reuse() {
    let mut relay = Relay::start();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&relay.home), 0o700);
    assert_eq!(mode(&relay.home.join("relay.json")), 0o600);
    assert_eq!(mode(&relay.home.join("token")), 0o600);
    let d = loopchat_tests::read_discovery(&relay.home).unwrap();
    assert_eq!(d.version, 1);
    assert_eq!(d.pid as i32, relay.pid());
    assert_eq!(
        d.base_url,
        format!("http://127.0.0.1:{}/webchat/", relay.port)
    );
    assert!(d.store.ends_with("sessions/sessions.json"));
    assert_eq!(d.token.len(), 43);
    assert_eq!(
        relay.url_line,
        format!(
            "loopchat relay: http://127.0.0.1:{}/webchat/#token={}",
            relay.port, relay.token
        )
    );
    let (port, token) = (relay.port, relay.token.clone());

    assert_eq!(relay.stop(), Some(0), "clean exit on SIGTERM");
    assert!(
        !relay.home.join("relay.json").exists(),
        "discovery removed on shutdown"
    );
    relay.restart();
    assert_eq!(relay.port, port, "a restarted relay comes back on its port");
    assert_eq!(relay.token, token, "the token persists");
}

#[tokio::test]
async fn refuses_non_loopback_bind() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Relay::spawn(
        &tmp.path().join("h"),
        &[],
        &["--bind".into(), "0.0.0.0".into()],
    )
    .err()
    .expect("must refuse");
    assert!(err.contains("loopback"), "{err}");
}

/// The page as the relay serves it: one module script, made by the relay
/// from app.js and its imports, and every asset it names carries `?v=` of
/// the shell version, under which it is immutable. Another `?v=` changes
/// nothing (it is revalidated like any asset).
#[tokio::test]
async fn the_page_is_served_with_its_modules_bundled() {
    let relay = Relay::start();
    let http = reqwest::Client::builder().build().unwrap();
    let page = http
        .get(relay.url("/webchat/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = page
        .find("app.bundle.js?v=")
        .expect("the bundle's script tag")
        + 16;
    let tag = &page[start..start + 16];
    assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()), "{tag}");
    assert_eq!(page.matches("<script").count(), 2, "{page}");
    assert!(
        !page.contains("modulepreload") && !page.contains("src=\"app.js\""),
        "{page}"
    );
    for asset in ["boot.js", "style.css", "css/highlight.css"] {
        assert!(
            page.contains(&format!("=\"{asset}?v={tag}\"")),
            "{asset}: {page}"
        );
    }

    let r = http
        .get(relay.url(&format!("/webchat/app.bundle.js?v={tag}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let bundle = r.text().await.unwrap();
    for module in ["js/util.js", "js/api.js", "js/render.js", "app.js"] {
        assert!(bundle.contains(&format!("// --- {module}\n")), "{module}");
    }
    // every module is in the bundle, app.js last; none left to import
    assert!(bundle.rfind("// --- app.js").unwrap() > bundle.rfind("// --- js/api.js").unwrap());
    assert!(
        !bundle
            .lines()
            .any(|l| l.starts_with("import ") || l.starts_with("export "))
    );

    for query in ["", "?v=0000000000000000", "?v=x&y=1"] {
        let r = http
            .get(relay.url(&format!("/webchat/style.css{query}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{query}");
        assert_eq!(r.headers()["cache-control"], "no-cache", "{query}");
    }

    // the worker keeps the versioned URLs with the shell
    let sw = http
        .get(relay.url("/webchat/sw.js"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for f in ["app.bundle.js", "boot.js", "style.css", "css/highlight.css"] {
        assert!(
            sw.contains(&format!("\"{f}?v={tag}\"")),
            "{f} not in the worker's list"
        );
    }
}

#[tokio::test]
async fn assets_headers_etag_and_compression() {
    let relay = Relay::start();
    let http = reqwest::Client::builder().build().unwrap();
    let r = http.get(relay.url("/webchat/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(h["cache-control"], "no-store");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    let csp = h["content-security-policy"].to_str().unwrap();
    for part in [
        "default-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(part), "{csp}");
    }
    assert!(h.get("access-control-allow-origin").is_none());

    // Any other asset: ETag then 304.
    let asset = ["app.js", "style.css", "favicon.svg"]
        .into_iter()
        .find(|a| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../webchat-dist")
                .join(a)
                .exists()
        });
    if let Some(asset) = asset {
        let r = http
            .get(relay.url(&format!("/webchat/{asset}")))
            .send()
            .await
            .unwrap();
        let etag = r.headers()["etag"].to_str().unwrap().to_owned();
        let r = http
            .get(relay.url(&format!("/webchat/{asset}")))
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304);
        let r = http
            .get(relay.url(&format!("/webchat/{asset}")))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .unwrap();
        if r.content_length().unwrap_or(1000) > 100 {
            assert_eq!(
                r.headers()
                    .get("content-encoding")
                    .map(|v| v.to_str().unwrap()),
                Some("gzip")
            );
        }
    }
    // Traversal out of the embedded folder finds nothing.
    for p in [
        "/webchat/../Cargo.toml",
        "/webchat/%2e%2e/Cargo.toml",
        "/webchat/..%2fCargo.toml",
    ] {
        let r = http.get(relay.url(p)).send().await.unwrap();
        assert!(
            r.status() == 404 || r.status() == 400,
            "{p}: {}",
            r.status()
        );
    }
    // The root redirects to the UI.
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(relay.url("/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["location"], "/webchat/");
}

/// Issue 14: the installable app's files. The manifest has its own type; the
/// service worker is served with its version and file list filled in, is
/// revalidated like every other asset (so a new relay's worker is seen on the
/// next load), and its version changes with the bundle (here: the salt).
#[tokio::test]
async fn manifest_and_service_worker_are_served() {
    let relay = Relay::start();
    let http = reqwest::Client::builder().build().unwrap();

    let r = http
        .get(relay.url("/webchat/manifest.webmanifest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert!(
        h["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/manifest+json"),
        "{:?}",
        h["content-type"]
    );
    assert_eq!(h["cache-control"], "no-cache");
    assert!(h.get("etag").is_some());
    let manifest: Value = r.json().await.unwrap();
    assert_eq!(manifest["start_url"], "/webchat/");
    assert_eq!(manifest["scope"], "/webchat/");
    assert_eq!(manifest["display"], "standalone");
    let icons = manifest["icons"].as_array().unwrap();
    for size in ["192x192", "512x512"] {
        let icon = icons
            .iter()
            .find(|i| i["sizes"] == size && i["type"] == "image/png")
            .unwrap_or_else(|| panic!("no {size} PNG icon"));
        let src = icon["src"].as_str().unwrap();
        let r = http
            .get(relay.url(&format!("/webchat/{src}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{src}");
        assert_eq!(r.headers()["content-type"], "image/png");
    }

    let sw = |relay: &Relay| {
        let http = http.clone();
        let url = relay.url("/webchat/sw.js");
        async move {
            let r = http.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let h = r.headers().clone();
            (h, r.text().await.unwrap())
        }
    };
    let (h, body) = sw(&relay).await;
    assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
    assert_eq!(h["cache-control"], "no-cache");
    assert!(h.get("etag").is_some());
    assert!(
        !body.contains("__LOOPCHAT_SHELL_"),
        "placeholders left in sw.js"
    );
    let version = |body: &str| {
        let start = body.find("const VERSION = \"").expect("VERSION") + 17;
        body[start..start + body[start..].find('"').unwrap()].to_owned()
    };
    let v1 = version(&body);
    assert!(
        v1.starts_with(&format!("{}+", env!("CARGO_PKG_VERSION"))),
        "{v1}"
    );
    let start = body.find("const SHELL = ").unwrap() + 14;
    let end = start + body[start..].find(";\n").unwrap();
    let files: Vec<String> = serde_json::from_str(&body[start..end]).unwrap();
    for f in [
        "./",
        "app.js",
        "boot.js",
        "style.css",
        "js/api.js",
        "js/pwa.js",
        "manifest.webmanifest",
        "icons/icon-192.png",
    ] {
        assert!(files.iter().any(|x| x == f), "{f} not in {files:?}");
    }
    // the worker is not itself in its cache, and no API path is
    for f in [
        "sw.js",
        "info",
        "events",
        "sessions",
        "notifications",
        "rpc",
    ] {
        assert!(!files.iter().any(|x| x == f), "{f} in {files:?}");
    }
    // same bundle, same version; another bundle (salted): another version
    let again = Relay::start();
    assert_eq!(version(&sw(&again).await.1), v1);
    let salted = Relay::start_with(RelayOptions::default().env("LOOPCHAT_ASSET_SALT", "other"));
    let (h2, body2) = sw(&salted).await;
    assert_ne!(version(&body2), v1);
    assert_ne!(h2["etag"], h["etag"]);
}
