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
    let mut m = NewMessage::new(
        role,
        // ~250 bytes a line, like the 25 MB / 100k-message transcript of the
        // Node implementation's measurement.
        Content::Text(format!(
            "message {i}: {}",
            "lorem ipsum dolor sit amet ".repeat(6)
        )),
        1_700_000_000_000 + i as i64,
    );
    m.id = format!("{i:08x}");
    m
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
    let line = message(7, Role::Assistant).to_line("00000007", Some("00000006"));
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

/// `--store pi`: the folder is listed again with every index check (every
/// 250 ms), a stat per known file; what that costs per check for 100 and
/// 1,000 pi session files in 10 cwd folders.
fn pi_folder(c: &mut Criterion) {
    use loopchat_relay::store::Source;
    let mut group = c.benchmark_group("pi_folder_rescan");
    for n in [100usize, 1_000] {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..n {
            let folder = dir.path().join(format!("--home-me-p{}--", i % 10));
            std::fs::create_dir_all(&folder).unwrap();
            let id = format!("0000000{i:05}-pi");
            std::fs::write(
                folder.join(format!("2026-12-02T16-04-49-156Z_{id}.jsonl")),
                format!(
                    "{{\"type\":\"session\",\"version\":3,\"id\":\"{id}\",\"timestamp\":\"2026-12-02T16:04:49.156Z\",\"cwd\":\"/home/me\"}}\n"
                ),
            )
            .unwrap();
        }
        let store = Store::open_source(
            &Source::Pi(dir.path().to_owned()),
            dir.path(),
            Arc::new(|_| {}),
            1 << 20,
        )
        .unwrap();
        assert_eq!(store.sessions().len(), n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| black_box(store.refresh_index().unwrap()))
        });
    }
    group.finish();
}

criterion_group!(benches, bench, pi_folder);
criterion_main!(benches);
