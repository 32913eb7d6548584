//! Issue 7: faults, against the real binary. The relay is killed with SIGKILL
//! under load, the disk under its store fills up, and its model backend
//! misbehaves. Every acknowledged turn must survive, and every failure must
//! come back as a clear answer in the protocol's shape.
//!
//! - `kill9_under_load_loses_nothing_acknowledged`: 20 rounds. Concurrent
//!   clients send plain, idempotent and streaming turns while SSE watchers
//!   follow the sessions. The relay is killed when a round has seen N
//!   acknowledgements; N differs from round to round.
//! - `full_disk_answers_507_and_recovers`: the sessions directory is a
//!   256 KiB tmpfs, which a filler file fills up.
//! - `a_failed_fsync_is_never_acknowledged_later`: the sessions directory is
//!   a FUSE file system whose fdatasync fails on demand.
//! - `backend_faults_without_a_model_server`: the openai backend against a
//!   peer that resets, stalls, sends garbage or fails.
//!
//! Nothing here waits a fixed time to synchronise. The tests wait on
//! acknowledgements, events and process exits, each with an upper bound.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use loopchat_proto::sse::{Event as SseEvent, SseStream};
use loopchat_tests::{
    Api, Relay, RelayOptions, all_messages, assert_store_readable, relay_wide, scan_store,
    session_keys,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

// ---------------------------------------------------------------------------
// Shared helpers

type EventStream = Pin<Box<dyn Stream<Item = Result<SseEvent, String>> + Send>>;

/// The SSE events of one response. Unlike the harness's reader, this one
/// treats a broken stream as the end of the stream, because a kill -9 can
/// break a stream at any byte. The events themselves are always whole: the
/// parser drops an event that was cut off.
struct Events(EventStream);

impl Events {
    fn new(r: reqwest::Response) -> Self {
        Self(Box::pin(
            SseStream::with_ids(Box::pin(r.bytes_stream())).map(|r| r.map_err(|e| e.to_string())),
        ))
    }

    /// The next (SSE id, JSON), or `None` once the stream has ended or broken.
    async fn next(&mut self) -> Option<(String, Value)> {
        let item = tokio::time::timeout(Duration::from_secs(30), self.0.next())
            .await
            .expect("the relay sent no SSE event and did not close the stream within 30 s")?;
        let e = item.ok()?;
        let v = serde_json::from_str(&e.data)
            .unwrap_or_else(|err| panic!("SSE data is not JSON ({err}): {}", e.data));
        Some((e.id, v))
    }
}

/// Where an event subscription starts.
#[derive(Clone, Copy, Debug)]
enum Start {
    Since(u64),
    LastEventId(u64),
}

async fn subscribe(api: &Api, session: &str, from: Start) -> reqwest::Result<reqwest::Response> {
    let r = match from {
        Start::Since(s) => api.get(&format!("/webchat/events?session={session}&since={s}")),
        Start::LastEventId(id) => api
            .get(&format!("/webchat/events?session={session}"))
            .header("last-event-id", id.to_string()),
    };
    let r = r.send().await?;
    assert_eq!(r.status(), 200, "subscribing to {session}");
    Ok(r)
}

fn rpc_body(session: &str, text: &str, key: Option<&str>, stream: bool) -> Value {
    let mut body = json!({"text": text, "session": session});
    if let Some(k) = key {
        body["id"] = k.into();
    }
    if stream {
        body["stream"] = true.into();
    }
    body
}

fn assert_no_panic(relay: &Relay) {
    let logs = relay.logs();
    assert!(!logs.contains("panicked"), "the relay panicked:\n{logs}");
}

// ---------------------------------------------------------------------------
// 1. kill -9 under load

const ROUNDS: usize = 20;
const SESSIONS: [&str; 4] = ["crash-a", "crash-b", "crash-c", "crash-d"];

/// How one client sends its turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Non-streaming rpc with an idempotency key.
    Keyed,
    /// Streaming rpc with an idempotency key.
    StreamKeyed,
    /// Non-streaming rpc without a key.
    Plain,
    /// Streaming rpc without a key.
    StreamPlain,
}

/// (kind, slot). A client's session is `SESSIONS[(slot + round) % 4]`, so
/// clients move between sessions from round to round. Each session has at
/// most one keyed client, and so at most one unanswered keyed turn at a kill.
/// (A keyed turn run again after a restart answers its own user message even
/// when others came after it: `store_durability.rs` tests that on its own.)
const CLIENTS: [(Kind, usize); 6] = [
    (Kind::Keyed, 0),
    (Kind::StreamKeyed, 1),
    (Kind::Plain, 2),
    (Kind::StreamPlain, 3),
    (Kind::Plain, 0),
    (Kind::Plain, 1),
];

#[derive(Clone, Debug)]
struct Turn {
    kind: Kind,
    session: String,
    text: String,
    key: Option<String>,
}

#[derive(Clone, Debug)]
struct Acked {
    turn: Turn,
    /// The id of the reply that the acknowledgement carried.
    reply_id: String,
}

#[derive(Default)]
struct Ledger {
    acked: Vec<Acked>,
    /// Keyed turns whose answer never came because the relay died. They are
    /// retried after the restart.
    unanswered: Vec<Turn>,
}

/// Sends one turn. Returns the id of the acknowledged reply, or `None` when
/// the relay died first (the connection failed or broke). Anything else is a
/// failure: an error status, a wrong reply, a hang.
async fn send_turn(api: &Api, t: &Turn) -> Option<String> {
    let stream = matches!(t.kind, Kind::StreamKeyed | Kind::StreamPlain);
    let body = rpc_body(&t.session, &t.text, t.key.as_deref(), stream);
    let expected = format!("echo: {}", t.text);
    if !stream {
        let r = match api
            .post("/webchat/rpc")
            .json(&body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_timeout() => panic!("rpc {t:?} hung: {e}"),
            Err(_) => return None,
        };
        let status = r.status().as_u16();
        let v: Value = match r.json().await {
            Ok(v) => v,
            Err(e) if e.is_timeout() => panic!("rpc {t:?} hung: {e}"),
            Err(_) => return None,
        };
        assert_eq!(status, 200, "{t:?}: {v}");
        assert_eq!(v["message"]["content"], expected.as_str(), "{v}");
        assert_eq!(v["message"]["role"], "assistant", "{v}");
        return Some(v["message"]["id"].as_str().unwrap().to_owned());
    }
    let r = api.post("/webchat/rpc").json(&body).send().await.ok()?;
    assert_eq!(r.status(), 200, "{t:?}");
    let mut events = Events::new(r);
    let mut last_seq = 0;
    let mut streamed = String::new();
    while let Some((id, v)) = events.next().await {
        match v["type"].as_str().unwrap() {
            "done" => {
                assert_eq!(v["ok"], true, "{v}");
                assert_eq!(v["message"]["content"], expected.as_str(), "{v}");
                if !streamed.is_empty() {
                    assert_eq!(streamed, expected, "the deltas add up to the reply");
                }
                return Some(v["message"]["id"].as_str().unwrap().to_owned());
            }
            "error" => panic!("streamed turn {t:?} failed: {v}"),
            _ => {
                let seq = v["seq"].as_u64().unwrap();
                assert!(seq > last_seq, "seqs grow within a streaming rpc: {v}");
                assert_eq!(id, seq.to_string(), "the SSE id is the seq");
                last_seq = seq;
                if v["type"] == "delta" {
                    streamed.push_str(v["text"].as_str().unwrap());
                }
            }
        }
    }
    None
}

/// One client of one round: turns until the relay dies.
async fn client(
    api: Api,
    c: usize,
    round: usize,
    ledger: Arc<Mutex<Ledger>>,
    acks: Arc<watch::Sender<usize>>,
) {
    let (kind, slot) = CLIENTS[c];
    let session = SESSIONS[(slot + round) % SESSIONS.len()].to_owned();
    for i in 0.. {
        let keyed = matches!(kind, Kind::Keyed | Kind::StreamKeyed);
        let turn = Turn {
            kind,
            session: session.clone(),
            text: format!("r{round} c{c} n{i} alpha beta"),
            key: keyed.then(|| format!("key-r{round}-c{c}-n{i}")),
        };
        let Some(reply_id) = send_turn(&api, &turn).await else {
            if keyed {
                ledger.lock().unwrap().unanswered.push(turn);
            }
            return;
        };
        ledger.lock().unwrap().acked.push(Acked {
            turn: turn.clone(),
            reply_id: reply_id.clone(),
        });
        acks.send_modify(|n| *n += 1);
        // The same key again, to the same relay process: the same answer,
        // and no second turn (which `verify_store` would find).
        if keyed && i % 4 == 1 {
            match send_turn(&api, &turn).await {
                Some(again) => assert_eq!(again, reply_id, "a retry got another reply"),
                None => return,
            }
        }
    }
}

/// Follows one session's events until the stream ends. When `drop_after` is
/// set, it disconnects after that many events and resumes with
/// `Last-Event-ID`, as a browser does. Returns every event it saw, in order.
async fn watcher(
    api: Api,
    session: String,
    first: reqwest::Response,
    drop_after: Option<usize>,
) -> Vec<(String, Value)> {
    let mut seen: Vec<(String, Value)> = Vec::new();
    let mut events = Events::new(first);
    let mut reconnected = false;
    loop {
        let session_events = seen.iter().filter(|(_, v)| !relay_wide(v)).count();
        if !reconnected && drop_after.is_some_and(|n| session_events >= n) {
            reconnected = true;
            // As a browser does: the last `id:`, which notifications
            // (their own seq, no `id:` line) do not move.
            let last = seen
                .iter()
                .rev()
                .find(|(_, v)| !relay_wide(v))
                .and_then(|(_, v)| v["seq"].as_u64())
                .expect("a session event");
            drop(events);
            match subscribe(&api, &session, Start::LastEventId(last)).await {
                Ok(r) => events = Events::new(r),
                Err(_) => return seen, // the relay is gone
            }
        }
        match events.next().await {
            Some(e) => seen.push(e),
            None => return seen,
        }
    }
}

/// Checks one watcher's events of one round:
/// - A watcher that resumed from an earlier relay run (`resumed`, with
///   `Last-Event-ID` or `since`) starts with `reset`. Its seq lies above
///   everything seen before, so seqs keep growing across the restart.
/// - After that, seqs are contiguous (no gap, no duplicate), including across
///   the watcher's own reconnect within the round.
/// - No message is published twice, in this round or any earlier one.
///
/// Notifications (the relay's "reply ready" alerts) share the stream; they
/// have their own seqs and are not checked here. Returns the position to
/// resume from.
fn check_watcher(
    session: &str,
    round: usize,
    from: Start,
    resumed: bool,
    events: &[(String, Value)],
    published: &mut HashSet<String>,
) -> u64 {
    let session_events: Vec<&(String, Value)> =
        events.iter().filter(|(_, v)| !relay_wide(v)).collect();
    let all = || {
        session_events
            .iter()
            .map(|(_, v)| v.to_string())
            .collect::<Vec<_>>()
    };
    let mut position = match from {
        Start::Since(s) | Start::LastEventId(s) => s,
    };
    let mut next = position + 1;
    for (k, (id, v)) in session_events.iter().enumerate() {
        let t = v["type"].as_str().unwrap();
        let seq = v["seq"].as_u64().unwrap();
        assert_eq!(
            id,
            &seq.to_string(),
            "{session}: the SSE id is the seq: {v}"
        );
        if k == 0 && resumed {
            assert_eq!(
                t, "reset",
                "{session} round {round}: a position from the previous relay run ({from:?}) \
                 must get a reset"
            );
            assert!(
                seq > position,
                "{session} round {round}: seqs went backwards across the restart \
                 ({position} -> {seq})"
            );
        } else {
            assert_ne!(
                t,
                "reset",
                "{session} round {round}: reset within one run: {:?}",
                all()
            );
            assert_eq!(
                seq,
                next,
                "{session} round {round}: gap or duplicate in the event stream: {:?}",
                all()
            );
        }
        if t == "message" {
            let mid = v["message"]["id"].as_str().unwrap().to_owned();
            assert!(
                published.insert(mid.clone()),
                "{session} round {round}: message {mid} published twice"
            );
        }
        next = seq + 1;
        position = seq;
    }
    if resumed {
        assert!(
            !session_events.is_empty(),
            "{session} round {round}: the resumed stream got no reset"
        );
    }
    position
}

/// Reads every session back through the API and checks the store against
/// the ledger:
/// - every acknowledged turn's user message and its acknowledged reply are
///   stored, the reply after the question and with the right text;
/// - no message id, user text or reply appears twice. Texts are unique by
///   construction, so a repeat is a duplicated turn, for example an
///   idempotency key that was run twice.
async fn verify_store(api: &Api, acked: &[Acked]) -> usize {
    let mut total = 0;
    for s in SESSIONS {
        let msgs = all_messages(api, s).await;
        total += msgs.len();
        let mut ids = HashSet::new();
        let mut user_at: HashMap<String, usize> = HashMap::new();
        let mut replies = HashSet::new();
        let mut by_id: HashMap<String, (usize, String)> = HashMap::new();
        for (i, m) in msgs.iter().enumerate() {
            let id = m["id"].as_str().unwrap().to_owned();
            assert!(ids.insert(id.clone()), "{s}: message {id} is stored twice");
            let content = m["content"].as_str().unwrap().to_owned();
            match m["role"].as_str().unwrap() {
                "user" => assert!(
                    user_at.insert(content.clone(), i).is_none(),
                    "{s}: user message {content:?} is stored twice"
                ),
                "assistant" => {
                    assert!(
                        replies.insert(content.clone()),
                        "{s}: reply {content:?} is stored twice"
                    );
                    assert!(m.get("stopReason").is_none(), "{s}: {m}");
                    let asked = content.strip_prefix("echo: ").unwrap();
                    assert!(
                        user_at.contains_key(asked),
                        "{s}: reply {content:?} without its question before it"
                    );
                }
                other => panic!("{s}: unexpected role {other}"),
            }
            by_id.insert(id, (i, content));
        }
        for a in acked.iter().filter(|a| a.turn.session == s) {
            let t = &a.turn;
            let u = user_at
                .get(&t.text)
                .unwrap_or_else(|| panic!("acknowledged, but the user message is lost: {t:?}"));
            let (r, content) = by_id.get(&a.reply_id).unwrap_or_else(|| {
                panic!("acknowledged, but the reply {} is lost: {t:?}", a.reply_id)
            });
            assert_eq!(content, &format!("echo: {}", t.text));
            assert!(r > u, "the reply is stored before its question: {t:?}");
        }
    }
    total
}

/// kill -9 during concurrent plain, idempotent and streaming turns, while
/// watchers follow every session, for 20 rounds on one home. After each kill
/// and restart: everything acknowledged is there, the store reads, retried
/// keys made no second turn, and the event streams resume correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_under_load_loses_nothing_acknowledged() {
    let started = Instant::now();
    // A 1 ms delay per word makes each turn stream a few deltas, so the
    // kills land in every phase of a turn.
    let mut relay = Relay::start_with(RelayOptions::default().env("LOOPCHAT_ECHO_DELAY_MS", "1"));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut positions: HashMap<&str, u64> = HashMap::new();
    let mut published = HashSet::new();
    let mut torn_tails = 0;
    let mut retried = 0;
    let mut messages = 0;
    for round in 0..=ROUNDS {
        let api = relay.client();

        // Watchers first, so that they see every event of this relay run.
        // After a restart they resume from their last position, as a
        // browser does.
        let mut watchers = Vec::new();
        for (n, s) in SESSIONS.into_iter().enumerate() {
            let from = match positions.get(s) {
                // Browsers resume with Last-Event-ID, scripts with since.
                Some(p) if round % 2 == 0 => Start::LastEventId(*p),
                Some(p) => Start::Since(*p),
                None => {
                    let (_, info) = api.get_json(&format!("/webchat/info?session={s}")).await;
                    Start::Since(info["lastSeq"].as_u64().unwrap())
                }
            };
            let first = subscribe(&api, s, from).await.expect("subscribe");
            let drop_after = (n == round % SESSIONS.len()).then_some(2 + round % 5);
            let task = tokio::spawn(watcher(api.clone(), s.to_owned(), first, drop_after));
            watchers.push((s, from, task));
        }

        if round > 0 {
            // Retry what the killed relay never answered, with the same
            // keys. Each retry must give exactly one turn.
            let unanswered = std::mem::take(&mut ledger.lock().unwrap().unanswered);
            for t in unanswered {
                let reply_id = send_turn(&api, &t)
                    .await
                    .unwrap_or_else(|| panic!("the restarted relay did not answer {t:?}"));
                ledger
                    .lock()
                    .unwrap()
                    .acked
                    .push(Acked { turn: t, reply_id });
                retried += 1;
            }
            // Retries of answered keys get the stored reply.
            let answered: Vec<Acked> = ledger
                .lock()
                .unwrap()
                .acked
                .iter()
                .filter(|a| a.turn.key.is_some())
                .rev()
                .take(3)
                .cloned()
                .collect();
            for a in answered {
                let again = send_turn(&api, &a.turn).await.expect("retry answered");
                assert_eq!(
                    again, a.reply_id,
                    "a retry after the restart got another reply"
                );
            }
            let acked = ledger.lock().unwrap().acked.clone();
            messages = verify_store(&api, &acked).await;
            // Every transcript has been opened (and repaired) by now.
            assert_store_readable(&relay.home);
        }

        // Load, then a kill after `target` acknowledgements in this round.
        // The last round only checks the watchers' view of the retries.
        let target = 8 + (round * 37 + 11) % 73;
        let mut load = None;
        if round < ROUNDS {
            let acks = Arc::new(watch::channel(0usize).0);
            let mut count = acks.subscribe();
            let clients: Vec<_> = (0..CLIENTS.len())
                .map(|c| tokio::spawn(client(api.clone(), c, round, ledger.clone(), acks.clone())))
                .collect();
            drop(acks);
            // `wait_for` answers with a read guard on the count, and clients
            // block (a std lock) while it lives: keep only whether it came.
            let reached =
                tokio::time::timeout(Duration::from_secs(60), count.wait_for(|n| *n >= target))
                    .await
                    .map(|r| r.is_ok());
            load = Some((clients, reached));
        }
        relay.kill9();
        if let Some((clients, reached)) = load {
            for c in clients {
                tokio::time::timeout(Duration::from_secs(30), c)
                    .await
                    .expect("a client did not notice the relay's death")
                    .expect("client failed");
            }
            let reached = reached.expect("no progress: acknowledgements stopped coming");
            assert!(
                reached,
                "every client stopped before {target} acknowledgements"
            );
        }
        for (s, from, task) in watchers {
            let events = tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("a watcher did not notice the relay's death")
                .expect("watcher failed");
            let p = check_watcher(s, round, from, round > 0, &events, &mut published);
            positions.insert(s, p);
        }
        // As the kill left it, before a relay repaired anything.
        torn_tails += scan_store(&relay.home).torn;
        assert_no_panic(&relay);
        if round < ROUNDS {
            relay.restart();
        }
    }
    let acked = ledger.lock().unwrap().acked.clone();
    eprintln!(
        "{ROUNDS} kills: {} acknowledged turns ({retried} retried after a restart), \
         {messages} messages stored, {} message events checked, {torn_tails} torn tails, {:.1?}",
        acked.len(),
        published.len(),
        started.elapsed()
    );
    assert!(acked.len() >= ROUNDS * 8);
}

// ---------------------------------------------------------------------------
// 2. A full disk

/// A 256 KiB tmpfs on a directory, unmounted when dropped (also when the
/// test panics).
///
/// The test tries `mount` first (root or CAP_SYS_ADMIN). Where mounting is
/// not allowed, it starts a holder process in a new user and mount namespace
/// (`unshare -Urm`) that mounts the tmpfs and keeps it alive across relay
/// restarts. The relay then runs in that namespace (`nsenter`), and the test
/// reaches the mount through `/proc/<holder>/root`. Set
/// `LOOPCHAT_TEST_TMPFS=unshare` to use the fallback even as root. When
/// neither way works, the test fails and says why.
struct SmallFs {
    dir: PathBuf,
    holder: Option<Child>,
}

const SMALL_FS: &str = "size=256k,mode=0700";

impl SmallFs {
    fn mount(dir: &Path) -> SmallFs {
        std::fs::create_dir_all(dir).unwrap();
        let forced = std::env::var("LOOPCHAT_TEST_TMPFS").is_ok_and(|v| v == "unshare");
        let mount_error = if forced {
            "skipped: LOOPCHAT_TEST_TMPFS=unshare".to_owned()
        } else {
            match mount_tmpfs(dir) {
                Ok(()) => {
                    return SmallFs {
                        dir: dir.to_owned(),
                        holder: None,
                    };
                }
                Err(e) => e.to_string(),
            }
        };
        let holder = Command::new("unshare")
            .args(["-Urm", "sh", "-c"])
            .arg(format!(
                r#"mount -t tmpfs -o {SMALL_FS} tmpfs "$1" && echo mounted && exec sleep 100000"#
            ))
            .arg("sh")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut holder = match holder {
            Ok(h) => h,
            Err(e) => panic!(
                "cannot put the store on a small tmpfs: mount: {mount_error}; unshare: {e}. \
                 This test needs root/CAP_SYS_ADMIN or unprivileged user namespaces."
            ),
        };
        let stdout = holder.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(10)).unwrap_or_default();
        if line.trim() != "mounted" {
            let _ = holder.kill();
            let _ = holder.wait();
            let mut err = String::new();
            if let Some(mut e) = holder.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!(
                "cannot put the store on a small tmpfs: mount: {mount_error}; \
                 unshare -Urm + mount: {}. This test needs root/CAP_SYS_ADMIN or \
                 unprivileged user namespaces.",
                err.trim()
            );
        }
        eprintln!(
            "tmpfs: mount failed ({mount_error}); using a user+mount namespace (holder pid {})",
            holder.id()
        );
        SmallFs {
            dir: dir.to_owned(),
            holder: Some(holder),
        }
    }

    /// Where this process reaches `path`, a path as the relay sees it.
    fn outside(&self, path: &Path) -> PathBuf {
        match &self.holder {
            None => path.to_owned(),
            Some(h) => Path::new(&format!("/proc/{}/root", h.id()))
                .join(path.strip_prefix("/").expect("absolute path")),
        }
    }

    /// The command prefix that runs the relay where the mount is visible.
    fn wrapper(&self) -> Vec<String> {
        match &self.holder {
            None => Vec::new(),
            Some(h) => [
                "nsenter",
                "--target",
                &h.id().to_string(),
                "--user",
                "--mount",
                "--preserve-credentials",
                "--",
            ]
            .map(str::to_owned)
            .to_vec(),
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        match &mut self.holder {
            // The namespace, and the tmpfs with it, goes when its last
            // process does (the relay is dropped before this).
            Some(h) => {
                let _ = h.kill();
                let _ = h.wait();
            }
            None => {
                detach_mount(&self.dir);
            }
        }
    }
}

/// Unmounts `dir` lazily (MNT_DETACH), so that a relay still holding a
/// file cannot keep the mount around; false if that was not allowed.
fn detach_mount(dir: &Path) -> bool {
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) == 0 }
}

fn mount_tmpfs(dir: &Path) -> std::io::Result<()> {
    let target = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    let options = std::ffi::CString::new(SMALL_FS).unwrap();
    // SAFETY: valid NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            0,
            options.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Fills the file system with `path`, then frees `room` bytes of it.
fn fill_up_leaving(path: &Path, room: u64) {
    fill_up(path);
    free(path, room);
}

/// Gives `bytes` of the filler `path` back to the file system.
fn free(path: &Path, bytes: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len - bytes).unwrap();
}

/// Appends to `path` until the file system is full.
fn fill_up(path: &Path) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let block = vec![b'#'; 4096];
    loop {
        match f.write(&block) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
}

/// A text longer than a 4 KiB page. Its line can never fit in the free end
/// of a transcript's last page, so while the disk is full it cannot be
/// stored.
fn big(tag: &str) -> String {
    format!("{tag} {}", "lorem ".repeat(850))
}

/// A blocking gate for the command agent: a reply to a text containing
/// `HOLD` waits until the test opens the gate.
struct Gate {
    fifo: PathBuf,
}

impl Gate {
    fn new(dir: &Path) -> Gate {
        let fifo = dir.join("gate");
        let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        Gate { fifo }
    }

    /// The agent: replies `echo: <text>`, after the gate opens for a text
    /// containing HOLD.
    fn agent_argv(&self) -> String {
        let script =
            r#"t=$(cat); case "$t" in *HOLD*) read go < "$0";; esac; printf 'echo: %s' "$t""#;
        serde_json::to_string(&["sh", "-c", script, self.fifo.to_str().unwrap()]).unwrap()
    }

    /// Lets one waiting reply through. The returned handle keeps the pipe
    /// open until the reply has been read; drop it afterwards.
    fn open(&self) -> std::fs::File {
        // O_RDWR on a FIFO never blocks (Linux), and the line waits in the
        // pipe until the agent opens its end and reads it.
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.fifo)
            .unwrap();
        f.write_all(b"go\n").unwrap();
        f
    }
}

async fn rpc_timed(api: &Api, body: Value) -> (u16, Value) {
    let r = api
        .post("/webchat/rpc")
        .json(&body)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap_or_else(|e| panic!("rpc failed or hung: {e}"));
    let status = r.status().as_u16();
    (status, r.json().await.expect("rpc answer"))
}

fn assert_store_full(status: u16, v: &Value) {
    assert_eq!(
        (status, v["code"].as_str(), &v["ok"]),
        (507, Some("store_full"), &json!(false)),
        "{v}"
    );
    assert!(v["error"].as_str().unwrap().contains("full"), "{v}");
}

/// The user texts of a session, oldest first, and every reply.
async fn texts(api: &Api, session: &str) -> (Vec<String>, Vec<Value>) {
    let msgs = all_messages(api, session).await;
    let users = msgs
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap().to_owned())
        .collect();
    let replies = msgs
        .iter()
        .filter(|m| m["role"] == "assistant")
        .cloned()
        .collect();
    (users, replies)
}

/// Records an acknowledged echo turn as (session, text, reply id).
fn ack(acked: &mut Vec<(String, String, String)>, session: &str, text: &str, v: &Value) {
    assert_eq!(v["message"]["content"], format!("echo: {text}"), "{v}");
    acked.push((
        session.into(),
        text.into(),
        v["message"]["id"].as_str().unwrap().into(),
    ));
}

/// Every acknowledged (session, text, reply id) is stored exactly once.
async fn all_there(api: &Api, acked: &[(String, String, String)]) {
    let sessions: HashSet<&str> = acked.iter().map(|a| a.0.as_str()).collect();
    for s in sessions {
        let msgs = all_messages(api, s).await;
        for (_, text, reply_id) in acked.iter().filter(|a| a.0 == s) {
            let n = msgs
                .iter()
                .filter(|m| m["role"] == "user" && m["content"] == text.as_str())
                .count();
            assert_eq!(n, 1, "{s}: user message {:.40}… stored {n} times", text);
            let reply = msgs
                .iter()
                .find(|m| m["id"] == reply_id.as_str())
                .unwrap_or_else(|| panic!("{s}: acknowledged reply {reply_id} is lost"));
            assert_eq!(reply["content"], format!("echo: {text}"));
        }
    }
}

fn index_on_disk(fs: &SmallFs, home: &Path) -> Value {
    let path = fs.outside(&home.join("sessions/sessions.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The sessions directory on a 256 KiB tmpfs. A filler file fills it.
/// Turns then get 507 `store_full`, whether the user message or the reply
/// cannot be written, and so does a new session, whose index write fails.
/// Nothing is torn, reads keep working, and once the filler is gone the
/// same relay process serves turns again: retried keys run once, and a new
/// session is durable before it is acknowledged. Everything survives kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_answers_507_and_recovers() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let fs = SmallFs::mount(&home.join("sessions"));
    let gate = Gate::new(tmp.path());
    let mut relay = Relay::start_with(
        RelayOptions {
            home: Some(home.clone()),
            wrapper: fs.wrapper(),
            ..Default::default()
        }
        .env("LOOPCHAT_AGENT", "command")
        .env("LOOPCHAT_AGENT_COMMAND", &gate.agent_argv()),
    );
    let api = relay.client();
    let view = fs.outside(&home);
    let filler = view.join("sessions/filler");
    let mut acked: Vec<(String, String, String)> = Vec::new();

    // Two sessions with some turns while there is room.
    for (s, text) in [("full", "one"), ("full", "two"), ("other", "three")] {
        let (status, v) = rpc_timed(&api, rpc_body(s, text, None, false)).await;
        assert_eq!(status, 200, "{v}");
        ack(&mut acked, s, text, &v);
    }

    // Leave a little room (four pages), then send until the store is full.
    fill_up_leaving(&filler, 16 * 1024);
    let mut first_507 = None;
    for i in 0..20 {
        let text = big(&format!("filling {i}"));
        let (status, v) = rpc_timed(&api, rpc_body("full", &text, None, false)).await;
        if status == 200 {
            ack(&mut acked, "full", &text, &v);
            continue;
        }
        assert_store_full(status, &v);
        first_507 = Some(i);
        break;
    }
    let first_507 = first_507.expect("20 turns of 10 KiB fit in 16 KiB: the disk never filled");
    assert!(first_507 >= 1, "the room left should hold one turn");
    assert_store_readable(&view);

    // Completely full from here on.
    fill_up(&filler);

    // The user message cannot be written: 507, and nothing stored.
    let ka = big("keyed A");
    let (status, v) = rpc_timed(&api, rpc_body("full", &ka, Some("key-a"), false)).await;
    assert_store_full(status, &v);
    // A streaming rpc ends with the same error as its last event.
    let r = api
        .post("/webchat/rpc")
        .json(&rpc_body("full", &big("streamed"), None, true))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut events = Events::new(r);
    let mut last = Value::Null;
    while let Some((_, v)) = events.next().await {
        last = v;
    }
    assert_eq!(
        (last["type"].as_str(), last["code"].as_str()),
        (Some("error"), Some("store_full")),
        "{last}"
    );
    let (users, _) = texts(&api, "full").await;
    assert!(
        !users
            .iter()
            .any(|u| u.starts_with("keyed A") || u.starts_with("streamed")),
        "a turn answered 507 left its user message"
    );

    // A new session: its index entry cannot be written. 507, and the
    // session does not exist, neither in memory nor on disk.
    for _ in 0..2 {
        let (status, v) = rpc_timed(&api, rpc_body("fresh", "hello fresh", None, false)).await;
        assert_store_full(status, &v);
    }
    let (_, sessions) = api.get_json("/webchat/sessions").await;
    let keys = session_keys(&sessions);
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    assert!(
        !keys.contains(&"fresh"),
        "a session whose creation failed is listed: {sessions}"
    );
    assert!(
        keys.contains(&"full") && keys.contains(&"other"),
        "{sessions}"
    );
    let (_, info) = api.get_json("/webchat/info?session=fresh").await;
    assert_eq!(info["sessionId"], Value::Null, "{info}");
    assert!(index_on_disk(&fs, &home).get("fresh").is_none());
    assert!(index_on_disk(&fs, &home).get("full").is_some());

    // Reads keep working while the disk is full.
    let (s, h) = api.get_json("/healthz").await;
    assert_eq!((s, &h["ok"]), (200, &json!(true)));
    let (s, info) = api.get_json("/webchat/info?session=full&limit=2").await;
    assert_eq!(s, 200, "{info}");
    let oldest = info["initialMessages"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, page) = api
        .get_json(&format!(
            "/webchat/history?session=full&before={oldest}&limit=1000"
        ))
        .await;
    assert_eq!(s, 200, "{page}");
    assert!(!page["messages"].as_array().unwrap().is_empty());
    all_there(&api, &acked).await;
    assert_store_readable(&view);

    // The reply cannot be written: free a little room, let the user message
    // in, fill the disk while the agent waits at the gate, then open it.
    free(&filler, 16 * 1024);
    let kb = big("keyed B HOLD");
    let mut watch = Events::new(
        subscribe(
            &api,
            "full",
            Start::LastEventId(info["lastSeq"].as_u64().unwrap()),
        )
        .await
        .unwrap(),
    );
    let turn = {
        let api = api.clone();
        let body = rpc_body("full", &kb, Some("key-b"), false);
        tokio::spawn(async move { rpc_timed(&api, body).await })
    };
    loop {
        let (_, v) = watch.next().await.expect("events");
        if v["type"] == "message" && v["message"]["content"] == kb.as_str() {
            break;
        }
    }
    fill_up(&filler);
    let open = gate.open();
    let (status, v) = turn.await.unwrap();
    drop(open);
    assert_store_full(status, &v);
    loop {
        let (_, v) = watch.next().await.expect("events");
        if v["type"] == "run.end" {
            assert_eq!(v["state"], "error", "{v}");
            break;
        }
        assert_ne!(v["type"], "message", "a reply was published: {v}");
    }
    let (users, replies) = texts(&api, "full").await;
    assert_eq!(users.last(), Some(&kb), "the user message was stored");
    assert!(
        !replies
            .iter()
            .any(|r| r["content"] == format!("echo: {kb}")),
        "a reply that could not be written is stored"
    );
    assert_store_readable(&view);

    // Room again: the same relay process serves turns. No restart.
    std::fs::remove_file(&filler).unwrap();

    // The new session first: durable in the index before it is acknowledged.
    let (status, v) = rpc_timed(&api, rpc_body("fresh", "hello fresh", None, false)).await;
    assert_eq!(status, 200, "{v}");
    ack(&mut acked, "fresh", "hello fresh", &v);
    assert_eq!(
        index_on_disk(&fs, &home)["fresh"]["sessionId"],
        v["sessionId"],
        "the new session was acknowledged before it was durable in sessions.json"
    );

    // The retried key whose reply failed runs once; its user message is not
    // stored a second time.
    let open = gate.open();
    let (status, v) = rpc_timed(&api, rpc_body("full", &kb, Some("key-b"), false)).await;
    drop(open);
    assert_eq!(status, 200, "a retry after 507 must run the turn: {v}");
    ack(&mut acked, "full", &kb, &v);
    // The retried key whose user message failed runs now.
    let (status, v) = rpc_timed(&api, rpc_body("full", &ka, Some("key-a"), false)).await;
    assert_eq!(status, 200, "a retry after 507 must run the turn: {v}");
    ack(&mut acked, "full", &ka, &v);
    let (status, v) = rpc_timed(&api, rpc_body("full", "room again", None, false)).await;
    assert_eq!(status, 200, "{v}");
    ack(&mut acked, "full", "room again", &v);
    all_there(&api, &acked).await;
    assert_store_readable(&view);

    // And all of it survives kill -9.
    relay.kill9();
    assert_no_panic(&relay);
    relay.restart();
    let api = relay.client();
    all_there(&api, &acked).await;
    let (users, _) = texts(&api, "full").await;
    assert_eq!(users.iter().filter(|u| **u == kb).count(), 1);
    assert_store_readable(&view);
    let (status, v) = rpc_timed(&api, rpc_body("fresh", "after restart", None, false)).await;
    assert_eq!(status, 200, "{v}");
    assert_no_panic(&relay);
    drop(relay);
    eprintln!("full disk: {:.1?}", started.elapsed());
}

/// Sets or clears the append-only attribute (`chattr ±a`), under which
/// writes still work and truncation fails: the one way to make the relay's
/// cut of a failed write's fragment fail on purpose.
fn append_only(path: &Path, on: bool) {
    let out = Command::new("chattr")
        .arg(if on { "+a" } else { "-a" })
        .arg(path)
        .output()
        .expect("chattr (e2fsprogs)");
    assert!(
        out.status.success(),
        "chattr on {}: {} (needs root: CAP_LINUX_IMMUTABLE)",
        path.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

/// A write that fails part-way leaves a fragment, which the relay cuts.
/// When even the cut fails, the fragment must still never join the next
/// line (the transcript is in append mode): the relay cuts it before it
/// appends again, and the turns after it are stored whole.
#[tokio::test]
async fn a_fragment_that_could_not_be_cut_never_joins_the_next_line() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let fs = SmallFs::mount(&home.join("sessions"));
    let mut relay = Relay::start_with(RelayOptions {
        home: Some(home.clone()),
        wrapper: fs.wrapper(),
        ..Default::default()
    });
    let api = relay.client();
    let view = fs.outside(&home);
    let (status, v) = rpc_timed(&api, rpc_body("torn", "one", None, false)).await;
    assert_eq!(status, 200, "{v}");
    let (_, info) = api.get_json("/webchat/info?session=torn").await;
    let transcript = view.join(format!(
        "sessions/{}.jsonl",
        info["sessionId"].as_str().unwrap()
    ));

    // One free page: a 16 KiB line is written in part, then ENOSPC.
    let filler = view.join("sessions/filler");
    fill_up_leaving(&filler, 4096);
    append_only(&transcript, true);
    let huge = big("huge").repeat(3);
    let (status, v) = rpc_timed(&api, rpc_body("torn", &huge, None, false)).await;
    append_only(&transcript, false);
    assert_store_full(status, &v);
    let bytes = std::fs::read(&transcript).unwrap();
    assert!(
        !bytes.ends_with(b"\n"),
        "the failed write should have left a fragment that could not be cut"
    );

    std::fs::remove_file(&filler).unwrap();
    for text in ["two", "three"] {
        let (status, v) = rpc_timed(&api, rpc_body("torn", text, None, false)).await;
        assert_eq!(status, 200, "{v}");
    }
    assert_store_readable(&view);
    let expected = [
        "one",
        "echo: one",
        "two",
        "echo: two",
        "three",
        "echo: three",
    ];
    let contents = |msgs: Vec<Value>| -> Vec<String> {
        msgs.iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(contents(all_messages(&api, "torn").await), expected);
    // What the relay served is what is on disk.
    relay.kill9();
    relay.restart();
    assert_eq!(
        contents(all_messages(&relay.client(), "torn").await),
        expected
    );
    assert_no_panic(&relay);
}

// ---------------------------------------------------------------------------
// 2b. A disk whose fdatasync fails

/// The sessions directory on `tests/support/failfs.py`, a pass-through FUSE
/// file system whose fsync fails with EIO while a switch file exists.
/// Unmounted (lazily, so a relay still holding a file cannot keep it) and
/// stopped when dropped.
struct FailFs {
    daemon: Child,
    mountpoint: PathBuf,
    switch: PathBuf,
}

impl FailFs {
    fn mount(mountpoint: &Path, scratch: &Path) -> FailFs {
        let backing = scratch.join("failfs-backing");
        std::fs::create_dir_all(&backing).unwrap();
        std::fs::create_dir_all(mountpoint).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/failfs.py");
        let switch = scratch.join("failfs-fail-fsync");
        // Debian's python3-fusepy is installed for the system interpreter.
        let mut daemon = Command::new("/usr/bin/python3")
            .arg(&script)
            .args([&backing, mountpoint, &switch])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start /usr/bin/python3 tests/support/failfs.py");
        let mut line = String::new();
        let _ = BufReader::new(daemon.stdout.take().unwrap()).read_line(&mut line);
        if line.trim() != "mounted" {
            let _ = daemon.kill();
            let mut why = String::new();
            let _ = std::io::Read::read_to_string(&mut daemon.stderr.take().unwrap(), &mut why);
            panic!(
                "cannot mount the failing-fsync FUSE file system: {why}\n\
                 It needs /dev/fuse, root (or fusermount) and python3-fusepy \
                 (scripts/install-test-deps.sh installs it)."
            );
        }
        FailFs {
            daemon,
            mountpoint: mountpoint.to_owned(),
            switch,
        }
    }

    fn fail_fsync(&self, failing: bool) {
        if failing {
            std::fs::write(&self.switch, b"").unwrap();
        } else {
            std::fs::remove_file(&self.switch).unwrap();
        }
    }
}

impl Drop for FailFs {
    fn drop(&mut self) {
        if !detach_mount(&self.mountpoint) {
            // Not root: libfuse mounted it through fusermount.
            let _ = Command::new("fusermount")
                .arg("-uz")
                .arg(&self.mountpoint)
                .status();
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// A real fdatasync failing (EIO from the file system, not an injected
/// error): the turn it covered answers 500, and is never acknowledged later,
/// although the next fdatasync succeeds. Linux would have dropped those
/// pages, so a retry with the same id is refused until a restart has read
/// the transcript from disk again; new turns work at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_is_never_acknowledged_later() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let fs = FailFs::mount(&home.join("sessions"), tmp.path());
    let mut relay = Relay::start_with(RelayOptions {
        home: Some(home.clone()),
        ..Default::default()
    });
    let api = relay.client();
    let (status, v) = rpc_timed(&api, rpc_body("main", "one", Some("k1"), false)).await;
    assert_eq!(status, 200, "{v}");

    fs.fail_fsync(true);
    let (status, v) = rpc_timed(&api, rpc_body("main", "two", Some("k2"), false)).await;
    assert_eq!((status, v["code"].as_str()), (500, Some("internal")), "{v}");
    assert_eq!(v["error"], "the session store could not be written", "{v}");
    fs.fail_fsync(false);

    // fdatasync works again, and would report success for the lines of k2;
    // the relay must not take that as k2 being on disk.
    let (status, v) = rpc_timed(&api, rpc_body("main", "two", Some("k2"), false)).await;
    assert_eq!((status, v["code"].as_str()), (500, Some("internal")), "{v}");
    // A turn written after the failure is flushed as usual.
    let (status, v) = rpc_timed(&api, rpc_body("main", "three", Some("k3"), false)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["message"]["content"], "echo: three");

    // After a restart the file is the truth: k2's user message is there (this
    // disk lost nothing), so the retry answers it, once.
    assert_eq!(relay.stop(), Some(0));
    relay.restart();
    let api = relay.client();
    let (status, v) = rpc_timed(&api, rpc_body("main", "two", Some("k2"), false)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["message"]["content"], "echo: two");
    let (users, replies) = texts(&api, "main").await;
    assert_eq!(users, ["one", "two", "three"]);
    assert_eq!(replies.len(), 3, "{replies:?}");
    assert_store_readable(&home);
    assert_no_panic(&relay);
}

// ---------------------------------------------------------------------------
// 3. A misbehaving model backend

/// How the peer misbehaves. The test's user text names the fault
/// (`fault:<name>`), and the peer finds it in the request body.
///
/// This peer is a mock on purpose: the fault under test IS the peer's
/// misbehaviour, and a real model server cannot be made to produce it.
/// `openai_backend.rs` runs the same kinds of faults against a real
/// llama.cpp server through a proxy, but only where that server is set up.
/// These run everywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// One content chunk, then (once the test saw it arrive) a TCP reset.
    /// Garbage and NotUtf8 also wait for the test before the bad data.
    Reset,
    /// A reset before any response.
    ResetAtOnce,
    /// One content chunk, then data that is not JSON.
    Garbage,
    /// One content chunk, then bytes that are not UTF-8.
    NotUtf8,
    /// One content chunk, then silence with the connection open.
    Stall,
    /// HTTP 500 with an OpenAI-style error body.
    Http500,
    /// A correct reply.
    Fine,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::Reset => "reset",
            Fault::ResetAtOnce => "reset-at-once",
            Fault::Garbage => "garbage",
            Fault::NotUtf8 => "not-utf8",
            Fault::Stall => "stall",
            Fault::Http500 => "http500",
            Fault::Fine => "fine",
        }
    }

    fn find(body: &str) -> Fault {
        [
            Fault::ResetAtOnce,
            Fault::Reset,
            Fault::Garbage,
            Fault::NotUtf8,
            Fault::Stall,
            Fault::Http500,
        ]
        .into_iter()
        .find(|f| body.contains(&format!("fault:{}.", f.name())))
        .unwrap_or(Fault::Fine)
    }
}

struct Peer {
    port: u16,
    /// The test lets the peer go on to the fault once it saw the partial
    /// reply.
    proceed: Arc<Notify>,
    /// Faults whose connection the relay closed (EOF while the peer waited).
    closed: watch::Receiver<Vec<Fault>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Peer {
    async fn start() -> Peer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let proceed = Arc::new(Notify::new());
        let (closed_tx, closed) = watch::channel(Vec::new());
        let closed_tx = Arc::new(closed_tx);
        let p = proceed.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(peer_connection(sock, p.clone(), closed_tx.clone()));
            }
        });
        Peer {
            port,
            proceed,
            closed,
            task,
        }
    }
}

fn chunk(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

fn content_event(text: &str, finish: bool) -> Vec<u8> {
    let finish = if finish { json!("stop") } else { Value::Null };
    let v = json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]});
    chunk(format!("data: {v}\n\n").as_bytes())
}

const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
    transfer-encoding: chunked\r\nconnection: close\r\n\r\n";

async fn peer_connection(
    mut sock: TcpStream,
    proceed: Arc<Notify>,
    closed: Arc<watch::Sender<Vec<Fault>>>,
) {
    // The request: head, then content-length bytes of body.
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match sock.read(&mut tmp).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
    let fault = Fault::find(&String::from_utf8_lossy(&buf[head_end..]));
    let reset = |sock: TcpStream| {
        // SO_LINGER 0: close() sends RST instead of FIN. (Deprecated
        // because a non-zero linger blocks in drop; zero does not.)
        #[allow(deprecated)]
        let _ = sock.set_linger(Some(Duration::ZERO));
        drop(sock);
    };
    let mut out = Vec::new();
    match fault {
        Fault::ResetAtOnce => return reset(sock),
        Fault::Http500 => {
            let body = r#"{"error":{"message":"the model exploded","type":"server_error"}}"#;
            out.extend_from_slice(
                format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
        Fault::Fine => {
            out.extend_from_slice(SSE_HEAD);
            out.extend(content_event("all ", false));
            out.extend(content_event("good", true));
            out.extend(chunk(b"data: [DONE]\n\n"));
            out.extend_from_slice(b"0\r\n\r\n");
        }
        _ => {
            out.extend_from_slice(SSE_HEAD);
            out.extend(content_event("partial ", false));
        }
    }
    if sock.write_all(&out).await.is_err() {
        return;
    }
    match fault {
        // The rest only once the relay has streamed the partial reply, so
        // that it cannot arrive in the same read as the fault.
        Fault::Reset => {
            proceed.notified().await;
            reset(sock);
        }
        Fault::Garbage | Fault::NotUtf8 => {
            proceed.notified().await;
            let bad = if fault == Fault::Garbage {
                chunk(b"data: {\"choices\": oops, not json\n\n")
            } else {
                chunk(b"data: \xff\xfe\xfd\n\n")
            };
            let _ = sock.write_all(&bad).await;
            let _ = sock.write_all(b"0\r\n\r\n").await;
            let _ = sock.shutdown().await;
        }
        Fault::Stall => {
            // Silence. The relay must give up and close the connection.
            let mut b = [0u8; 64];
            while let Ok(n) = sock.read(&mut b).await {
                if n == 0 {
                    break;
                }
            }
            closed.send_modify(|c| c.push(fault));
        }
        _ => {
            let _ = sock.shutdown().await;
        }
    }
}

/// A turn against the peer. Returns the rpc's answer and the session's
/// stored messages.
async fn faulty_turn(
    api: &Api,
    peer: &Peer,
    fault: Fault,
    status: u16,
    code: &str,
    needles: &[&str],
) -> Vec<Value> {
    let session = format!("peer-{}", fault.name());
    let text = format!("please fail: fault:{}.", fault.name());
    let (_, info) = api
        .get_json(&format!("/webchat/info?session={session}"))
        .await;
    let mut events = Events::new(
        subscribe(
            api,
            &session,
            Start::Since(info["lastSeq"].as_u64().unwrap()),
        )
        .await
        .unwrap(),
    );
    let turn = {
        let api = api.clone();
        let body = rpc_body(&session, &text, None, false);
        tokio::spawn(async move { rpc_timed(&api, body).await })
    };
    let mut end = Value::Null;
    while let Some((_, v)) = events.next().await {
        if v["type"] == "delta" && matches!(fault, Fault::Reset | Fault::Garbage | Fault::NotUtf8) {
            // The partial reply reached the relay: now the fault.
            peer.proceed.notify_one();
        }
        if v["type"] == "run.end" {
            end = v;
            break;
        }
    }
    let (s, v) = turn.await.unwrap();
    assert_eq!(
        (s, v["code"].as_str()),
        (status, Some(code)),
        "{fault:?}: {v}"
    );
    assert_eq!(v["ok"], false);
    let error = v["error"].as_str().unwrap();
    for n in needles {
        assert!(error.contains(n), "{fault:?}: {error:?} should say {n:?}");
    }
    assert_eq!(end["state"], "error", "{fault:?}: {end}");
    assert!(
        error.ends_with(end["error"].as_str().unwrap()),
        "{fault:?}: the run's error and the answer differ: {end} vs {v}"
    );
    let msgs = all_messages(api, &session).await;
    assert_eq!(
        msgs[0]["content"],
        text.as_str(),
        "the user message is kept"
    );
    msgs
}

/// The openai backend against a peer that resets the connection (before and
/// in the middle of a reply), sends data that is not JSON or not UTF-8,
/// stalls mid-reply, or answers HTTP 500. Each ends the run with a clear
/// error (502 `agent_error`, or 504 `agent_timeout` for the stall) that names
/// the backend URL, keeps the partial reply marked as an error, and leaves
/// the relay serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_faults_without_a_model_server() {
    let peer = Peer::start().await;
    let base = format!("http://127.0.0.1:{}/v1", peer.port);
    let relay = Relay::start_with(
        RelayOptions::default()
            .config("[agent.openai]\nidle_timeout_secs = 1\nconnect_timeout_secs = 1\n")
            .env("LOOPCHAT_AGENT", "openai")
            .env("LOOPCHAT_OPENAI_BASE_URL", &base)
            .env("LOOPCHAT_OPENAI_MODEL", "fault-peer"),
    );
    let api = relay.client();
    let url = format!("{base}/chat/completions");
    let partial_kept = |msgs: &[Value], fault: Fault| {
        assert_eq!(msgs.len(), 2, "{fault:?}: {msgs:?}");
        assert_eq!(msgs[1]["role"], "assistant");
        assert_eq!(msgs[1]["content"], "partial ", "{fault:?}");
        assert_eq!(msgs[1]["stopReason"], "error", "{fault:?}");
    };

    let msgs = faulty_turn(
        &api,
        &peer,
        Fault::Reset,
        502,
        "agent_error",
        &[&url, "mid-reply"],
    )
    .await;
    partial_kept(&msgs, Fault::Reset);

    let msgs = faulty_turn(&api, &peer, Fault::ResetAtOnce, 502, "agent_error", &[&url]).await;
    assert_eq!(
        msgs.len(),
        1,
        "nothing was generated, nothing but the question is stored"
    );

    let msgs = faulty_turn(
        &api,
        &peer,
        Fault::Garbage,
        502,
        "agent_error",
        &[&url, "not JSON", "oops"],
    )
    .await;
    partial_kept(&msgs, Fault::Garbage);

    let msgs = faulty_turn(
        &api,
        &peer,
        Fault::NotUtf8,
        502,
        "agent_error",
        &[&url, "UTF-8"],
    )
    .await;
    partial_kept(&msgs, Fault::NotUtf8);

    let mut closed = peer.closed.clone();
    let msgs = faulty_turn(
        &api,
        &peer,
        Fault::Stall,
        504,
        "agent_timeout",
        &[&url, "idle timeout"],
    )
    .await;
    partial_kept(&msgs, Fault::Stall);
    tokio::time::timeout(
        Duration::from_secs(10),
        closed.wait_for(|c| c.contains(&Fault::Stall)),
    )
    .await
    .expect("the relay kept the stalled connection open")
    .unwrap();

    let msgs = faulty_turn(
        &api,
        &peer,
        Fault::Http500,
        502,
        "agent_error",
        &[&url, "HTTP 500", "the model exploded"],
    )
    .await;
    assert_eq!(msgs.len(), 1);

    // The relay still serves, and a well-behaved answer works.
    let (s, v) = rpc_timed(&api, rpc_body("peer-fine", "hello", None, false)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["message"]["content"], "all good");
    let (s, h) = api.get_json("/healthz").await;
    assert_eq!((s, &h["ok"]), (200, &json!(true)));
    assert_store_readable(&relay.home);
    assert_no_panic(&relay);
}
