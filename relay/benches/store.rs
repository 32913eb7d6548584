//! Hot functions of the store: parsing a transcript line, reading the latest
//! page from the end of a transcript (1k/10k/100k messages — the cost must
//! not grow with the transcript), and appending a line.
//!
//! `cargo bench -p loopchat-relay --bench store`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use loopchat_proto::{Content, Role};
use loopchat_relay::store::{NewMessage, Store, parse_line};

fn message(i: usize, role: Role) -> NewMessage {
    NewMessage {
        id: format!("00000000-0000-4000-8000-{i:012}"),
        role,
        // ~250 bytes a line, like the 25 MB / 100k-message transcript of the
        // Node implementation's measurement.
        content: Content::Text(format!(
            "message {i}: {}",
            "lorem ipsum dolor sit amet ".repeat(6)
        )),
        timestamp_ms: 1_700_000_000_000 + i as i64,
        client_id: None,
        reply_to: None,
        stop_reason: None,
        error_message: None,
        tool_result: None,
    }
}

fn build(dir: &std::path::Path, n: usize) -> (Store, String) {
    let store = Store::open(dir, Arc::new(|_| {})).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let entry = rt.block_on(store.get_or_create("bench")).unwrap();
    let t = store.transcript(&entry.session_id).unwrap();
    for i in 0..n {
        let role = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        t.append(&message(i, role)).unwrap();
    }
    (store, entry.session_id)
}

fn bench(c: &mut Criterion) {
    let line = message(7, Role::Assistant).to_line();
    c.bench_function("parse_line", |b| {
        b.iter(|| parse_line(black_box(&line[..line.len() - 1]), 0))
    });

    let mut group = c.benchmark_group("latest_100_cold_open");
    for n in [1_000usize, 10_000, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let (_, session_id) = build(dir.path(), n);
        // A fresh store each iteration: the tail is read from disk, the
        // worst case for /webchat/info (first call after a restart).
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let store = Store::open(dir.path(), Arc::new(|_| {})).unwrap();
                let t = store.transcript(&session_id).unwrap();
                black_box(t.latest(100).unwrap().messages.len())
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("latest_100_warm");
    for n in [1_000usize, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let (store, session_id) = build(dir.path(), n);
        let t = store.transcript(&session_id).unwrap();
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| black_box(t.latest(100).unwrap().messages.len()))
        });
    }
    group.finish();

    let dir = tempfile::tempdir().unwrap();
    let (store, session_id) = build(dir.path(), 0);
    let t = store.transcript(&session_id).unwrap();
    let m = message(1, Role::User);
    c.bench_function("append_unsynced", |b| {
        b.iter(|| t.append(black_box(&m)).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
