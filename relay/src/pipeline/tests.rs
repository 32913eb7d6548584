use std::sync::Arc;
use std::time::Duration;

use loopchat_proto::EventBody;

use super::{DeliverTo, Pipeline, TurnRequest};
use crate::agent::EchoAgent;
use crate::attachments::Attachments;
use crate::config::EchoConfig;
use crate::store::Store;

fn pipeline(dir: &std::path::Path) -> Pipeline {
    let store = Store::open(&dir.join("sessions"), Arc::new(|_| {})).unwrap();
    Pipeline::new(
        store,
        Arc::new(EchoAgent::new(EchoConfig::default())),
        Attachments::new(dir.join("attachments")),
        40,
    )
}

fn turn(text: &str, key: Option<&str>) -> TurnRequest {
    TurnRequest {
        session_key: "idle".into(),
        text: text.into(),
        thinking: None,
        attachment_ids: Vec::new(),
        client_id: key.map(str::to_owned),
        queue: true,
        deliver: DeliverTo::Nowhere,
        parent_id: None,
        regenerate: None,
        model: None,
        attachment_names: Default::default(),
    }
}

/// Trimming gives back an idle session's memory without changing what any
/// client sees beyond a `reset`: the seq goes on, a retried key still finds
/// its turn, and the history is whole.
#[tokio::test]
async fn trimming_an_idle_session_keeps_its_seq_keys_and_history() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = pipeline(dir.path());
    let ticket = pipeline.submit(turn("one", Some("k1"))).unwrap();
    let (rt, since) = (ticket.session.clone(), ticket.since);
    let first = ticket.outcome().await;
    let first = first.as_ref().as_ref().unwrap();
    let last = rt.events.last_seq();
    assert!(last > since);

    assert_eq!(
        pipeline.trim_idle(Duration::from_secs(3600)),
        0,
        "not idle yet"
    );
    let replayed = rt.events.subscribe(Some(since)).try_next().unwrap();
    assert!(!matches!(replayed.body, EventBody::Reset));

    assert_eq!(pipeline.trim_idle(Duration::ZERO), 1);
    assert_eq!(pipeline.trim_idle(Duration::ZERO), 0, "trimmed once");
    assert_eq!(rt.events.last_seq(), last, "the seq is kept");
    let after = rt.events.subscribe(Some(since)).try_next().unwrap();
    assert!(matches!(after.body, EventBody::Reset));
    assert_eq!(after.seq, last);

    // The key is found in the transcript, as after a restart.
    let again = pipeline
        .submit(turn("one", Some("k1")))
        .unwrap()
        .outcome()
        .await;
    let again = again.as_ref().as_ref().unwrap();
    assert!(again.replayed);
    assert_eq!(again.message.id, first.message.id);

    let two = pipeline.submit(turn("two", None)).unwrap();
    assert_eq!(two.since, last);
    let two = two.outcome().await;
    assert_eq!(
        two.as_ref().as_ref().unwrap().message.content.text(),
        "echo: two"
    );
    assert!(rt.events.last_seq() > last);
    let entry = pipeline.store().session("idle").unwrap();
    let page = pipeline
        .store()
        .transcript(&entry.session_id)
        .unwrap()
        .latest(10)
        .unwrap();
    let texts: Vec<_> = page
        .messages
        .iter()
        .map(|m| m.message.content.text())
        .collect();
    assert_eq!(texts, ["one", "echo: one", "two", "echo: two"]);

    // A session with a turn under way is never trimmed.
    let busy = pipeline.submit(turn("three", None)).unwrap();
    assert_eq!(pipeline.trim_idle(Duration::ZERO), 0);
    busy.outcome().await.as_ref().as_ref().unwrap();
}

/// A streamed reply is rendered (markdown, highlighting) once, when it is
/// stored, not per delta; reading it back from the recent window does not
/// render it again.
#[tokio::test]
async fn a_streamed_reply_is_rendered_once() {
    let dir = tempfile::tempdir().unwrap();
    let renders = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = renders.clone();
    let store = Store::open(
        &dir.path().join("sessions"),
        Arc::new(move |m: &mut crate::store::StoredMessage| {
            if m.message.role == loopchat_proto::Role::Assistant {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            crate::render::decorate(m);
        }),
    )
    .unwrap();
    let pipeline = Pipeline::new(
        store,
        Arc::new(EchoAgent::new(EchoConfig { delay_ms: 1 })),
        Attachments::new(dir.path().join("attachments")),
        40,
    );
    let words = (0..60)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ");
    let text = format!("{words}\n```rust\nfn main() {{}}\n```");
    let ticket = pipeline.submit(turn(&text, None)).unwrap();
    let (rt, since) = (ticket.session.clone(), ticket.since);
    let outcome = ticket.outcome().await;
    let reply = &outcome.as_ref().as_ref().unwrap().message;
    assert!(
        reply.html.as_deref().unwrap_or("").contains("hl-"),
        "{reply:?}"
    );

    let mut sub = rt.events.subscribe(Some(since));
    let mut deltas = 0;
    while let Some(e) = sub.try_next() {
        if matches!(e.body, EventBody::Delta { .. }) {
            deltas += 1;
        }
    }
    assert!(deltas > 50, "streamed in {deltas} deltas");
    assert_eq!(renders.load(std::sync::atomic::Ordering::SeqCst), 1);
    let entry = pipeline.store().session("idle").unwrap();
    let page = pipeline
        .store()
        .transcript(&entry.session_id)
        .unwrap()
        .latest(10)
        .unwrap();
    assert!(page.messages[1].message.html.is_some());
    assert_eq!(
        renders.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "read back without rendering again"
    );
}
