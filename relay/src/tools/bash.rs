//! `bash`: a command in the workspace, in its own process group, with a
//! timeout and an output cap, its output streamed as it comes.
//!
//! When the command ends — exit, timeout, abort or the cap — the whole
//! process group is killed (SIGKILL), so nothing it started in the
//! background outlives the call or holds its pipes open. The model sees the
//! tail of the output as pi shows it (2000 lines or 50 KB).

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::truncate::{MAX_BYTES, MAX_LINES, TruncatedBy, format_size, truncate_tail};
use super::{Output, Workspace, arg_str};

pub const DESCRIPTION: &str = "Execute a bash command in the current working directory. Returns stdout and stderr. Output is truncated to last 2000 lines or 50KB (whichever is hit first). Optionally provide a timeout in seconds.";

/// Bytes of the output's end kept to build the model's view of it.
const KEEP_BYTES: usize = 2 * MAX_BYTES;

pub fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "Bash command to execute"},
            "timeout": {"type": "number", "description": "Timeout in seconds (optional, no default timeout)"}
        },
        "required": ["command"]
    })
}

#[derive(Debug, Clone)]
pub struct BashLimits {
    /// Used when the call gives none, and the most a call may ask for.
    pub default_timeout: Duration,
    pub max_timeout: Duration,
    /// Output beyond this many bytes (stdout and stderr together) kills
    /// the command.
    pub output_limit: usize,
    /// Output streamed to the session's event log per call; the rest is
    /// only counted (the result still has its tail).
    pub stream_limit: usize,
}

impl Default for BashLimits {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(120),
            max_timeout: Duration::from_secs(3600),
            output_limit: 16 * 1024 * 1024,
            stream_limit: 1024 * 1024,
        }
    }
}

enum Ended {
    Exited(std::process::ExitStatus),
    Timeout(Duration),
    Aborted,
    Capped,
}

/// Runs the call. `env` is the whole environment of the command (already
/// cleaned of the relay's secrets); `on_output` gets the output as text, in
/// order, as it arrives.
pub async fn run(
    ws: &Workspace,
    args: &Value,
    env: &[(OsString, OsString)],
    limits: &BashLimits,
    on_output: &(dyn Fn(String) + Send + Sync),
    cancel: &CancellationToken,
) -> Output {
    let command = arg_str(args, "command");
    let timeout = match args.get("timeout").and_then(Value::as_f64) {
        Some(t) if t > 0.0 => Duration::from_secs_f64(t.min(limits.max_timeout.as_secs_f64())),
        _ => limits.default_timeout,
    };
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-c")
        .arg(command)
        .current_dir(ws.root())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let spawned = std::time::Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Output::error(format!("Could not start bash: {e}")),
    };
    let pgid = child.id();
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        kill_group(pgid);
        return Output::error("Could not start bash: no pipes");
    };
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut sink = Sink::new(limits.stream_limit, on_output);
    let (mut out_open, mut err_open) = (true, true);
    let mut exited: Option<std::process::ExitStatus> = None;
    let (mut b1, mut b2) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let ended = loop {
        if exited.is_some() && !out_open && !err_open {
            break Ended::Exited(exited.take().unwrap_or_default());
        }
        if sink.total > limits.output_limit {
            break Ended::Capped;
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => break Ended::Aborted,
            () = &mut deadline => break Ended::Timeout(timeout),
            n = out.read(&mut b1), if out_open => match n {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => {
                    if sink.total == 0 {
                        tracing::debug!(target: "loopchat_relay::timing", step = "bash_first_byte", us = spawned.elapsed().as_micros() as u64, "bash spawn to first output byte");
                    }
                    sink.push(&b1[..n]);
                }
            },
            n = err.read(&mut b2), if err_open => match n {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => sink.push(&b2[..n]),
            },
            s = child.wait(), if exited.is_none() => match s {
                Ok(s) => {
                    exited = Some(s);
                    // Whatever the shell left running in the background
                    // goes with it; its pipes then close.
                    kill_group(pgid);
                }
                Err(e) => {
                    kill_group(pgid);
                    return Output::error(format!("Could not wait for bash: {e}"));
                }
            },
        }
    };
    kill_group(pgid);
    if exited.is_none() {
        let _ = child.wait().await;
    }
    sink.flush();
    let text = sink.model_text();
    let with = |status: String| {
        if text.is_empty() {
            status
        } else {
            format!("{text}\n\n{status}")
        }
    };
    match ended {
        Ended::Exited(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(0), _) => Output::text(if text.is_empty() {
                "(no output)".into()
            } else {
                text
            }),
            (Some(c), _) => Output::error(with(format!("Command exited with code {c}"))),
            (None, Some(sig)) => Output::error(with(format!("Command was killed by signal {sig}"))),
            (None, None) => Output::error(with("Command ended without an exit code".into())),
        },
        Ended::Timeout(t) => Output::error(with(format!(
            "Command timed out after {} seconds",
            t.as_secs_f64()
        ))),
        Ended::Aborted => Output::error(with("Command aborted".into())),
        Ended::Capped => Output::error(with(format!(
            "Command killed: its output passed the {} limit",
            format_size(limits.output_limit)
        ))),
    }
}

/// SIGKILL to the process group led by `pid` (it is its own leader).
fn kill_group(pid: Option<u32>) {
    if let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 0) {
        // SAFETY: kill(2) with a negative pid signals that process group;
        // no memory is involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

/// The output as it streams: counted, its end kept, and passed on as text
/// (UTF-8 sequences cut between reads are joined first).
struct Sink<'a> {
    total: usize,
    newlines: usize,
    tail: Vec<u8>,
    trimmed: bool,
    pending: Vec<u8>,
    streamed: usize,
    stream_limit: usize,
    on_output: &'a (dyn Fn(String) + Send + Sync),
}

impl<'a> Sink<'a> {
    fn new(stream_limit: usize, on_output: &'a (dyn Fn(String) + Send + Sync)) -> Self {
        Self {
            total: 0,
            newlines: 0,
            tail: Vec::new(),
            trimmed: false,
            pending: Vec::new(),
            streamed: 0,
            stream_limit,
            on_output,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len();
        self.newlines += bytes.iter().filter(|b| **b == b'\n').count();
        self.tail.extend_from_slice(bytes);
        if self.tail.len() > 2 * KEEP_BYTES {
            let cut = self.tail.len() - KEEP_BYTES;
            self.tail.drain(..cut);
            self.trimmed = true;
        }
        if self.streamed >= self.stream_limit {
            return;
        }
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        if valid == 0 {
            return;
        }
        let chunk: Vec<u8> = self.pending.drain(..valid).collect();
        self.emit(String::from_utf8_lossy(&chunk).into_owned());
    }

    fn emit(&mut self, mut text: String) {
        let room = self.stream_limit - self.streamed;
        if text.len() > room {
            let mut cut = room;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            self.streamed = self.stream_limit;
        } else {
            self.streamed += text.len();
        }
        (self.on_output)(text);
        if self.streamed >= self.stream_limit {
            (self.on_output)(format!(
                "\n[output beyond {} is not streamed; the result shows its end]\n",
                format_size(self.stream_limit)
            ));
        }
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() && self.streamed < self.stream_limit {
            let rest = std::mem::take(&mut self.pending);
            self.emit(String::from_utf8_lossy(&rest).into_owned());
        }
    }

    /// pi's view: the last 2000 lines or 50 KB, with a note when cut.
    fn model_text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.tail).into_owned();
        if self.trimmed
            && let Some(nl) = text.find('\n')
        {
            text.drain(..=nl);
        }
        let t = truncate_tail(&text, MAX_LINES, MAX_BYTES);
        let Some(by) = t
            .truncated_by
            .or(self.trimmed.then_some(TruncatedBy::Bytes))
        else {
            return t.content;
        };
        let total_lines = self.newlines + 1;
        let end = total_lines;
        let start = total_lines + 1 - t.output_lines.max(1);
        let note = if t.last_line_partial {
            format!(
                "[Showing last {} of line {end}.]",
                format_size(t.output_bytes)
            )
        } else if by == TruncatedBy::Lines {
            format!("[Showing lines {start}-{end} of {total_lines}.]")
        } else {
            format!(
                "[Showing lines {start}-{end} of {total_lines} ({} limit).]",
                format_size(MAX_BYTES)
            )
        };
        format!("{}\n\n{note}", t.content)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use std::sync::Arc;

    struct Run {
        out: Output,
        streamed: String,
    }

    async fn bash(
        args: Value,
        limits: BashLimits,
        cancel: CancellationToken,
    ) -> (tempfile::TempDir, Run) {
        let d = tempfile::tempdir().unwrap();
        let ws = Workspace::new(d.path(), true).unwrap();
        let streamed = Arc::new(Mutex::new(String::new()));
        let s2 = streamed.clone();
        let on = move |t: String| s2.lock().push_str(&t);
        let env = vec![(OsString::from("PATH"), std::env::var_os("PATH").unwrap())];
        let out = run(&ws, &args, &env, &limits, &on, &cancel).await;
        let streamed = streamed.lock().clone();
        (d, Run { out, streamed })
    }

    #[tokio::test]
    async fn output_and_exit_codes() {
        let (d, r) = bash(
            json!({"command": "echo out; echo err >&2; pwd"}),
            BashLimits::default(),
            CancellationToken::new(),
        )
        .await;
        assert!(!r.out.is_error, "{:?}", r.out);
        let text = r.out.text_of();
        assert!(text.contains("out") && text.contains("err"));
        assert!(text.contains(&*std::fs::canonicalize(d.path()).unwrap().to_string_lossy()));
        assert!(r.streamed.contains("out") && r.streamed.contains("err"));
        let (_d, r) = bash(
            json!({"command": "echo x; exit 3"}),
            BashLimits::default(),
            CancellationToken::new(),
        )
        .await;
        assert!(r.out.is_error);
        assert_eq!(r.out.text_of(), "x\n\n\nCommand exited with code 3");
        let (_d, r) = bash(
            json!({"command": "true"}),
            BashLimits::default(),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(r.out.text_of(), "(no output)");
    }

    #[tokio::test]
    async fn environment_is_only_what_is_given() {
        let (_d, r) = bash(
            json!({"command": "env"}),
            BashLimits::default(),
            CancellationToken::new(),
        )
        .await;
        let text = r.out.text_of();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| {
                !l.starts_with("PWD=")
                    && !l.starts_with("SHLVL=")
                    && !l.starts_with("_=")
                    && !l.is_empty()
            })
            .map(|l| l.split('=').next().unwrap())
            .collect();
        assert_eq!(lines, vec!["PATH"]);
    }

    #[tokio::test]
    async fn timeout_kills_the_group() {
        let marker = format!("loopchat-bash-test-{}", std::process::id());
        let limits = BashLimits {
            default_timeout: Duration::from_millis(300),
            ..BashLimits::default()
        };
        // A background child that would outlive the shell.
        let cmd = format!("(exec -a {marker} sleep 30) & echo started; sleep 30");
        let (_d, r) = bash(json!({"command": cmd}), limits, CancellationToken::new()).await;
        assert!(r.out.is_error);
        assert!(
            r.out.text_of().starts_with("started"),
            "{}",
            r.out.text_of()
        );
        assert!(
            r.out
                .text_of()
                .ends_with("Command timed out after 0.3 seconds"),
            "{}",
            r.out.text_of()
        );
        assert!(!process_named(&marker), "the background sleep survived");
    }

    #[tokio::test]
    async fn background_children_die_with_the_shell() {
        let marker = format!("loopchat-bash-bg-{}", std::process::id());
        let cmd = format!("(exec -a {marker} sleep 30) & echo done");
        let (_d, r) = bash(
            json!({"command": cmd}),
            BashLimits::default(),
            CancellationToken::new(),
        )
        .await;
        assert_eq!(r.out.text_of(), "done\n");
        assert!(!process_named(&marker));
    }

    #[tokio::test]
    async fn abort_kills_the_group() {
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c2.cancel();
        });
        let (_d, r) = bash(
            json!({"command": "sleep 30"}),
            BashLimits::default(),
            cancel,
        )
        .await;
        assert_eq!(r.out.text_of(), "Command aborted");
    }

    #[tokio::test]
    async fn output_cap_and_tail() {
        let limits = BashLimits {
            output_limit: 1024 * 1024,
            stream_limit: 10 * 1024,
            ..BashLimits::default()
        };
        let (_d, r) = bash(
            json!({"command": "yes loopchat"}),
            limits,
            CancellationToken::new(),
        )
        .await;
        let text = r.out.text_of();
        assert!(r.out.is_error);
        assert!(
            text.ends_with("Command killed: its output passed the 1.0MB limit"),
            "{}",
            &text[text.len() - 200..]
        );
        // 2000 lines of "loopchat" are less than 50 KB: cut by lines.
        assert!(
            text.contains("[Showing lines "),
            "{}",
            &text[text.len() - 200..]
        );
        // (the last one may be cut where the kill came)
        let whole = text.lines().filter(|l| *l == "loopchat").count();
        assert!((1999..=2000).contains(&whole), "{whole}");
        assert!(r.streamed.len() < 12 * 1024);
        assert!(r.streamed.contains("is not streamed"));
        let (_d, r) = bash(
            json!({"command": "seq 1 3000"}),
            BashLimits::default(),
            CancellationToken::new(),
        )
        .await;
        let text = r.out.text_of();
        assert!(text.starts_with("1002\n"), "{}", &text[..20]);
        assert!(
            text.ends_with("[Showing lines 1002-3001 of 3001.]"),
            "{}",
            &text[text.len() - 60..]
        );
    }

    /// Whether a live process has `marker` in its command line, waiting
    /// (bounded) for a killed one to be gone: SIGKILL is asynchronous.
    fn process_named(marker: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(marker) {
            if std::time::Instant::now() > deadline {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn alive(marker: &str) -> bool {
        std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
                && std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| !s.contains(") Z "))
        })
    }
}
