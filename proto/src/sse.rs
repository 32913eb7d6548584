//! Server-sent events, read incrementally from a byte stream: the one
//! reader of every event stream loopchat consumes — a model server's reply
//! (the `openai` backend), the relay's own streams read by the CLI, and the
//! test suites' readers.
//!
//! Follows the WHATWG event-stream rules: a leading BOM is dropped, lines
//! end in CRLF, CR or LF (also when a chunk boundary falls between the CR
//! and the LF), `data:` lines of one event are joined with LF, `id:` sets
//! the last event id (kept across events; one holding NUL is ignored), a
//! blank line dispatches an event that has data, comments and other fields
//! are ignored, an unfinished event at the end of the stream is dropped.
//! Unlike the spec, bytes that are not UTF-8 fail the stream (a server that
//! sends them is broken, and the user should hear so).
//!
//! Each byte is looked at once whatever the chunking, and one line or
//! event may hold at most [`MAX_EVENT_BYTES`]: a server cannot make the
//! relay buffer without bound or rescan what it already has.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::Stream;

/// Longest line, and longest `data` of one event, in bytes.
pub const MAX_EVENT_BYTES: usize = 16 << 20;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Why a stream of server-sent events could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError<E> {
    /// The underlying byte stream failed.
    Transport(E),
    /// A line is not UTF-8.
    Utf8,
    /// A line or an event's data is longer than [`MAX_EVENT_BYTES`].
    TooLarge,
}

impl<E: std::fmt::Display> std::fmt::Display for SseError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(e) => e.fmt(f),
            Self::Utf8 => f.write_str("the event stream is not valid UTF-8"),
            Self::TooLarge => write!(
                f,
                "an event of the stream is larger than {} MiB",
                MAX_EVENT_BYTES >> 20
            ),
        }
    }
}

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The last event id at dispatch (empty when the stream set none).
    pub id: String,
    pub data: String,
}

impl From<Event> for String {
    fn from(e: Event) -> Self {
        e.data
    }
}

/// The incremental parser: bytes in, complete events out.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The unfinished line (before the first line: the BOM candidate).
    line: Vec<u8>,
    /// The data of the event being built, each `data:` line plus LF.
    data: String,
    /// The last byte fed was a CR: a LF right after it ends no new line.
    after_cr: bool,
    /// Past the optional BOM.
    started: bool,
    /// The last event id buffer.
    last_id: String,
    /// Dispatched events not yet taken.
    events: VecDeque<Event>,
}

/// An error of the decoder itself (no transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    Utf8,
    TooLarge,
}

impl<E> From<DecodeError> for SseError<E> {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Utf8 => Self::Utf8,
            DecodeError::TooLarge => Self::TooLarge,
        }
    }
}

impl Decoder {
    /// Feeds the next bytes of the stream. Events completed by them are
    /// queued (see [`Decoder::next_event`]) even when a later line in the
    /// same bytes fails; after an error the decoder must not be fed again.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), DecodeError> {
        if !self.started {
            let take = (BOM.len() - self.line.len()).min(bytes.len());
            self.line.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.line.len() < BOM.len() && BOM.starts_with(&self.line) {
                return Ok(());
            }
            self.started = true;
            let head = std::mem::take(&mut self.line);
            self.scan(head.strip_prefix(BOM).unwrap_or(&head))?;
        }
        self.scan(bytes)
    }

    /// The data of the next complete event.
    pub fn next_event(&mut self) -> Option<String> {
        self.events.pop_front().map(|e| e.data)
    }

    /// The next complete event with its id.
    pub fn next_event_with_id(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn scan(&mut self, mut bytes: &[u8]) -> Result<(), DecodeError> {
        while !bytes.is_empty() {
            if std::mem::take(&mut self.after_cr) && bytes[0] == b'\n' {
                bytes = &bytes[1..];
                continue;
            }
            let Some(end) = bytes.iter().position(|b| matches!(b, b'\r' | b'\n')) else {
                self.extend_line(bytes)?;
                return Ok(());
            };
            self.extend_line(&bytes[..end])?;
            self.after_cr = bytes[end] == b'\r';
            bytes = &bytes[end + 1..];
            let result = self.end_line();
            self.line.clear();
            result?;
        }
        Ok(())
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if self.line.len() + bytes.len() > MAX_EVENT_BYTES {
            return Err(DecodeError::TooLarge);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn end_line(&mut self) -> Result<(), DecodeError> {
        let line = std::str::from_utf8(&self.line).map_err(|_| DecodeError::Utf8)?;
        if line.is_empty() {
            let mut data = std::mem::take(&mut self.data);
            if !data.is_empty() {
                data.pop(); // the LF after the last data line
                self.events.push_back(Event {
                    id: self.last_id.clone(),
                    data,
                });
            }
            return Ok(());
        }
        let (name, value) = match line.split_once(':') {
            Some((name, value)) => (name, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        // Comments (empty name), `event`, `retry` and unknown fields do not
        // matter to any reader here.
        match name {
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_EVENT_BYTES {
                    return Err(DecodeError::TooLarge);
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => value.clone_into(&mut self.last_id),
            _ => {}
        }
        Ok(())
    }
}

/// A byte stream read as server-sent events: yields each event's data
/// ([`SseStream::new`]) or each [`Event`] ([`SseStream::with_ids`]).
/// After an error (its own or the transport's), it ends.
pub struct SseStream<S, T = String> {
    inner: Option<S>,
    decoder: Decoder,
    error: Option<DecodeError>,
    item: PhantomData<fn() -> T>,
}

impl<S, T> SseStream<S, T> {
    fn over(inner: S) -> Self {
        Self {
            inner: Some(inner),
            decoder: Decoder::default(),
            error: None,
            item: PhantomData,
        }
    }
}

impl<S> SseStream<S, String> {
    pub fn new(inner: S) -> Self {
        Self::over(inner)
    }
}

impl<S> SseStream<S, Event> {
    pub fn with_ids(inner: S) -> Self {
        Self::over(inner)
    }
}

impl<S, B, E, T> Stream for SseStream<S, T>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    T: From<Event>,
{
    type Item = Result<T, SseError<E>>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(event) = this.decoder.next_event_with_id() {
                return Poll::Ready(Some(Ok(event.into())));
            }
            if let Some(e) = this.error.take() {
                return Poll::Ready(Some(Err(e.into())));
            }
            let Some(inner) = this.inner.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(Pin::new(inner).poll_next(cx)) {
                Some(Ok(bytes)) => {
                    if let Err(e) = this.decoder.feed(bytes.as_ref()) {
                        this.inner = None;
                        this.error = Some(e);
                    }
                }
                Some(Err(e)) => {
                    this.inner = None;
                    return Poll::Ready(Some(Err(SseError::Transport(e))));
                }
                // An unfinished event at the end is dropped.
                None => this.inner = None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunks: &[&[u8]]) -> (Vec<String>, Option<DecodeError>) {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for c in chunks {
            let r = d.feed(c);
            while let Some(e) = d.next_event() {
                out.push(e);
            }
            if let Err(e) = r {
                return (out, Some(e));
            }
        }
        (out, None)
    }

    #[test]
    fn events_lines_and_fields() {
        let (events, err) = decode(&[
            b"\xEF\xBB\xBFdata: a\r\n\r\n: comment\n\nevent: x\nid: 1\ndata:b\ndata:  c\r\rdata\n\ndata: cut",
        ]);
        assert_eq!(err, None);
        assert_eq!(events, vec!["a", "b\n c", ""]);
    }

    #[test]
    fn ids_carry_over_until_changed() {
        let mut d = Decoder::default();
        d.feed(b"id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: x\0y\ndata: d\n\n")
            .unwrap();
        let got: Vec<(String, String)> = std::iter::from_fn(|| d.next_event_with_id())
            .map(|e| (e.id, e.data))
            .collect();
        let want = [("7", "a"), ("7", "b"), ("", "c"), ("", "d")];
        assert_eq!(
            got,
            want.map(|(i, d)| (i.to_owned(), d.to_owned())).to_vec()
        );
    }

    #[test]
    fn chunking_does_not_matter() {
        let stream: &[u8] = b"\xEF\xBB\xBFdata: \xC3\xA9t\xC3\xA9\r\n\r\ndata: 2\r\r";
        let whole = decode(&[stream]);
        assert_eq!(whole, (vec!["été".to_owned(), "2".to_owned()], None));
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                assert_eq!(
                    decode(&[&stream[..i], &stream[i..j], &stream[j..]]),
                    whole,
                    "{i} {j}"
                );
            }
        }
        // A BOM that is not at the start is data.
        assert_eq!(
            decode(&[b"data: x\n\n\xEF\xBB\xBFdata: y\n\n"]).0,
            vec!["x"]
        );
    }

    /// Each byte is looked at once: a quadratic reader (eventsource-stream
    /// copied the rest of its buffer per line and re-parsed an unfinished
    /// line per chunk) would take minutes here.
    #[test]
    fn cost_is_linear() {
        let lines = vec![b'\n'; 4 << 20];
        assert_eq!(decode(&[&lines]), (vec![], None));
        let mut d = Decoder::default();
        d.feed(b"data: ").unwrap();
        let chunk = [b'x'; 1024];
        for _ in 0..(8 << 10) {
            d.feed(&chunk).unwrap();
        }
        d.feed(b"\n\n").unwrap();
        assert_eq!(d.next_event().map(|e| e.len()), Some(8 << 20));
    }

    #[test]
    fn bad_bytes_and_limits() {
        assert_eq!(
            decode(&[b"data: 1\n\ndata: \xFF\n\ndata: 3\n\n"]),
            (vec!["1".to_owned()], Some(DecodeError::Utf8))
        );
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(decode(&[b"data: ", &big]).1, Some(DecodeError::TooLarge));
        let line = format!("data: {}\n", "x".repeat(MAX_EVENT_BYTES / 2));
        assert_eq!(
            decode(&[line.as_bytes(), line.as_bytes(), b"\n"]).1,
            Some(DecodeError::TooLarge)
        );
    }
}
