//! The owner's latency while a local user, without a token, floods the relay
//! with half-open connections (issue 12, item 6).
//!
//! `--hostile` connections each send the start of a request head, then one
//! more header byte every `--trickle`, and reconnect at once when the relay
//! cuts them. Meanwhile the owner sends authenticated requests one after
//! another (a turn, then `/webchat/info`, alternately), each on a new
//! connection by default (the worst case: every request needs a free slot),
//! and the latencies are summarised as p50/p99/max. Exit status 0 when every
//! owner request succeeded, 1 otherwise, 2 for bad arguments.
//!
//!   halfopen --home ~/.loopchat --hostile 1100 --trickle 2s --duration 30s
//!
//! `scripts/halfopen.sh` builds everything, starts a relay on a fresh home
//! and runs this; docs/benchmarks.md ("Half-open flood") records a run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(
    name = "halfopen",
    about = "Owner latency under a half-open connection flood"
)]
struct Args {
    /// Relay home: relay.json gives the port and the token.
    #[arg(long)]
    home: PathBuf,
    /// Half-open connections kept open (reopened when cut).
    #[arg(long, default_value_t = 1_100)]
    hostile: usize,
    /// Each hostile connection sends one header byte this often.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    trickle: Duration,
    /// How long the owner sends requests, once the flood is in place.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    duration: Duration,
    /// Pause between two owner requests.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pause: Duration,
    /// Reuse one keep-alive connection for the owner's requests.
    #[arg(long)]
    keep_alive: bool,
    /// Write the summary as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = n.parse().map_err(|_| format!("not a duration: {s}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("not a duration: {s} (use ms, s or m)")),
    }
}

/// A hostile connection: part of a head sent, more to come, never finished.
struct Slow {
    stream: Option<TcpStream>,
    next_byte: Instant,
}

fn open_slow(addr: SocketAddr) -> Option<TcpStream> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

fn cut_by_relay(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 512];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// Keeps `n` half-open connections until `stop`; returns the reconnects.
fn flood(
    addr: SocketAddr,
    n: usize,
    trickle: Duration,
    stop: &AtomicBool,
    open: &AtomicUsize,
) -> usize {
    let start = Instant::now();
    let mut slow: Vec<Slow> = (0..n)
        .map(|i| Slow {
            stream: open_slow(addr),
            // Spread the bytes over the period, as independent clients would.
            next_byte: start + trickle.mul_f64(i as f64 / n as f64),
        })
        .collect();
    let mut reconnects = 0;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let mut alive = 0;
        for s in &mut slow {
            let cut = match &mut s.stream {
                Some(stream) => cut_by_relay(stream),
                None => true,
            };
            if cut {
                s.stream = open_slow(addr);
                reconnects += usize::from(s.stream.is_some());
                s.next_byte = now + trickle;
            } else if now >= s.next_byte {
                if let Some(stream) = &mut s.stream {
                    let _ = stream.write_all(b"a");
                }
                s.next_byte = now + trickle;
            }
            alive += usize::from(s.stream.is_some());
        }
        open.store(alive, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
    }
    reconnects
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let discovery = match loopchat_tests::read_discovery(&args.home) {
        Ok(d) => d,
        Err(e) => {
            eprintln!(
                "halfopen: cannot read {}/relay.json: {e}",
                args.home.display()
            );
            return ExitCode::from(2);
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], discovery.port));
    let origin = format!("http://127.0.0.1:{}", discovery.port);

    let stop = Arc::new(AtomicBool::new(false));
    let open = Arc::new(AtomicUsize::new(0));
    let flooder = {
        let (stop, open) = (stop.clone(), open.clone());
        let (n, trickle) = (args.hostile, args.trickle);
        std::thread::spawn(move || flood(addr, n, trickle, &stop, &open))
    };
    // The flood is in place once every hostile connection has been opened.
    let deadline = Instant::now() + Duration::from_secs(60);
    while open.load(Ordering::Relaxed) < args.hostile * 95 / 100 {
        if Instant::now() > deadline {
            eprintln!(
                "halfopen: only {} of {} hostile connections open after 60 s",
                open.load(Ordering::Relaxed),
                args.hostile
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "{} hostile half-open connections open; owner requests for {:?}",
        open.load(Ordering::Relaxed),
        args.duration
    );

    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(120));
    if !args.keep_alive {
        builder = builder.pool_max_idle_per_host(0);
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("halfopen: {e}");
            return ExitCode::from(2);
        }
    };
    let mut latencies = Vec::new();
    let mut errors = 0usize;
    let end = Instant::now() + args.duration;
    let mut i = 0u64;
    while Instant::now() < end {
        let started = Instant::now();
        let request = if i.is_multiple_of(2) {
            client
                .post(format!("{origin}/webchat/rpc"))
                .json(&json!({"text": format!("owner turn {i}"), "session": "halfopen"}))
        } else {
            client.get(format!("{origin}/webchat/info"))
        };
        let ok = match request.bearer_auth(&discovery.token).send().await {
            Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
            Err(_) => false,
        };
        if ok {
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        } else {
            errors += 1;
        }
        i += 1;
        tokio::time::sleep(args.pause).await;
    }
    stop.store(true, Ordering::Relaxed);
    let reconnects = flooder.join().unwrap_or(0);

    latencies.sort_by(f64::total_cmp);
    let summary = json!({
        "hostile": args.hostile,
        "trickleMs": args.trickle.as_millis() as u64,
        "keepAlive": args.keep_alive,
        "requests": latencies.len() + errors,
        "errors": errors,
        "p50Ms": percentile(&latencies, 0.50),
        "p99Ms": percentile(&latencies, 0.99),
        "maxMs": latencies.last().copied().unwrap_or(f64::NAN),
        "hostileReconnects": reconnects,
    });
    println!(
        "owner: {} requests, {} errors; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
         {} hostile reconnects",
        latencies.len() + errors,
        errors,
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        reconnects
    );
    if let Some(path) = &args.json
        && let Err(e) = std::fs::write(path, summary.to_string())
    {
        eprintln!("halfopen: cannot write {}: {e}", path.display());
    }
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
