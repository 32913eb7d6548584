//! One run of a check: the command in its own process group, stdout and
//! stderr into one pipe whose tail is kept, killed (the whole group) at the
//! timeout, and the group ended after the command exits too, so nothing a
//! check started outlives its run.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use loopchat_proto::CheckRun;

/// Output kept per run (the tail), bytes.
pub const OUTPUT_TAIL: usize = 4096;
/// After SIGTERM, how long the group has before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// After the command ends, how long its output may still take to drain.
const DRAIN: Duration = Duration::from_millis(500);

pub struct Spec<'a> {
    pub argv: &'a [String],
    pub cwd: &'a Path,
    pub timeout: Duration,
    /// Passed as `$LOOPCHAT_ALERT_IMAGE`.
    pub image_path: &'a Path,
    pub name: &'a str,
    pub trigger: &'a str,
}

pub async fn run(spec: Spec<'_>) -> CheckRun {
    let started_at = crate::clock::now_rfc3339();
    let started = Instant::now();
    let mut run = CheckRun {
        started_at,
        trigger: spec.trigger.to_owned(),
        ..Default::default()
    };
    match spawn_and_wait(&spec, &mut run).await {
        Ok(()) => {}
        Err(e) => {
            run.error = Some(format!("cannot run {:?}: {e}", spec.argv[0]));
            run.output = run.error.clone().unwrap_or_default();
        }
    }
    run.duration_ms = started.elapsed().as_millis() as u64;
    run.ended_at = crate::clock::now_rfc3339();
    run
}

async fn spawn_and_wait(spec: &Spec<'_>, run: &mut CheckRun) -> std::io::Result<()> {
    let (reader, writer) = std::io::pipe()?;
    let mut cmd = tokio::process::Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .current_dir(spec.cwd)
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer)
        .env("LOOPCHAT_ALERT_IMAGE", spec.image_path)
        .env("LOOPCHAT_CHECK", spec.name)
        // Its own group: the timeout ends everything it started.
        .process_group(0)
        .kill_on_drop(true);
    // The relay's own secrets are not the check's business.
    cmd.env_remove("LOOPCHAT_TOKEN")
        .env_remove("LOOPCHAT_OPENAI_API_KEY");
    let mut child = cmd.spawn()?;
    // The parent's copies of the write end are gone with `cmd`.
    drop(cmd);
    let pgid = child.id().map(|p| p as i32);
    // If this future is dropped mid-run (the relay shutting down), the
    // group still goes: `kill_on_drop` alone would spare its children.
    let _group = GroupGuard(pgid);
    // Async, not a blocking thread: a process that escaped the group (its
    // own session) and holds the pipe open must not keep a thread, or the
    // relay's shutdown, waiting for its EOF.
    let reader =
        tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(reader))?;
    let collector = tokio::spawn(collect(reader));
    let status = tokio::select! {
        s = child.wait() => Some(s?),
        _ = tokio::time::sleep(spec.timeout) => None,
    };
    match status {
        Some(s) => {
            run.exit_code = s.code();
            // Leftovers (a backgrounded child) go with the run.
            if let Some(g) = pgid {
                signal_group(g, libc::SIGKILL);
            }
        }
        None => {
            run.timed_out = true;
            if let Some(g) = pgid {
                signal_group(g, libc::SIGTERM);
            }
            if tokio::time::timeout(TERM_GRACE, child.wait())
                .await
                .is_err()
                && let Some(g) = pgid
            {
                signal_group(g, libc::SIGKILL);
            }
            if let Some(g) = pgid {
                signal_group(g, libc::SIGKILL);
            }
            let _ = child.wait().await;
        }
    }
    let abort = collector.abort_handle();
    let (tail, dropped) = match tokio::time::timeout(DRAIN, collector).await {
        Ok(Ok(r)) => r,
        _ => {
            abort.abort();
            (Vec::new(), 0)
        }
    };
    run.output = String::from_utf8_lossy(&tail).into_owned();
    run.output_dropped = dropped;
    if run.timed_out {
        run.output.push_str(&format!(
            "\n[killed after {} s]",
            spec.timeout.as_secs_f64()
        ));
    }
    Ok(())
}

struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(g) = self.0 {
            signal_group(g, libc::SIGKILL);
        }
    }
}

fn signal_group(pgid: i32, sig: i32) {
    // SAFETY: kill(2) with a negative pid signals that process group; the
    // group is the child's own (process_group(0)), never the relay's.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

/// Reads to EOF, keeping the last [`OUTPUT_TAIL`] bytes; returns them and
/// how many were dropped before.
async fn collect(mut reader: tokio::net::unix::pipe::Receiver) -> (Vec<u8>, u64) {
    use tokio::io::AsyncReadExt;
    let mut tail: Vec<u8> = Vec::with_capacity(OUTPUT_TAIL * 2);
    let mut dropped = 0u64;
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * OUTPUT_TAIL {
                    let cut = tail.len() - OUTPUT_TAIL;
                    dropped += cut as u64;
                    tail.drain(..cut);
                }
            }
        }
    }
    if tail.len() > OUTPUT_TAIL {
        let cut = tail.len() - OUTPUT_TAIL;
        dropped += cut as u64;
        tail.drain(..cut);
    }
    // Start on a character boundary.
    let skip = tail
        .iter()
        .take(3)
        .take_while(|b| (**b & 0xC0) == 0x80)
        .count();
    tail.drain(..skip);
    (tail, dropped)
}
