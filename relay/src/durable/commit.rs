//! Group commit: many writers, one flush.
//!
//! `fdatasync` costs around half a millisecond on this class of disk. A turn
//! must be durable before it is acknowledged, but paying one flush per turn
//! caps throughput at ~2,000 turns/s. Writers instead register a generation
//! after their write and wait until some flush that *started after* their
//! write has finished; whoever finds no flush running starts one on behalf of
//! everyone waiting. Flushes of different files run concurrently and ext4's
//! journal merges them.
//!
//! For a file that is appended to, a failed flush fails every write it
//! covered, for good. Linux reports a writeback error to `fsync` once and then
//! marks the pages clean, so the next flush succeeds although those writes may
//! never reach the disk (PostgreSQL's "fsyncgate"). A waiter must therefore
//! never be covered by a flush after one that failed for it; writes
//! registered after the failure are unaffected. A file rewritten whole by
//! each flush (the session index) has no such hole: the next flush writes
//! everything again, so it may cover the waiters of one that failed.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// A write or flush slower than this is logged: it explains a latency
/// spike that would otherwise look like the relay's own doing.
pub(crate) const SLOW_IO: Duration = Duration::from_millis(250);

/// Logs `what` when it took longer than [`SLOW_IO`] since `started`.
pub(crate) fn note_slow_io(what: &'static str, started: Instant) {
    let took = started.elapsed();
    if took >= SLOW_IO {
        tracing::warn!(took_ms = took.as_millis() as u64, "slow disk: {what}");
    }
}

/// What one flush makes durable, which decides what a failed one means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlushKind {
    /// `fdatasync` of a file that is appended to: a failure loses writes.
    Appended,
    /// The whole state written anew (temp file, fsync, rename): a later
    /// flush repairs a failed one.
    Rewritten,
}

#[derive(Debug, Default)]
struct CommitState {
    /// Latest generation handed out to a writer.
    requested: u64,
    /// Every generation up to this one is durable, except those in `failed`.
    durable: u64,
    running: bool,
    /// Generations whose flush failed, newest last (appended files only).
    failed: VecDeque<FailedFlush>,
    /// The first failure, kept for [`GroupCommit::first_failure`].
    first_failure: Option<FailedFlush>,
}

/// Failures kept for waiters that have not looked yet. Every waiter of a
/// failed flush is already waiting when it fails and looks at once, so a
/// handful is plenty; the cap only bounds a disk failing for hours.
const FAILURES_KEPT: usize = 64;

#[derive(Debug, Clone)]
struct FailedFlush {
    /// The generations `(after, through]`: what the flush was to make durable.
    after: u64,
    through: u64,
    raw_os_error: Option<i32>,
    kind: io::ErrorKind,
    message: String,
}

impl FailedFlush {
    fn covers(&self, generation: u64) -> bool {
        self.after < generation && generation <= self.through
    }

    /// The same error for each waiter (`io::Error` is not `Clone`); the OS
    /// error number is kept so that a full disk still reads as one.
    fn error(&self) -> io::Error {
        match self.raw_os_error {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::new(self.kind, self.message.clone()),
        }
    }
}

/// The state a flush records its outcome in. Shared with the flush's own
/// blocking task, which records it even when the waiter that started the
/// flush has gone away.
#[derive(Debug)]
struct Shared {
    kind: FlushKind,
    state: Mutex<CommitState>,
    changed: watch::Sender<()>,
}

#[derive(Debug)]
pub(crate) struct GroupCommit {
    shared: Arc<Shared>,
}

impl GroupCommit {
    pub(crate) fn new(kind: FlushKind) -> Self {
        Self {
            shared: Arc::new(Shared {
                kind,
                state: Mutex::new(CommitState::default()),
                changed: watch::channel(()).0,
            }),
        }
    }

    /// The first flush that failed, if any did (appended files only). A
    /// reader that acknowledges what it read back from the file cannot tell
    /// which writes that failure lost, so it must not vouch for any of them.
    pub(crate) fn first_failure(&self) -> Option<io::Error> {
        let st = self.shared.state.lock();
        st.first_failure.as_ref().map(FailedFlush::error)
    }

    /// Registers a completed write; call it while still holding the lock
    /// that ordered the write, so generations follow file order.
    pub(crate) fn bump(&self) -> u64 {
        let mut st = self.shared.state.lock();
        st.requested += 1;
        st.requested
    }

    /// Returns once generation `generation` is durable, running `flush` (a
    /// blocking job that must make every write registered so far durable)
    /// when no flush is in progress.
    ///
    /// Cancel-safe: a waiter dropped mid-flush (an HTTP handler whose client
    /// hung up) leaves the flush running on its blocking thread, which still
    /// records the outcome and wakes the others. Were the outcome recorded
    /// here, after the await, a dropped waiter would leave `running` set and
    /// every later writer of the file waiting forever.
    pub(crate) async fn wait<F>(&self, generation: u64, flush: F) -> io::Result<()>
    where
        F: FnOnce() -> io::Result<()> + Clone + Send + 'static,
    {
        loop {
            // Subscribe before looking at the state so that a flush finishing
            // in between cannot be missed.
            let mut rx = self.shared.changed.subscribe();
            let target = {
                let mut st = self.shared.state.lock();
                if let Some(failed) = st.failed.iter().find(|f| f.covers(generation)) {
                    return Err(failed.error());
                }
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
            let shared = self.shared.clone();
            let job = flush.clone();
            let flushed = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                // A panicking flush must still clear `running`.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                    .unwrap_or_else(|_| Err(io::Error::other("the flush panicked")));
                note_slow_io("a flush (fdatasync)", started);
                shared.record(target, &result);
                result
            });
            return flushed.await.unwrap_or_else(|e| Err(io::Error::other(e)));
        }
    }
}

impl Shared {
    /// The end of the flush that was to make everything through `target`
    /// durable: its outcome, then everyone woken (those it covered are done
    /// or failed; later writers start the next flush).
    fn record(&self, target: u64, result: &io::Result<()>) {
        {
            let mut st = self.state.lock();
            st.running = false;
            match result {
                Ok(()) => st.durable = st.durable.max(target),
                Err(_) if self.kind == FlushKind::Rewritten => {}
                Err(e) => {
                    if st.failed.len() == FAILURES_KEPT {
                        st.failed.pop_front();
                    }
                    let failed = FailedFlush {
                        after: st.durable,
                        through: target,
                        raw_os_error: e.raw_os_error(),
                        kind: e.kind(),
                        message: e.to_string(),
                    };
                    st.first_failure.get_or_insert_with(|| failed.clone());
                    st.failed.push_back(failed);
                }
            }
        }
        self.changed.send_replace(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_waiters_share_flushes() {
        let commit = Arc::new(GroupCommit::new(FlushKind::Appended));
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
    async fn a_failed_flush_fails_its_writes_for_good_but_not_later_ones() {
        let commit = GroupCommit::new(FlushKind::Appended);
        let first = commit.bump();
        let second = commit.bump();
        let err = commit
            .wait(first, || Err(io::Error::from_raw_os_error(libc::EIO)))
            .await
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        // Linux would now report success for a flush of the same file, with
        // those writes lost: no flush may cover them after the failure.
        for generation in [first, second] {
            let again = commit.wait(generation, || Ok(())).await.unwrap_err();
            assert_eq!(again.raw_os_error(), Some(libc::EIO), "{generation}");
        }
        // A write after the failure is made durable as usual.
        let third = commit.bump();
        commit.wait(third, || Ok(())).await.unwrap();
        let err = commit.wait(second, || Ok(())).await.unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        let first_failure = commit.first_failure().expect("remembered");
        assert_eq!(first_failure.raw_os_error(), Some(libc::EIO));
    }

    #[tokio::test]
    async fn a_rewritten_file_is_repaired_by_the_next_flush() {
        let commit = GroupCommit::new(FlushKind::Rewritten);
        let generation = commit.bump();
        let failed = commit.wait(generation, || Err(io::Error::other("disk on fire")));
        assert!(failed.await.is_err());
        // The next flush writes the whole state again, this write included.
        commit.wait(generation, || Ok(())).await.unwrap();
        assert!(commit.first_failure().is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_waiter_of_a_failed_flush_sees_the_failure() {
        // 32 writers, one failing flush that covers whoever registered before
        // it ran: none of them may be acknowledged by the flush after it.
        let commit = Arc::new(GroupCommit::new(FlushKind::Appended));
        let flushes = Arc::new(AtomicU64::new(0));
        let gate = Arc::new(tokio::sync::Barrier::new(33));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (commit, flushes, gate) = (commit.clone(), flushes.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                let generation = commit.bump();
                gate.wait().await;
                let result = commit
                    .wait(generation, move || {
                        if flushes.fetch_add(1, Ordering::SeqCst) == 0 {
                            Err(io::Error::from_raw_os_error(libc::ENOSPC))
                        } else {
                            Ok(())
                        }
                    })
                    .await;
                (generation, result)
            }));
        }
        gate.wait().await;
        for t in tasks {
            let (generation, result) = t.await.unwrap();
            // All 32 registered before any flush started, so the first flush
            // (the failing one) covered every one of them.
            let err = result.expect_err("acknowledged after a failed flush");
            assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{generation}");
        }
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_dropped_mid_flush_does_not_stall_the_next_writer() {
        // The waiter running a flush is cancelled while the flush is on its
        // blocking thread (a client hung up). The flush must still count,
        // and the next writer must get its own flush, not wait forever.
        let commit = Arc::new(GroupCommit::new(FlushKind::Appended));
        let started = Arc::new(tokio::sync::Notify::new());
        let release = Arc::new(std::sync::Barrier::new(2));
        let first = commit.bump();
        let leader = {
            let (commit, started, release) = (commit.clone(), started.clone(), release.clone());
            tokio::spawn(async move {
                commit
                    .wait(first, move || {
                        started.notify_one();
                        release.wait();
                        Ok(())
                    })
                    .await
            })
        };
        started.notified().await;
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        tokio::task::spawn_blocking(move || release.wait())
            .await
            .unwrap();
        let second = commit.bump();
        let bounded = std::time::Duration::from_secs(10);
        tokio::time::timeout(bounded, commit.wait(second, || Ok(())))
            .await
            .expect("the next writer waits forever for a flush nobody runs")
            .unwrap();
        // The cancelled waiter's write was made durable by its flush.
        tokio::time::timeout(
            bounded,
            commit.wait(first, || Err(io::Error::other("not needed"))),
        )
        .await
        .unwrap()
        .unwrap();
    }
}
