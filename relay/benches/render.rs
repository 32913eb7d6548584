//! Markdown → sanitized HTML of one reply (`render::markdown_to_html`):
//! a 2,000-line Rust code block (highlighted), and prose with formulas.
//! `cargo bench -p loopchat-relay --bench render`; figures in
//! docs/benchmarks.md.

use criterion::{Criterion, criterion_group, criterion_main};
use loopchat_relay::render::markdown_to_html;

fn code_reply(lines: usize) -> String {
    let mut s = String::from("Here is the file:\n\n```rust\n");
    for i in 0..lines {
        match i % 4 {
            0 => s.push_str(&format!("fn step_{i}(x: u64) -> u64 {{\n")),
            1 => s.push_str("    // double it, then add a constant\n"),
            2 => s.push_str(&format!("    x * 2 + {i} // \"{i}\"\n")),
            _ => s.push_str("}\n"),
        }
    }
    s.push_str("```\n");
    s
}

fn math_reply() -> String {
    "The mean is $\\bar{x} = \\frac{1}{n}\\sum_{i=1}^n x_i$ and\n\n$$\\sigma^2 = \\frac{1}{n}\\sum_{i=1}^n (x_i - \\bar{x})^2$$\n\n"
        .repeat(20)
}

fn bench(c: &mut Criterion) {
    let code = code_reply(2000);
    c.bench_function("render 2000-line rust block", |b| {
        b.iter(|| markdown_to_html(&code))
    });
    let plain = code.replace("```rust", "```");
    c.bench_function("render 2000-line plain block", |b| {
        b.iter(|| markdown_to_html(&plain))
    });
    let math = math_reply();
    c.bench_function("render 40 paragraphs with 60 formulas", |b| {
        b.iter(|| markdown_to_html(&math))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
