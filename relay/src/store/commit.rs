//! Group commit: many writers, one flush.
//!
//! `fdatasync` costs around half a millisecond on this class of disk. A turn
//! must be durable before it is acknowledged, but paying one flush per turn
//! caps throughput at ~2,000 turns/s. Writers instead register a generation
//! after their write and wait until some flush that *started after* their
//! write has finished; whoever finds no flush running starts one on behalf of
//! everyone waiting. Flushes of different files run concurrently and ext4's
//! journal merges them.

use std::io;
use std::sync::Mutex;

use tokio::sync::watch;

#[derive(Debug, Default)]
struct CommitState {
    /// Latest generation handed out to a writer.
    requested: u64,
    /// Every generation up to this one is durable.
    durable: u64,
    running: bool,
}

#[derive(Debug)]
pub(crate) struct GroupCommit {
    state: Mutex<CommitState>,
    changed: watch::Sender<()>,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            state: Mutex::new(CommitState::default()),
            changed: watch::channel(()).0,
        }
    }
}

impl GroupCommit {
    /// Registers a completed write; call it while still holding the lock
    /// that ordered the write, so generations follow file order.
    pub(crate) fn bump(&self) -> u64 {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.requested += 1;
        st.requested
    }

    /// Returns once generation `generation` is durable, running `flush` (a
    /// blocking job that must make every write registered so far durable)
    /// when no flush is in progress.
    pub(crate) async fn wait<F>(&self, generation: u64, flush: F) -> io::Result<()>
    where
        F: Fn() -> io::Result<()> + Clone + Send + 'static,
    {
        loop {
            // Subscribe before looking at the state so that a flush finishing
            // in between cannot be missed.
            let mut rx = self.changed.subscribe();
            let target = {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if st.durable >= generation {
                    return Ok(());
                }
                if st.running {
                    None
                } else {
                    st.running = true;
                    Some(st.requested)
                }
            };
            let Some(target) = target else {
                // A flush is running; it may have started before our write,
                // so after it ends we look again.
                let _ = rx.changed().await;
                continue;
            };
            let job = flush.clone();
            let result = tokio::task::spawn_blocking(job)
                .await
                .unwrap_or_else(|e| Err(io::Error::other(e)));
            {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                st.running = false;
                if result.is_ok() {
                    st.durable = st.durable.max(target);
                }
            }
            // Wake everyone: on success they are done, on failure one of them
            // tries again (and reports its own error if it fails too).
            self.changed.send_replace(());
            return result;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waiters_share_flushes() {
        let commit = Arc::new(GroupCommit::default());
        let flushes = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let commit = commit.clone();
            let flushes = flushes.clone();
            tasks.push(tokio::spawn(async move {
                let generation = commit.bump();
                commit
                    .wait(generation, move || {
                        flushes.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        Ok(())
                    })
                    .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let n = flushes.load(Ordering::SeqCst);
        assert!((1..64).contains(&n), "flushes were not shared: {n}");
    }

    #[tokio::test]
    async fn failure_is_reported_and_not_marked_durable() {
        let commit = GroupCommit::default();
        let generation = commit.bump();
        let err = commit
            .wait(generation, || Err(io::Error::other("disk on fire")))
            .await;
        assert!(err.is_err());
        // A later successful flush covers it.
        commit.wait(generation, || Ok(())).await.unwrap();
    }
}
