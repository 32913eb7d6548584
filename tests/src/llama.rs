//! The suites' real OpenAI-compatible server: llama-cpp-python serving the
//! tiny generated model of `tests/support/llama`, started per suite.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn cache_dir() -> PathBuf {
    match std::env::var_os("LOOPCHAT_TEST_CACHE") {
        Some(d) => PathBuf::from(d),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/loopchat-tests")
        }
    }
}

pub fn llama_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support/llama")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real server process; killed on drop.
pub struct Llama {
    child: Child,
    pub port: u16,
    output: Arc<Mutex<String>>,
}

impl Llama {
    /// `None` (with the reason printed) when `LOOPCHAT_SKIP_LLAMA=1`.
    pub async fn start() -> Option<Llama> {
        if std::env::var("LOOPCHAT_SKIP_LLAMA").is_ok_and(|v| v == "1") {
            eprintln!("SKIPPED: LOOPCHAT_SKIP_LLAMA=1 is set, the llama server tests do not run");
            return None;
        }
        let venv = cache_dir().join("llama-venv");
        assert!(
            venv.join("bin/python").exists() && venv.join(".loopchat-stamp").exists(),
            "the llama test server is not set up ({} is missing or incomplete): \
             run tests/support/llama/setup.sh first (about 8 minutes on a fresh machine), \
             or set LOOPCHAT_SKIP_LLAMA=1 to skip these tests",
            venv.display()
        );
        let port = free_port();
        let mut child = Command::new(llama_dir().join("serve.sh"))
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tests/support/llama/serve.sh");
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut o = output.lock().unwrap();
                    o.push_str(&line);
                    o.push('\n');
                }
            });
        }
        let mut llama = Llama {
            child,
            port,
            output,
        };
        // An external process: poll until it answers, with a bounded deadline.
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let url = format!("http://127.0.0.1:{port}/v1/models");
            if let Ok(r) = http.get(&url).send().await
                && r.status().is_success()
            {
                return Some(llama);
            }
            if let Ok(Some(status)) = llama.child.try_wait() {
                panic!("the llama server exited ({status}):\n{}", llama.output());
            }
            assert!(
                Instant::now() < deadline,
                "the llama server did not answer within 120 s:\n{}",
                llama.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits (bounded: an external process) until its output has `needle`
    /// `count` times.
    pub async fn wait_output(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.output().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "the llama server never printed {needle:?} ({count}×):\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Llama {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
