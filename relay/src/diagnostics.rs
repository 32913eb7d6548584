//! What a failing peer said, turned into an error message a person can act
//! on, with bounded memory however much the peer sends: the error's causes,
//! the start of an HTTP answer, the end of a child process's stderr. Shared
//! by the agents (`agent::openai`, `agent::command`) and the delivery
//! targets (`notify::targets`).

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt};

pub use loopchat_proto::error_chain;

/// The first `limit` bytes of a body; the rest is not read.
pub async fn read_start<S, E>(body: &mut S, limit: usize) -> Vec<u8>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let mut out = Vec::new();
    while out.len() < limit {
        match body.next().await {
            Some(Ok(b)) => out.extend_from_slice(&b),
            _ => break,
        }
    }
    out.truncate(limit);
    out
}

/// The last `keep` bytes of `pipe`, read to its end (so that the writer
/// never blocks on a full pipe) while holding at most twice that.
pub async fn read_tail(mut pipe: impl AsyncRead + Unpin, keep: usize) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n @ 1..) = pipe.read(&mut chunk).await {
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > 2 * keep {
            tail.drain(..tail.len() - keep);
        }
    }
    tail.drain(..tail.len().saturating_sub(keep));
    tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_are_bounded_at_either_end() {
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(read_tail(&big[..], 300).await, big[big.len() - 300..]);
        assert_eq!(read_tail(&b"short"[..], 300).await, b"short");
        let chunks = big
            .chunks(1000)
            .map(|c| Ok::<_, std::io::Error>(Bytes::copy_from_slice(c)));
        let mut body = futures_util::stream::iter(chunks);
        assert_eq!(read_start(&mut body, 2500).await, big[..2500]);
    }

    #[test]
    fn a_chain_names_each_cause_once() {
        let inner = std::io::Error::other("connection refused");
        let outer = std::io::Error::other(format!("connect failed: {inner}"));
        assert_eq!(error_chain(&outer), "connect failed: connection refused");
        #[derive(Debug, thiserror::Error)]
        #[error("error sending request")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::other("connection refused"));
        assert_eq!(error_chain(&e), "error sending request: connection refused");
    }
}
