//! Replays every seed of `fuzz/corpus/<target>/` and every kept crasher of
//! `fuzz/regressions/<target>/` through the harness its fuzz target runs,
//! so the invariants and the fixes for past findings are checked by the
//! ordinary `cargo test` (no nightly, no libFuzzer). See docs/fuzzing.md.

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

use loopchat_relay::fuzzing::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = read
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_target_has_a_fuzz_target_and_seeds() {
    for (name, _) in TARGETS {
        let target = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(target.is_file(), "{} is missing", target.display());
        let seeds = inputs(&fuzz_dir().join("corpus").join(name));
        assert!(!seeds.is_empty(), "no seed corpus for {name}");
    }
}

#[test]
fn seeds_and_regressions_replay_clean() {
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, harness) in TARGETS {
        for kind in ["corpus", "regressions"] {
            for file in inputs(&fuzz_dir().join(kind).join(name)) {
                let data = fs::read(&file).expect("readable input");
                ran += 1;
                if panic::catch_unwind(|| harness(&data)).is_err() {
                    failed.push(file.display().to_string());
                }
            }
        }
    }
    assert!(ran > 0);
    assert!(failed.is_empty(), "inputs that fail: {failed:#?}");
}
