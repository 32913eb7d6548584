//! Soak load generator for a running relay.
//!
//! Many concurrent clients loop over a weighted mix of operations for a fixed
//! time — non-streaming turns, streamed turns, info, history pages, the
//! session list, notification posts and reads — while a few long-lived SSE
//! subscribers check that they see every event in order. Every non-2xx answer,
//! transport error, timeout or broken invariant counts as an error. The
//! relay's resident memory is sampled throughout, and the summary says whether
//! it stayed flat. Exit status: 0 when there were no errors and the memory was
//! flat, 1 otherwise, 2 for bad arguments or a relay that cannot be reached.
//!
//!   soak --home ~/.loopchat --clients 200 --duration 600s --json out.json
//!
//! `scripts/soak.sh` builds everything, starts a relay on a fresh home and
//! runs this; docs/benchmarks.md ("Soak") records a run.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt;
use loopchat_proto::sse::SseStream;
use loopchat_proto::{Discovery, Message, Role};
use serde_json::{Value, json};
use tokio::sync::watch;

// ------------------------------------------------------------------ args

#[derive(Parser, Debug, Clone)]
#[command(
    name = "soak",
    about = "Soak a running loopchat relay with many concurrent clients"
)]
struct Args {
    /// Relay home: relay.json gives the URL, the token and the pid (for RSS).
    #[arg(long)]
    home: Option<PathBuf>,
    /// Relay URL (`http://127.0.0.1:PORT/webchat/` or just the origin);
    /// overrides the one from --home.
    #[arg(long)]
    url: Option<String>,
    /// Main token; overrides the one from --home.
    #[arg(long)]
    token: Option<String>,
    /// Relay pid whose RSS is sampled; default: from relay.json.
    #[arg(long)]
    pid: Option<u32>,
    /// Concurrent clients, each looping over the mix.
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// How long the clients run (`600s`, `10m`, `15s`, `1500ms`).
    #[arg(long, default_value = "600s", value_parser = parse_duration)]
    duration: Duration,
    /// Sessions the turns are spread over (`soak-0` … `soak-N-1`).
    #[arg(long, default_value_t = 40)]
    sessions: usize,
    /// Long-lived SSE subscribers: one per session for the first ones, plus
    /// one without a session (notifications only).
    #[arg(long, default_value_t = 6)]
    subscribers: usize,
    /// Notify-only tokens to create (needs --home and the `loopchat`
    /// binary); posts are paced below each token's rate limit.
    #[arg(long, default_value_t = 16)]
    notify_tokens: usize,
    /// The `loopchat` binary (for `token create`); default: next to this one.
    #[arg(long)]
    loopchat: Option<PathBuf>,
    /// Weights of the operations.
    #[arg(
        long,
        default_value = "rpc=30,stream=15,info=20,history=15,sessions=5,notify=8,notifications=7"
    )]
    mix: String,
    /// Each client waits a random 0..=N ms between operations (0: none).
    #[arg(long, default_value_t = 0)]
    think_ms: u64,
    /// RSS samples before this are warm-up; default: 20% of --duration.
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// RSS sampling interval.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    rss_every: Duration,
    /// One operation taking longer than this is an error.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    op_timeout: Duration,
    /// Progress line interval on stderr.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    progress: Duration,
    /// Report the RSS verdict without failing on it (short runs, where
    /// warm-up dominates).
    #[arg(long)]
    no_rss_verdict: bool,
    /// Also write the summary as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (e.g. 600s, 10m, 500ms)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit in {s:?} (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

// ------------------------------------------------------------------ kinds

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rpc,
    Stream,
    Info,
    History,
    Sessions,
    Notify,
    Notifications,
}

const KINDS: [Kind; 7] = [
    Kind::Rpc,
    Kind::Stream,
    Kind::Info,
    Kind::History,
    Kind::Sessions,
    Kind::Notify,
    Kind::Notifications,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Rpc => "rpc",
            Kind::Stream => "stream",
            Kind::Info => "info",
            Kind::History => "history",
            Kind::Sessions => "sessions",
            Kind::Notify => "notify",
            Kind::Notifications => "notifications",
        }
    }
    fn index(self) -> usize {
        KINDS.iter().position(|k| *k == self).unwrap_or(0)
    }
}

fn parse_mix(s: &str) -> Result<[u32; 7], String> {
    let mut w = [0u32; 7];
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .ok_or_else(|| format!("mix entry {part:?} is not kind=weight"))?;
        let k = KINDS
            .iter()
            .find(|k| k.name() == name.trim())
            .ok_or_else(|| format!("unknown kind {name:?} in --mix"))?;
        w[k.index()] = weight
            .trim()
            .parse()
            .map_err(|_| format!("bad weight in {part:?}"))?;
    }
    if w.iter().all(|&x| x == 0) {
        return Err("--mix has no positive weight".into());
    }
    Ok(w)
}

// ------------------------------------------------------------------ rng

/// xorshift64*: enough for picking operations, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

const WORDS: [&str; 16] = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima", "mike", "november", "oscar", "papa",
];

// ------------------------------------------------------------------ notify pacing

/// Client-side token buckets, kept below the relay's per-token limit (60 at
/// once, one a second) so that the soak never earns a legitimate 429: a burst
/// of 40 and 0.8 a second per token. A request that sits a while between
/// taking its slot here and reaching the relay still fits the relay's bucket.
struct NotifyPool {
    tokens: Vec<(String, Mutex<(f64, Instant)>)>,
    next: AtomicUsize,
}

const POOL_BURST: f64 = 40.0;
const POOL_PER_SEC: f64 = 0.8;

impl NotifyPool {
    fn new(tokens: Vec<String>) -> Self {
        let now = Instant::now();
        Self {
            tokens: tokens
                .into_iter()
                .map(|t| (t, Mutex::new((POOL_BURST, now))))
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    fn try_take(&self) -> Option<String> {
        let n = self.tokens.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        for i in 0..n {
            let (token, bucket) = &self.tokens[(start + i) % n];
            let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
            let level = (b.0 + now.saturating_duration_since(b.1).as_secs_f64() * POOL_PER_SEC)
                .min(POOL_BURST);
            *b = (level, now);
            if level >= 1.0 {
                b.0 -= 1.0;
                return Some(token.clone());
            }
        }
        None
    }
}

// ------------------------------------------------------------------ shared context

struct Ctx {
    origin: String,
    token: String,
    sessions: Vec<String>,
    weights: [u32; 7],
    pool: NotifyPool,
    /// Seqs of notifications this soak posted and had acknowledged.
    posted: Mutex<Vec<u64>>,
    ops: AtomicU64,
    errors: AtomicU64,
    start: Instant,
    deadline: Instant,
    op_timeout: Duration,
    think_ms: u64,
    /// Set when the load is over.
    stopping: AtomicBool,
}

impl Ctx {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }
}

fn error_text(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The JSON of a 2xx answer, or the error as a sentence.
async fn json_ok(resp: Result<reqwest::Response, reqwest::Error>) -> Result<Value, String> {
    let r = resp.map_err(|e| format!("transport: {}", error_text(&e)))?;
    let status = r.status();
    let bytes = r
        .bytes()
        .await
        .map_err(|e| format!("reading the body: {}", error_text(&e)))?;
    if !status.is_success() {
        let body = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
        return Err(format!("HTTP {}: {body}", status.as_u16()));
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("answer is not JSON: {e}"))
}

fn ensure(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(what()) }
}

fn parse<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("{what}: {e}: {v}"))
}

// ------------------------------------------------------------------ clients

/// A turn the relay acknowledged.
#[derive(Clone)]
struct Acked {
    session: String,
    text: String,
    reply_id: String,
}

#[derive(Default)]
struct ClientReport {
    /// Per kind: (second since start, latency µs) of each successful op.
    lat: [Vec<(u32, u32)>; 7],
    errors: [u64; 7],
    samples: Vec<String>,
    /// Checks that could not be made because the data was legitimately gone
    /// (a notification evicted from the kept 500).
    unverified: u64,
}

struct Client {
    idx: usize,
    http: reqwest::Client,
    ctx: Arc<Ctx>,
    rng: Rng,
    n: u64,
    home: String,
    last_turn: Option<Acked>,
    used: BTreeSet<String>,
    last_seq: HashMap<String, u64>,
    last_notify: Option<(u64, String)>,
    report: ClientReport,
}

impl Client {
    fn pick(&mut self) -> (Kind, Option<String>) {
        let w = self.ctx.weights;
        let mut allow_notify = true;
        loop {
            let total: u64 = KINDS
                .iter()
                .filter(|k| allow_notify || **k != Kind::Notify)
                .map(|k| u64::from(w[k.index()]))
                .sum();
            let mut r = self.rng.below(total);
            let mut chosen = Kind::Info;
            for k in KINDS {
                if !allow_notify && k == Kind::Notify {
                    continue;
                }
                let kw = u64::from(w[k.index()]);
                if r < kw {
                    chosen = k;
                    break;
                }
                r -= kw;
            }
            if chosen != Kind::Notify {
                return (chosen, None);
            }
            match self.ctx.pool.try_take() {
                Some(t) => return (Kind::Notify, Some(t)),
                // Every token is at its pace: do something else this time.
                None => allow_notify = false,
            }
        }
    }

    fn session_for_turn(&mut self) -> String {
        if self.rng.below(10) < 7 {
            self.home.clone()
        } else {
            let i = self.rng.below(self.ctx.sessions.len() as u64) as usize;
            self.ctx.sessions[i].clone()
        }
    }

    fn random_session(&mut self) -> String {
        let i = self.rng.below(self.ctx.sessions.len() as u64) as usize;
        self.ctx.sessions[i].clone()
    }

    fn text(&mut self) -> String {
        let mut t = format!("soak c{} n{}", self.idx, self.n);
        for _ in 0..6 {
            t.push(' ');
            t.push_str(WORDS[self.rng.below(WORDS.len() as u64) as usize]);
        }
        t
    }

    async fn run(mut self) -> ClientReport {
        let ctx = self.ctx.clone();
        while Instant::now() < ctx.deadline {
            self.n += 1;
            let (kind, notify_token) = self.pick();
            let t0 = Instant::now();
            let outcome = tokio::time::timeout(ctx.op_timeout, self.op(kind, notify_token)).await;
            let latency = t0.elapsed();
            let result = match outcome {
                Ok(r) => r,
                Err(_) => Err(format!("timed out after {:?}", ctx.op_timeout)),
            };
            ctx.ops.fetch_add(1, Ordering::Relaxed);
            let i = kind.index();
            match result {
                Ok(()) => {
                    let sec = t0.duration_since(ctx.start).as_secs() as u32;
                    let us = latency.as_micros().min(u128::from(u32::MAX)) as u32;
                    self.report.lat[i].push((sec, us));
                }
                Err(e) => {
                    ctx.errors.fetch_add(1, Ordering::Relaxed);
                    self.report.errors[i] += 1;
                    if self.report.samples.len() < 5 {
                        let at = t0.duration_since(ctx.start).as_secs_f64();
                        self.report.samples.push(format!(
                            "t={at:.1}s client {} {}: {e}",
                            self.idx,
                            kind.name()
                        ));
                    }
                }
            }
            if ctx.think_ms > 0 {
                let ms = self.rng.below(ctx.think_ms + 1);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        self.report
    }

    async fn op(&mut self, kind: Kind, notify_token: Option<String>) -> Result<(), String> {
        match kind {
            Kind::Rpc => self.rpc().await,
            Kind::Stream => self.stream().await,
            Kind::Info => self.info().await,
            Kind::History => self.history().await,
            Kind::Sessions => self.sessions().await,
            Kind::Notify => self.notify(notify_token.unwrap_or_default()).await,
            Kind::Notifications => self.notifications().await,
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(self.ctx.url(path))
            .bearer_auth(&self.ctx.token)
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.ctx.url(path))
            .bearer_auth(&self.ctx.token)
    }

    fn acked(&mut self, session: String, text: String, reply_id: String) {
        self.used.insert(session.clone());
        self.last_turn = Some(Acked {
            session,
            text,
            reply_id,
        });
    }

    /// An idempotency key unique to this client's turn.
    fn turn_id(&mut self) -> String {
        format!(
            "soak-{}-{}-{}",
            self.idx,
            self.n,
            self.rng.next() % 1_000_000
        )
    }

    async fn rpc(&mut self) -> Result<(), String> {
        let session = self.session_for_turn();
        let text = self.text();
        let id = self.turn_id();
        let v = json_ok(
            self.post("/webchat/rpc")
                .json(&json!({"text": text, "session": session, "id": id}))
                .send()
                .await,
        )
        .await?;
        let r: loopchat_proto::RpcResponse = parse(&v, "rpc answer")?;
        let expected = format!("echo: {text}");
        ensure(r.ok && r.session_key == session, || {
            format!("rpc answer for another session: {v}")
        })?;
        ensure(
            r.payloads.first().map(|p| p.text.as_str()) == Some(expected.as_str()),
            || format!("reply does not echo the text {text:?}: {v}"),
        )?;
        ensure(
            r.message.role == Role::Assistant
                && r.message.content.text() == expected
                && r.message.stop_reason.is_none()
                && !r.message.id.is_empty(),
            || format!("reply message is not the complete echo: {v}"),
        )?;
        self.acked(session, text, r.message.id);
        Ok(())
    }

    async fn stream(&mut self) -> Result<(), String> {
        let session = self.session_for_turn();
        let text = self.text();
        let id = self.turn_id();
        let resp = self
            .post("/webchat/rpc")
            .json(&json!({"text": text, "session": session, "id": id, "stream": true}))
            .send()
            .await
            .map_err(|e| format!("transport: {}", error_text(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(format!("HTTP {}: {body}", status.as_u16()));
        }
        let ctype = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        ensure(ctype.starts_with("text/event-stream"), || {
            format!("streaming rpc answered {ctype:?}")
        })?;
        let expected = format!("echo: {text}");
        let mut events = SseStream::with_ids(Box::pin(resp.bytes_stream()));
        // user message → run.start → delta… → assistant message → run.end → done
        let mut stage = 0u8;
        let mut run_id = String::new();
        let mut deltas = String::new();
        let mut reply_id = String::new();
        let mut last_seq = 0u64;
        loop {
            let e = match events.next().await {
                Some(Ok(e)) => e,
                Some(Err(e)) => return Err(format!("broken SSE stream: {e}")),
                None => return Err(format!("stream ended before done (stage {stage})")),
            };
            if e.data.is_empty() {
                continue;
            }
            let v: Value =
                serde_json::from_str(&e.data).map_err(|err| format!("SSE data: {err}"))?;
            let ty = v["type"].as_str().unwrap_or("");
            if ty != "done" && ty != "error" {
                let seq = v["seq"].as_u64().unwrap_or(0);
                ensure(last_seq == 0 || seq == last_seq + 1, || {
                    format!("run events not consecutive: {seq} after {last_seq}")
                })?;
                last_seq = seq;
                let rid = v["runId"].as_str().unwrap_or("");
                if stage == 0 {
                    run_id = rid.to_owned();
                }
                ensure(rid == run_id, || {
                    format!("event of another run in the stream: {v}")
                })?;
            }
            match (stage, ty) {
                (0, "message") => {
                    let m: Message = parse(&v["message"], "user message")?;
                    ensure(m.role == Role::User && m.content.text() == text, || {
                        format!("first event is not the user message: {v}")
                    })?;
                    stage = 1;
                }
                (1, "run.start") => stage = 2,
                (2, "delta") => deltas.push_str(v["text"].as_str().unwrap_or("")),
                (2, "message") => {
                    let m: Message = parse(&v["message"], "assistant message")?;
                    ensure(
                        m.role == Role::Assistant && m.content.text() == expected,
                        || format!("assistant message is not the echo: {v}"),
                    )?;
                    reply_id = m.id;
                    stage = 3;
                }
                (3, "run.end") => {
                    ensure(v["state"] == "final", || {
                        format!("run did not end final: {v}")
                    })?;
                    stage = 4;
                }
                (4, "done") => {
                    let r: loopchat_proto::RpcResponse = parse(&v, "done event")?;
                    ensure(
                        r.run_id == run_id
                            && r.message.id == reply_id
                            && r.payloads.first().map(|p| p.text.as_str())
                                == Some(expected.as_str()),
                        || format!("done event does not match the run: {v}"),
                    )?;
                    break;
                }
                (_, "error") => return Err(format!("stream ended with an error: {v}")),
                _ => return Err(format!("unexpected {ty:?} event at stage {stage}: {v}")),
            }
        }
        ensure(deltas == expected, || {
            format!("deltas {deltas:?} do not add up to {expected:?}")
        })?;
        // The stream ends after done; reading to the end frees the connection.
        if let Some(extra) = events.next().await {
            return Err(format!("event after done: {extra:?}"));
        }
        self.acked(session, text, reply_id);
        Ok(())
    }

    async fn info(&mut self) -> Result<(), String> {
        let session = self.random_session();
        let v = json_ok(
            self.get(&format!("/webchat/info?session={session}&limit=20"))
                .send()
                .await,
        )
        .await?;
        let info: loopchat_proto::InfoResponse = parse(&v, "info answer")?;
        ensure(info.ok && info.session_key == session, || {
            format!("info for another session: {}", info.session_key)
        })?;
        ensure(info.initial_messages.len() <= 20, || {
            format!("{} messages for limit 20", info.initial_messages.len())
        })?;
        let prev = self.last_seq.insert(session.clone(), info.last_seq);
        ensure(prev.is_none_or(|p| info.last_seq >= p), || {
            format!(
                "lastSeq of {session} went back: {prev:?} → {}",
                info.last_seq
            )
        })?;
        if self.used.contains(&session) {
            ensure(info.session_id.is_some(), || {
                format!("{session} has turns but no sessionId")
            })?;
        }
        Ok(())
    }

    /// A page of history ending just before this client's last acknowledged
    /// reply: the reply must be found (else 404) and the message before it
    /// must be the user message it answers. Sometimes pages further back.
    async fn history(&mut self) -> Result<(), String> {
        let Some(turn) = self.last_turn.clone() else {
            let v = json_ok(
                self.get(&format!("/webchat/history?session={}&limit=20", self.home))
                    .send()
                    .await,
            )
            .await?;
            let page: loopchat_proto::HistoryResponse = parse(&v, "history page")?;
            return ensure(page.ok && page.messages.len() <= 20, || {
                format!("bad latest page: {v}")
            });
        };
        let mut before = turn.reply_id.clone();
        let pages = if self.rng.below(4) == 0 { 3 } else { 1 };
        for p in 0..pages {
            let r = self
                .get(&format!(
                    "/webchat/history?session={}&before={before}&limit=20",
                    turn.session
                ))
                .send()
                .await;
            if p == 0
                && let Ok(resp) = &r
                && resp.status() == reqwest::StatusCode::NOT_FOUND
            {
                return Err(format!(
                    "acknowledged reply {} of {:?} is not in the history of {}",
                    turn.reply_id, turn.text, turn.session
                ));
            }
            let v = json_ok(r).await?;
            let page: loopchat_proto::HistoryResponse = parse(&v, "history page")?;
            ensure(page.ok && page.messages.len() <= 20, || {
                format!("bad history page: {} messages", page.messages.len())
            })?;
            if p == 0 {
                let last = page.messages.last();
                ensure(
                    last.is_some_and(|m| m.role == Role::User && m.content.text() == turn.text),
                    || {
                        format!(
                            "the message before reply {} is not the user message {:?}: {:?}",
                            turn.reply_id,
                            turn.text,
                            last.map(|m| m.content.text())
                        )
                    },
                )?;
            }
            if !page.has_more {
                break;
            }
            match page.messages.first() {
                Some(m) => before = m.id.clone(),
                None => return Err("hasMore with an empty page".into()),
            }
        }
        Ok(())
    }

    async fn sessions(&mut self) -> Result<(), String> {
        let v = json_ok(self.get("/webchat/sessions").send().await).await?;
        let list: loopchat_proto::SessionsResponse = parse(&v, "sessions answer")?;
        let keys: HashSet<&str> = list
            .sessions
            .iter()
            .filter(|s| !s.session_id.is_empty())
            .map(|s| s.key.as_str())
            .collect();
        if let Some(missing) = self.used.iter().find(|k| !keys.contains(k.as_str())) {
            return Err(format!("session {missing} has turns but is not listed"));
        }
        Ok(())
    }

    async fn notify(&mut self, token: String) -> Result<(), String> {
        let id = format!("soak-{}-{}", self.idx, self.n);
        let priority = 1 + self.rng.below(5);
        let v = json_ok(
            self.http
                .post(self.ctx.url("/webchat/notify"))
                .bearer_auth(&token)
                .json(&json!({
                    "title": format!("soak client {}", self.idx),
                    "body": format!("notification {} of client {}", self.n, self.idx),
                    "priority": priority,
                    "tags": ["soak"],
                    "session": self.home,
                    "id": id,
                }))
                .send()
                .await,
        )
        .await?;
        let r: loopchat_proto::NotifyResponse = parse(&v, "notify answer")?;
        ensure(r.ok && r.id == id && r.seq > 0, || {
            format!("bad notify answer: {v}")
        })?;
        self.ctx
            .posted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r.seq);
        self.last_notify = Some((r.seq, id));
        Ok(())
    }

    /// Reads the notifications from just before this client's last post:
    /// that post must be listed, unless 500 newer ones have pushed it out.
    async fn notifications(&mut self) -> Result<(), String> {
        let path = match &self.last_notify {
            Some((seq, _)) => format!("/webchat/notifications?since={}&limit=5", seq - 1),
            None => "/webchat/notifications?limit=20".to_owned(),
        };
        let v = json_ok(self.get(&path).send().await).await?;
        let list: loopchat_proto::NotificationsResponse = parse(&v, "notifications answer")?;
        ensure(
            list.notifications.windows(2).all(|w| w[0].seq < w[1].seq),
            || "notifications are not in seq order".into(),
        )?;
        let Some((seq, id)) = self.last_notify.clone() else {
            return Ok(());
        };
        match list.notifications.first() {
            Some(n) if n.seq == seq => ensure(n.id == id, || {
                format!("notification {seq} has id {} instead of {id}", n.id)
            }),
            _ => {
                // Gone: fine only if older than everything kept.
                let v = json_ok(
                    self.get("/webchat/notifications?since=0&limit=1")
                        .send()
                        .await,
                )
                .await?;
                let oldest: loopchat_proto::NotificationsResponse =
                    parse(&v, "notifications answer")?;
                match oldest.notifications.first() {
                    Some(o) if o.seq > seq => {
                        self.report.unverified += 1;
                        Ok(())
                    }
                    _ => Err(format!(
                        "acknowledged notification {seq} ({id}) is not listed"
                    )),
                }
            }
        }
    }
}

// ------------------------------------------------------------------ subscribers

#[derive(Default)]
struct Run {
    user_text: String,
    stage: u8,
    deltas: String,
}

#[derive(Default)]
struct SubState {
    session: Option<String>,
    connected: bool,
    last_session_seq: u64,
    first_notify: u64,
    last_notify: u64,
    session_events: u64,
    notifications: u64,
    /// Notification seqs skipped (ranges, inclusive): allowed only for
    /// notifications replaced in place after a lag (not the soak's own).
    skipped: Vec<(u64, u64)>,
    seen_notify: Vec<u64>,
    runs: HashMap<String, Run>,
    errors: u64,
    samples: Vec<String>,
    reconnects: u64,
}

impl SubState {
    fn error(&mut self, start: Instant, e: String) {
        self.errors += 1;
        if self.samples.len() < 5 {
            let at = start.elapsed().as_secs_f64();
            let who = self.session.as_deref().unwrap_or("(notifications only)");
            self.samples
                .push(format!("t={at:.1}s subscriber {who}: {e}"));
        }
    }

    fn on_event(&mut self, start: Instant, v: &Value) {
        let ty = v["type"].as_str().unwrap_or("");
        let seq = v["seq"].as_u64().unwrap_or(0);
        match ty {
            "notification" => {
                self.notifications += 1;
                if seq <= self.last_notify {
                    let last = self.last_notify;
                    self.error(
                        start,
                        format!("notification {seq} after {last} (out of order or twice)"),
                    );
                    return;
                }
                if seq > self.last_notify + 1 {
                    self.skipped.push((self.last_notify + 1, seq - 1));
                }
                self.last_notify = seq;
                self.seen_notify.push(seq);
            }
            // The session list's changes: every stream carries them, with no
            // seq of the session's log (Decision 68).
            "sessions" => {}
            "reset" => self.error(start, format!("reset at {seq}: the subscriber lost events")),
            _ => {
                self.session_events += 1;
                if seq != self.last_session_seq + 1 {
                    let last = self.last_session_seq;
                    self.error(start, format!("session event {seq} after {last} (gap)"));
                }
                self.last_session_seq = self.last_session_seq.max(seq);
                if let Err(e) = self.on_run_event(ty, v) {
                    self.error(start, e);
                }
            }
        }
    }

    /// message(user) → run.start → delta… → message(assistant) → run.end.
    fn on_run_event(&mut self, ty: &str, v: &Value) -> Result<(), String> {
        let run_id = v["runId"].as_str().unwrap_or("").to_owned();
        if ty == "message" && v["message"]["role"] == "user" {
            let m: Message = parse(&v["message"], "user message")?;
            let fresh = Run {
                user_text: m.content.text(),
                stage: 1,
                deltas: String::new(),
            };
            if self.runs.insert(run_id.clone(), fresh).is_some() {
                return Err(format!("second user message for run {run_id}"));
            }
            return Ok(());
        }
        let Some(run) = self.runs.get_mut(&run_id) else {
            return Err(format!("{ty} of a run never started: {v}"));
        };
        match (run.stage, ty) {
            (1, "run.start") => run.stage = 2,
            (2, "delta") => run.deltas.push_str(v["text"].as_str().unwrap_or("")),
            (2, "message") => {
                let m: Message = parse(&v["message"], "assistant message")?;
                let expected = format!("echo: {}", run.user_text);
                ensure(
                    m.role == Role::Assistant
                        && m.content.text() == expected
                        && run.deltas == expected,
                    || format!("run {run_id}: reply/deltas are not {expected:?}: {v}"),
                )?;
                run.stage = 3;
            }
            (3, "run.end") => {
                ensure(v["state"] == "final", || {
                    format!("run did not end final: {v}")
                })?;
                self.runs.remove(&run_id);
            }
            (stage, _) => return Err(format!("run {run_id}: {ty} at stage {stage}: {v}")),
        }
        Ok(())
    }
}

async fn subscriber(
    origin: String,
    token: String,
    start: Instant,
    http: reqwest::Client,
    state: Arc<Mutex<SubState>>,
    mut stop: watch::Receiver<bool>,
) {
    let session = state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .session
        .clone();
    'connect: loop {
        let (since, notify_since) = {
            let st = state.lock().unwrap_or_else(|e| e.into_inner());
            (st.last_session_seq, st.last_notify)
        };
        let mut url = format!("/webchat/events?notifySince={notify_since}");
        if let Some(s) = &session {
            url.push_str(&format!("&session={s}&since={since}"));
        }
        let resp = tokio::select! {
            r = http.get(format!("{origin}{url}")).bearer_auth(&token).send() => r,
            _ = stop.changed() => break,
        };
        let resp = match resp {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let s = r.status();
                state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .error(start, format!("events answered HTTP {s}"));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Err(e) => {
                state
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .error(start, format!("events: transport: {}", error_text(&e)));
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        state.lock().unwrap_or_else(|e| e.into_inner()).connected = true;
        let mut events = SseStream::with_ids(Box::pin(resp.bytes_stream()));
        loop {
            let e = tokio::select! {
                e = events.next() => e,
                _ = stop.changed() => break 'connect,
            };
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            match e {
                Some(Ok(e)) if e.data.is_empty() => {}
                Some(Ok(e)) => match serde_json::from_str::<Value>(&e.data) {
                    Ok(v) => st.on_event(start, &v),
                    Err(err) => st.error(start, format!("SSE data is not JSON: {err}")),
                },
                Some(Err(err)) => {
                    st.error(start, format!("broken SSE stream: {err}"));
                    st.reconnects += 1;
                    continue 'connect;
                }
                None => {
                    st.error(start, "the relay closed the event stream".into());
                    st.reconnects += 1;
                    continue 'connect;
                }
            }
        }
    }
}

// ------------------------------------------------------------------ RSS

#[derive(Clone, Copy)]
struct Sample {
    t: f64,
    rss_kib: u64,
    fds: usize,
    load1: f64,
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn loadavg() -> (f64, f64, f64) {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = s.split_whitespace().map(|x| x.parse().unwrap_or(0.0));
    (
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    )
}

fn sample(pid: Option<u32>, start: Instant) -> Option<Sample> {
    let pid = pid?;
    Some(Sample {
        t: start.elapsed().as_secs_f64(),
        rss_kib: rss_kib(pid)?,
        fds: fd_count(pid),
        load1: loadavg().0,
    })
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// The memory rule. Samples taken during the load after warm-up are split
/// into three equal parts by count; the memory is "flat" when the mean of the
/// last third exceeds the mean of the first third by less than
/// max(10% of the first third's mean, 8 MiB). A leak of 100 bytes per turn
/// at 1,000 turns a second grows 20 MiB in the middle two thirds of a
/// 10-minute run, so it is caught; allocator noise of a few MiB is not.
struct RssVerdict {
    verdict: &'static str,
    first: f64,
    middle: f64,
    last: f64,
    growth: f64,
    bound: f64,
    max: f64,
    slope_mib_per_min: f64,
    samples: usize,
}

const RSS_RULE: &str = "after warm-up, mean RSS of the last third of the samples minus that of the \
                        first third < max(10% of the first third, 8 MiB)";

fn rss_verdict(samples: &[Sample], warmup: f64, load_end: f64) -> RssVerdict {
    let post: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t >= warmup && s.t <= load_end)
        .collect();
    let mean = |xs: &[&Sample]| -> f64 {
        if xs.is_empty() {
            0.0
        } else {
            xs.iter().map(|s| s.rss_kib as f64).sum::<f64>() / xs.len() as f64
        }
    };
    let n = post.len();
    let third = n / 3;
    let (first, middle, last) = if third == 0 {
        (0.0, 0.0, 0.0)
    } else {
        (
            mean(&post[..third]),
            mean(&post[third..n - third]),
            mean(&post[n - third..]),
        )
    };
    let growth = last - first;
    let bound = (first * 0.10).max(8.0 * 1024.0);
    // Least-squares slope over the post-warm-up samples.
    let slope = if n >= 2 {
        let mt = post.iter().map(|s| s.t).sum::<f64>() / n as f64;
        let mr = mean(&post);
        let num: f64 = post
            .iter()
            .map(|s| (s.t - mt) * (s.rss_kib as f64 - mr))
            .sum();
        let den: f64 = post.iter().map(|s| (s.t - mt).powi(2)).sum();
        if den > 0.0 { num / den * 60.0 } else { 0.0 }
    } else {
        0.0
    };
    let verdict = if n < 6 {
        "unknown"
    } else if growth < bound {
        "flat"
    } else {
        "growing"
    };
    RssVerdict {
        verdict,
        first: mib(first),
        middle: mib(middle),
        last: mib(last),
        growth: mib(growth),
        bound: mib(bound),
        max: mib(post.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64),
        slope_mib_per_min: mib(slope),
        samples: n,
    }
}

// ------------------------------------------------------------------ stats

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

struct KindStats {
    count: usize,
    errors: u64,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

fn kind_stats(lat: &[(u32, u32)], errors: u64) -> KindStats {
    let mut v: Vec<u32> = lat.iter().map(|x| x.1).collect();
    v.sort_unstable();
    KindStats {
        count: v.len() + errors as usize,
        errors,
        p50: percentile(&v, 50.0),
        p95: percentile(&v, 95.0),
        p99: percentile(&v, 99.0),
        max: v.last().map_or(0.0, |m| f64::from(*m) / 1000.0),
    }
}

// ------------------------------------------------------------------ setup

struct Target {
    origin: String,
    token: String,
    pid: Option<u32>,
}

fn origin_of(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url:?} is not an http:// URL"))?;
    let host = rest.split('/').next().unwrap_or(rest);
    Ok(format!("http://{host}"))
}

fn target(args: &Args) -> Result<Target, String> {
    let discovery: Option<Discovery> = match &args.home {
        Some(home) => {
            let path = home.join(loopchat_proto::home::DISCOVERY_FILE);
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("{}: {e} (is the relay running?)", path.display()))?;
            Some(Discovery::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?)
        }
        None => None,
    };
    let url = args
        .url
        .clone()
        .or_else(|| discovery.as_ref().map(|d| d.base_url.clone()))
        .ok_or("give --home or --url")?;
    let token = args
        .token
        .clone()
        .or_else(|| discovery.as_ref().map(|d| d.token.clone()))
        .ok_or("give --home or --token")?;
    Ok(Target {
        origin: origin_of(&url)?,
        token,
        pid: args.pid.or_else(|| discovery.as_ref().map(|d| d.pid)),
    })
}

/// Creates notify-only tokens with `loopchat token create` in the home.
fn notify_tokens(args: &Args, home: &Path) -> Result<Vec<String>, String> {
    let bin = match &args.loopchat {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("loopchat"),
    };
    let mut out = Vec::new();
    for i in 0..args.notify_tokens {
        let o = std::process::Command::new(&bin)
            .args(["token", "create", "--scope", "notify", "--name"])
            .arg(format!("soak-{i}"))
            .env("LOOPCHAT_HOME", home)
            .env_remove("LOOPCHAT_URL")
            .env_remove("LOOPCHAT_TOKEN")
            .output()
            .map_err(|e| format!("{}: {e} (give --loopchat)", bin.display()))?;
        if !o.status.success() {
            return Err(format!(
                "loopchat token create failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
        out.push(String::from_utf8_lossy(&o.stdout).trim().to_owned());
    }
    Ok(out)
}

async fn get_json(http: &reqwest::Client, ctx: &Ctx, path: &str) -> Result<Value, String> {
    json_ok(http.get(ctx.url(path)).bearer_auth(&ctx.token).send().await).await
}

async fn newest_notification(http: &reqwest::Client, ctx: &Ctx) -> Result<u64, String> {
    let v = get_json(http, ctx, "/webchat/notifications?limit=1").await?;
    Ok(v["notifications"][0]["seq"].as_u64().unwrap_or(0))
}

// ------------------------------------------------------------------ main

fn main() -> ExitCode {
    let args = Args::parse();
    let weights = match parse_mix(&args.mix) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("soak: {e}");
            return ExitCode::from(2);
        }
    };
    if args.clients == 0 || args.sessions == 0 {
        eprintln!("soak: --clients and --sessions must be at least 1");
        return ExitCode::from(2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(soak(args, weights)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(2)
        }
    }
}

async fn soak(args: Args, weights: [u32; 7]) -> Result<bool, String> {
    let target = target(&args)?;
    let mut tokens = vec![target.token.clone()];
    if args.notify_tokens > 0
        && let Some(home) = &args.home
    {
        tokens.extend(notify_tokens(&args, home)?);
    }
    let sessions: Vec<String> = (0..args.sessions).map(|i| format!("soak-{i}")).collect();
    let setup_http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .map_err(|e| e.to_string())?;
    let load_start = loadavg();
    let start = Instant::now();
    let warmup = args
        .warmup
        .unwrap_or(args.duration.mul_f64(0.2))
        .as_secs_f64();
    let mut ctx = Ctx {
        origin: target.origin.clone(),
        token: target.token.clone(),
        sessions: sessions.clone(),
        weights,
        pool: NotifyPool::new(tokens.clone()),
        posted: Mutex::new(Vec::new()),
        ops: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        start,
        deadline: start + args.duration,
        op_timeout: args.op_timeout,
        think_ms: args.think_ms,
        stopping: AtomicBool::new(false),
    };
    // Reachable, and the token works.
    get_json(&setup_http, &ctx, "/webchat/sessions")
        .await
        .map_err(|e| format!("relay at {}: {e}", ctx.origin))?;

    // Subscribers first, from a known position, so that they see every turn
    // of the soak from its user message on.
    let (stop_tx, stop_rx) = watch::channel(false);
    let first_notify = newest_notification(&setup_http, &ctx).await?;
    let mut subs = Vec::new();
    let mut sub_tasks = Vec::new();
    for i in 0..args.subscribers {
        // The last one (when there are several) follows notifications only.
        let session = (args.subscribers == 1 || i + 1 < args.subscribers)
            .then(|| sessions[i % sessions.len()].clone());
        let last_seq = match &session {
            Some(s) => get_json(
                &setup_http,
                &ctx,
                &format!("/webchat/info?session={s}&limit=1"),
            )
            .await?["lastSeq"]
                .as_u64()
                .unwrap_or(0),
            None => 0,
        };
        let state = Arc::new(Mutex::new(SubState {
            session,
            last_session_seq: last_seq,
            first_notify,
            last_notify: first_notify,
            ..Default::default()
        }));
        subs.push(state.clone());
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .build()
            .map_err(|e| e.to_string())?;
        sub_tasks.push(tokio::spawn(subscriber(
            ctx.origin.clone(),
            ctx.token.clone(),
            start,
            http,
            state,
            stop_rx.clone(),
        )));
    }
    let connect_deadline = Instant::now() + Duration::from_secs(10);
    while subs
        .iter()
        .any(|s| !s.lock().unwrap_or_else(|e| e.into_inner()).connected)
    {
        if Instant::now() > connect_deadline {
            return Err("the subscribers could not connect within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    eprintln!(
        "soak: {} clients for {:.0} s over {} sessions, {} subscribers, {} notify tokens → {} (relay pid {})",
        args.clients,
        args.duration.as_secs_f64(),
        args.sessions,
        args.subscribers,
        tokens.len(),
        ctx.origin,
        target.pid.map_or("unknown".into(), |p| p.to_string()),
    );
    // The clock starts now, with everything connected.
    let start = Instant::now();
    ctx.start = start;
    ctx.deadline = start + args.duration;
    let ctx = Arc::new(ctx);

    // RSS sampler and progress.
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::new(Mutex::new(Vec::new()));
    let sampler = {
        let samples = samples.clone();
        let ctx = ctx.clone();
        let pid = target.pid;
        let every = args.rss_every;
        let progress = args.progress;
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            let mut next_progress = progress;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => break,
                }
                let s = sample(pid, ctx.start);
                if let Some(s) = s {
                    samples.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                }
                let elapsed = ctx.start.elapsed();
                if elapsed >= next_progress && !ctx.stopping.load(Ordering::Relaxed) {
                    next_progress += progress;
                    let ops = ctx.ops.load(Ordering::Relaxed);
                    eprintln!(
                        "soak: t={:>4.0}s ops={ops} ({:.0}/s) errors={} rss={} load={:.2}",
                        elapsed.as_secs_f64(),
                        ops as f64 / elapsed.as_secs_f64(),
                        ctx.errors.load(Ordering::Relaxed),
                        s.map_or("?".into(), |s| format!("{:.1} MiB", mib(s.rss_kib as f64))),
                        loadavg().0,
                    );
                }
            }
        })
    };

    // The clients.
    let mut handles = Vec::new();
    for idx in 0..args.clients {
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(2)
            .build()
            .map_err(|e| e.to_string())?;
        let seed = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64))
            ^ (idx as u64).wrapping_mul(0x9E37_79B9);
        let client = Client {
            idx,
            http,
            ctx: ctx.clone(),
            rng: Rng::new(seed),
            n: 0,
            home: sessions[idx % sessions.len()].clone(),
            last_turn: None,
            used: BTreeSet::new(),
            last_seq: HashMap::new(),
            last_notify: None,
            report: ClientReport::default(),
        };
        handles.push(tokio::spawn(client.run()));
    }
    let mut reports = Vec::new();
    let mut lost_clients = 0;
    for h in handles {
        match h.await {
            Ok(r) => reports.push(r),
            Err(_) => lost_clients += 1,
        }
    }
    let load_end = start.elapsed().as_secs_f64();
    ctx.stopping.store(true, Ordering::Relaxed);
    let load_final = loadavg();

    // Quiesce: every subscriber must reach the session's last seq and the
    // newest notification.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let newest = newest_notification(&setup_http, &ctx).await?;
    let mut session_targets = HashMap::new();
    for s in &subs {
        let session = s.lock().unwrap_or_else(|e| e.into_inner()).session.clone();
        if let Some(session) = session {
            let v = get_json(
                &setup_http,
                &ctx,
                &format!("/webchat/info?session={session}&limit=1"),
            )
            .await?;
            session_targets.insert(session, v["lastSeq"].as_u64().unwrap_or(0));
        }
    }
    let quiesce_deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let behind = subs.iter().any(|s| {
            let st = s.lock().unwrap_or_else(|e| e.into_inner());
            let session_behind = st
                .session
                .as_ref()
                .is_some_and(|k| st.last_session_seq < session_targets[k]);
            session_behind || st.last_notify < newest
        });
        if !behind || Instant::now() > quiesce_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle_sample = sample(target.pid, start);
    let hwm = target.pid.and_then(hwm_kib);
    let _ = stop_tx.send(true);
    let _ = sampler.await;
    for t in sub_tasks {
        let _ = t.await;
    }

    // Final subscriber checks against what the soak itself posted and what
    // the relay still keeps.
    let kept: HashSet<u64> = get_json(&setup_http, &ctx, "/webchat/notifications?limit=500")
        .await?["notifications"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n["seq"].as_u64()).collect())
        .unwrap_or_default();
    let posted: Vec<u64> = ctx.posted.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for s in &subs {
        let mut st = s.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(k) = st.session.clone() {
            let want = session_targets[&k];
            if st.last_session_seq < want {
                let got = st.last_session_seq;
                st.error(
                    start,
                    format!("saw session events up to {got}, the log is at {want}"),
                );
            }
        }
        if st.last_notify < newest {
            let got = st.last_notify;
            st.error(
                start,
                format!("saw notifications up to {got}, the relay is at {newest}"),
            );
        }
        if !st.runs.is_empty() {
            let n = st.runs.len();
            st.error(start, format!("{n} runs seen to start but not to end"));
        }
        let seen: HashSet<u64> = st.seen_notify.iter().copied().collect();
        let (lo, hi) = (st.first_notify, st.last_notify);
        let missed_own = posted
            .iter()
            .filter(|&&p| p > lo && p <= hi && !seen.contains(&p))
            .count();
        if missed_own > 0 {
            st.error(
                start,
                format!("missed {missed_own} of the soak's own notifications"),
            );
        }
        let skipped_kept = st
            .skipped
            .iter()
            .flat_map(|&(a, b)| a..=b)
            .filter(|q| kept.contains(q))
            .count();
        if skipped_kept > 0 {
            st.error(
                start,
                format!("skipped {skipped_kept} notifications that the relay still keeps"),
            );
        }
    }

    // ---------------------------------------------------------- report
    let mut lat: [Vec<(u32, u32)>; 7] = Default::default();
    let mut errors = [0u64; 7];
    let mut samples_err = Vec::new();
    let mut unverified = 0;
    for r in reports {
        for i in 0..7 {
            lat[i].extend_from_slice(&r.lat[i]);
            errors[i] += r.errors[i];
        }
        unverified += r.unverified;
        for s in r.samples {
            if samples_err.len() < 20 {
                samples_err.push(s);
            }
        }
    }
    let stats: Vec<KindStats> = (0..7).map(|i| kind_stats(&lat[i], errors[i])).collect();
    let total_ops: usize = stats.iter().map(|s| s.count).sum();
    let op_errors: u64 = errors.iter().sum();
    let turns = stats[Kind::Rpc.index()].count + stats[Kind::Stream.index()].count;
    let mut sub_errors = 0;
    let mut sub_json = Vec::new();
    let (mut sub_events, mut sub_notes, mut sub_skipped) = (0u64, 0u64, 0u64);
    for s in &subs {
        let st = s.lock().unwrap_or_else(|e| e.into_inner());
        sub_errors += st.errors;
        sub_events += st.session_events;
        sub_notes += st.notifications;
        let skipped: u64 = st.skipped.iter().map(|(a, b)| b - a + 1).sum();
        sub_skipped += skipped;
        for x in &st.samples {
            if samples_err.len() < 30 {
                samples_err.push(x.clone());
            }
        }
        sub_json.push(json!({
            "session": st.session,
            "sessionEvents": st.session_events,
            "notifications": st.notifications,
            "notificationsSkippedReplaced": skipped,
            "reconnects": st.reconnects,
            "errors": st.errors,
        }));
    }
    let total_errors = op_errors + sub_errors + lost_clients;

    let samples = samples.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let v = rss_verdict(&samples, warmup, load_end);
    let max_load = samples.iter().map(|s| s.load1).fold(0.0, f64::max);
    let fds_first = samples.iter().find(|s| s.t >= warmup).map(|s| s.fds);
    let fds_last = samples
        .iter()
        .rev()
        .find(|s| s.t <= load_end)
        .map(|s| s.fds);

    // Per-minute p99 of turns and reads, to show latency does not drift.
    let window = 60u32.min((args.duration.as_secs() as u32 / 5).max(1));
    let mut windows = Vec::new();
    let nwin = (load_end as u32).div_ceil(window);
    for w in 0..nwin {
        let (a, b) = (w * window, (w + 1) * window);
        let pick = |kinds: &[Kind]| -> Vec<u32> {
            let mut v: Vec<u32> = kinds
                .iter()
                .flat_map(|k| lat[k.index()].iter())
                .filter(|(s, _)| *s >= a && *s < b)
                .map(|x| x.1)
                .collect();
            v.sort_unstable();
            v
        };
        let turns_w = pick(&[Kind::Rpc, Kind::Stream]);
        let reads_w = pick(&[
            Kind::Info,
            Kind::History,
            Kind::Sessions,
            Kind::Notifications,
        ]);
        let rss_w: Vec<u64> = samples
            .iter()
            .filter(|s| s.t >= f64::from(a) && s.t < f64::from(b))
            .map(|s| s.rss_kib)
            .collect();
        windows.push(json!({
            "fromSecs": a,
            "turns": turns_w.len(),
            "turnP99Ms": percentile(&turns_w, 99.0),
            "reads": reads_w.len(),
            "readP99Ms": percentile(&reads_w, 99.0),
            "rssMiB": if rss_w.is_empty() { Value::Null } else {
                json!((mib(rss_w.iter().sum::<u64>() as f64 / rss_w.len() as f64) * 10.0).round() / 10.0)
            },
        }));
    }

    // Human summary.
    println!(
        "soak: {} clients, {:.0} s, {} sessions, {} subscribers, {} notify tokens, think 0..{} ms",
        args.clients,
        load_end,
        args.sessions,
        args.subscribers,
        tokens.len(),
        args.think_ms
    );
    println!(
        "{:<14} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "kind", "count", "errors", "p50 ms", "p95 ms", "p99 ms", "max ms"
    );
    for (k, s) in KINDS.iter().zip(&stats) {
        println!(
            "{:<14} {:>9} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.1}",
            k.name(),
            s.count,
            s.errors,
            s.p50,
            s.p95,
            s.p99,
            s.max
        );
    }
    println!(
        "throughput: {:.0} ops/s, {:.0} turns/s ({} ops, {} turns)",
        total_ops as f64 / load_end,
        turns as f64 / load_end,
        total_ops,
        turns
    );
    println!(
        "subscribers: {} session events, {} notifications, {} notification seqs skipped (replaced in place after a lag), {} errors",
        sub_events, sub_notes, sub_skipped, sub_errors
    );
    if unverified > 0 {
        println!("notification reads unverifiable (evicted from the kept 500): {unverified}");
    }
    let at = |t: f64| -> String {
        samples
            .iter()
            .min_by(|a, b| (a.t - t).abs().total_cmp(&(b.t - t).abs()))
            .map_or("?".into(), |s| format!("{:.1}", mib(s.rss_kib as f64)))
    };
    if target.pid.is_some() && !samples.is_empty() {
        println!(
            "RSS MiB: start {}, after warm-up ({:.0} s) {}, middle {}, end {}, max {:.1}, idle after load {}, peak (VmHWM) {}",
            at(0.0),
            warmup,
            at(warmup),
            at((warmup + load_end) / 2.0),
            at(load_end),
            v.max,
            idle_sample.map_or("?".into(), |s| format!("{:.1}", mib(s.rss_kib as f64))),
            hwm.map_or("?".into(), |h| format!("{:.1}", mib(h as f64))),
        );
        println!(
            "RSS verdict: {} — thirds after warm-up {:.1} / {:.1} / {:.1} MiB, growth {:+.1} MiB (bound {:.1}), slope {:+.2} MiB/min, {} samples",
            v.verdict, v.first, v.middle, v.last, v.growth, v.bound, v.slope_mib_per_min, v.samples
        );
        println!("RSS rule: {RSS_RULE}");
        println!(
            "relay fds: {} after warm-up, {} at the end, {} idle after load",
            fds_first.map_or("?".into(), |f| f.to_string()),
            fds_last.map_or("?".into(), |f| f.to_string()),
            idle_sample.map_or("?".into(), |s| s.fds.to_string()),
        );
    } else {
        println!("RSS: not sampled (no relay pid; give --home or --pid)");
    }
    println!(
        "load average: {:.2} at start, {:.2} at end, max 1-min {:.2}",
        load_start.0, load_final.0, max_load
    );
    println!("errors: {total_errors}");
    for s in &samples_err {
        println!("  {s}");
    }

    let rss_fail = v.verdict == "growing" && !args.no_rss_verdict;
    let ok = total_errors == 0 && !rss_fail;
    if let Some(path) = &args.json {
        let kinds: serde_json::Map<String, Value> = KINDS
            .iter()
            .zip(&stats)
            .map(|(k, s)| {
                (
                    k.name().to_owned(),
                    json!({
                        "count": s.count, "errors": s.errors,
                        "p50Ms": s.p50, "p95Ms": s.p95, "p99Ms": s.p99, "maxMs": s.max,
                    }),
                )
            })
            .collect();
        let summary = json!({
            "ok": ok,
            "config": {
                "clients": args.clients,
                "durationSecs": args.duration.as_secs_f64(),
                "sessions": args.sessions,
                "subscribers": args.subscribers,
                "notifyTokens": tokens.len(),
                "mix": args.mix,
                "thinkMs": args.think_ms,
                "warmupSecs": warmup,
                "url": ctx.origin,
                "pid": target.pid,
            },
            "loadSecs": load_end,
            "ops": total_ops,
            "turns": turns,
            "opsPerSec": total_ops as f64 / load_end,
            "turnsPerSec": turns as f64 / load_end,
            "errors": total_errors,
            "opErrors": op_errors,
            "subscriberErrors": sub_errors,
            "errorSamples": samples_err,
            "kinds": kinds,
            "subscribers": sub_json,
            "notificationReadsUnverified": unverified,
            "windows": windows,
            "rss": {
                "verdict": v.verdict,
                "rule": RSS_RULE,
                "enforced": !args.no_rss_verdict,
                "firstThirdMiB": v.first,
                "middleThirdMiB": v.middle,
                "lastThirdMiB": v.last,
                "growthMiB": v.growth,
                "boundMiB": v.bound,
                "maxMiB": v.max,
                "slopeMiBPerMin": v.slope_mib_per_min,
                "hwmMiB": hwm.map(|h| mib(h as f64)),
                "idleAfterLoadMiB": idle_sample.map(|s| mib(s.rss_kib as f64)),
                "fdsAfterWarmup": fds_first,
                "fdsAtEnd": fds_last,
                "fdsIdleAfterLoad": idle_sample.map(|s| s.fds),
                "samples": samples.iter().map(|s| json!([ (s.t * 10.0).round() / 10.0, s.rss_kib, s.fds ])).collect::<Vec<_>>(),
            },
            "loadAverage": {
                "start": [load_start.0, load_start.1, load_start.2],
                "end": [load_final.0, load_final.1, load_final.2],
                "max1": max_load,
            },
        });
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&summary).unwrap_or_default(),
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(ok)
}
