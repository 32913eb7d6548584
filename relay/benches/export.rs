//! Exporting a 5,000-message session (`transfer::export`): Markdown, HTML
//! (every reply rendered: markdown, highlighting) and the JSONL as stored.
//! `cargo bench -p loopchat-relay --bench export`; figures in
//! docs/benchmarks.md.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use loopchat_proto::{Content, ExportFormat, Role};
use loopchat_relay::store::{NewMessage, Store};
use loopchat_relay::transfer::export::{Meta, export};

/// A chat of `n` messages: short questions, replies of a few paragraphs,
/// one reply in ten with a 12-line Rust block.
fn build(dir: &std::path::Path, n: usize) -> (Store, String) {
    let store = Store::open(dir, Arc::new(|_| {})).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let entry = rt.block_on(store.get_or_create("bench")).unwrap();
    let t = store.transcript(&entry.session_id).unwrap();
    for i in 0..n {
        let (role, text) = if i % 2 == 0 {
            (
                Role::User,
                format!("question {i}: how do I do **this** in Rust?"),
            )
        } else if i % 20 == 1 {
            let code: String = (0..12)
                .map(|l| format!("    let x{l} = compute({l}) * 2; // step {l}\n"))
                .collect();
            (
                Role::Assistant,
                format!(
                    "Like this:\n\n```rust\nfn answer_{i}() {{\n{code}}}\n```\n\nThen call it."
                ),
            )
        } else {
            (
                Role::Assistant,
                format!(
                    "Answer {i}. {}\n\n- one point\n- another `point`\n\nAnd a [link](https://example.com/{i}).",
                    "Some prose about the question, with *emphasis*. ".repeat(4)
                ),
            )
        };
        t.append(&NewMessage::new(
            role,
            Content::Text(text),
            1_700_000_000_000 + i as i64 * 1000,
        ))
        .unwrap();
    }
    (store, entry.session_id)
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (store, session_id) = build(dir.path(), 5_000);
    let meta = Meta {
        key: "bench",
        title: Some("a 5,000-message chat"),
        exported_at_ms: 1_700_000_000_000,
    };
    let mut group = c.benchmark_group("export_5000_messages");
    group.sample_size(20);
    for format in [ExportFormat::Jsonl, ExportFormat::Md, ExportFormat::Html] {
        group.bench_function(format.extension(), |b| {
            b.iter(|| {
                // A fresh store: nothing of the session in memory, as for a
                // session not opened since the relay started.
                let store = Store::open(dir.path(), Arc::new(|_| {})).unwrap();
                let t = store.transcript(&session_id).unwrap();
                export(&t, format, &meta, &|_| None).unwrap()
            })
        });
    }
    group.finish();
    drop(store);
}

criterion_group!(benches, bench);
criterion_main!(benches);
