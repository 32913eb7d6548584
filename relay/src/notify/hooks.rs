//! Notifications the relay posts on its own when a run finishes: the reply
//! itself for `deliver: true`, and "reply ready" when nobody is looking.
//! A reply for a configured target (`to`) goes there instead of the windows;
//! if that fails, the windows get an alert saying so.
//!
//! Both are submitted synchronously from [`RunObserver::run_finished`],
//! which the pipeline calls before it acknowledges the turn: the
//! notification's seq is therefore taken before the rpc answer leaves, and
//! anything posted after that answer is ordered after it. Making it durable
//! and delivering it happens in the background.

use std::sync::Arc;
use std::time::Instant;

use super::draft::{DEFAULT_PRIORITY, Draft, MAX_BODY_BYTES};
use super::hub::NotificationHub;
use super::presence::Presence;
use super::targets::{Delivery, DeliveryTargets};
use crate::clock;
use crate::pipeline::{DeliverTo, RunObserver, TurnOutcome, TurnResult};

/// Lines of the reply shown in a notification's body.
const BODY_LINES: usize = 8;
pub const TAG_REPLY: &str = "reply";
pub const TAG_REPLY_READY: &str = "reply-ready";
pub const TAG_DELIVERY_FAILED: &str = "delivery-failed";

/// The relay's own alerts: each is tagged with one of these names, and its
/// id is `<name>:…` (`reply:<message id>`, `reply-ready:<session>`,
/// `delivery-failed:<target>`). Only the main token may post with them, so
/// a notify-only token can neither overwrite such an alert (same id) nor
/// pass one off as the relay's (same tag).
pub const RESERVED: [&str; 4] = [
    TAG_REPLY,
    TAG_REPLY_READY,
    TAG_DELIVERY_FAILED,
    crate::checks::TAG_CHECK,
];

/// The reserved id or tag `draft` uses, if any. Compared without ASCII case,
/// so that `Reply-Ready` cannot pass for the real thing either.
pub fn reserved_in(draft: &Draft) -> Option<&str> {
    let is_name = |s: &str| RESERVED.iter().any(|r| s.eq_ignore_ascii_case(r));
    let id = draft.id.as_deref().filter(|id| {
        let name = id.split_once(':').map_or(*id, |(name, _)| name);
        is_name(name)
    });
    id.or_else(|| draft.tags.iter().map(String::as_str).find(|t| is_name(t)))
}

pub struct NotificationHooks {
    hub: NotificationHub,
    presence: Arc<Presence>,
    targets: Arc<DeliveryTargets>,
}

impl NotificationHooks {
    pub fn new(
        hub: NotificationHub,
        presence: Arc<Presence>,
        targets: Arc<DeliveryTargets>,
    ) -> Self {
        Self {
            hub,
            presence,
            targets,
        }
    }

    /// What to post for a finished turn, if anything.
    fn draft_for(&self, key: &str, r: &TurnResult) -> Option<Draft> {
        if r.deliver == DeliverTo::Windows {
            // The reply itself, one notification per reply.
            return Some(reply_draft(
                key,
                r,
                TAG_REPLY,
                format!("{TAG_REPLY}:{}", r.message.id),
            ));
        }
        // "Reply ready" only for a complete reply, once the session's queue
        // is drained (not once per queued turn), and only when no window
        // shows the session with focus.
        let interesting = r.message.stop_reason.is_none() && !r.more_queued;
        if !interesting || self.presence.is_focused(key, Instant::now()) {
            return None;
        }
        // One per session, updated in place: a second reply before the user
        // looks replaces the first alert rather than stacking up.
        Some(reply_draft(
            key,
            r,
            TAG_REPLY_READY,
            format!("{TAG_REPLY_READY}:{key}"),
        ))
    }
}

impl RunObserver for NotificationHooks {
    fn run_finished(&self, session_key: &str, outcome: &TurnOutcome) {
        // Answered from the transcript (a retry): nothing new happened, and
        // whatever the first attempt posted or delivered stands.
        let Ok(result) = outcome else { return };
        if result.replayed {
            return;
        }
        if let DeliverTo::Target(target) = &result.deliver {
            self.send_to_target(session_key, target, result);
            return;
        }
        let Some(draft) = self.draft_for(session_key, result) else {
            return;
        };
        post(&self.hub, session_key, draft);
    }
}

impl NotificationHooks {
    /// Hands the reply to `target` in the background; a failure becomes an
    /// alert in the windows.
    fn send_to_target(&self, key: &str, target: &str, r: &TurnResult) {
        let draft = reply_draft(key, r, TAG_REPLY, format!("{TAG_REPLY}:{}", r.message.id));
        let text = r.message.content.text();
        let (hub, targets) = (self.hub.clone(), self.targets.clone());
        let (key, target) = (key.to_owned(), target.to_owned());
        spawn(async move {
            let delivery = Delivery::new(&target, &draft, &text, clock::now_rfc3339());
            let Err(e) = targets.deliver(&delivery).await else {
                return;
            };
            tracing::warn!(session = %key, target = %target, error = %e, "could not deliver the reply");
            let alert = Draft {
                // One per target, updated in place: a dead webhook does not
                // bury the panel under one alert per reply.
                id: Some(format!("{TAG_DELIVERY_FAILED}:{target}")),
                title: format!("Could not deliver a reply to {target}"),
                body: format!("{e}. The reply is in the session {key}."),
                priority: 4,
                tags: vec![TAG_DELIVERY_FAILED.to_owned()],
                click: Some(format!("/webchat/?session={key}")),
                session: Some(key.clone()),
                source: Some("relay".into()),
                ..Default::default()
            };
            post(&hub, &key, alert);
        });
    }
}

/// Takes the notification's seq now (so it is ordered before the rpc answer)
/// and makes it durable in the background.
fn post(hub: &NotificationHub, key: &str, draft: Draft) {
    let pending = match hub.submit(draft) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(session = key, error = %e, "could not post the reply notification");
            return;
        }
    };
    let hub = hub.clone();
    let key = key.to_owned();
    spawn(async move {
        if let Err(e) = hub.commit(pending).await {
            tracing::warn!(session = %key, error = %e, "could not make the reply notification durable");
        }
    });
}

fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(task);
        }
        Err(_) => tracing::warn!("no runtime to deliver the reply notification on"),
    }
}

fn reply_draft(key: &str, r: &TurnResult, tag: &str, id: String) -> Draft {
    Draft {
        id: Some(id),
        title: key.to_owned(),
        body: first_lines(&r.message.content.text(), BODY_LINES, MAX_BODY_BYTES),
        priority: DEFAULT_PRIORITY,
        tags: vec![tag.to_owned()],
        click: Some(format!("/webchat/?session={key}")),
        session: Some(key.to_owned()),
        source: Some("relay".into()),
        ..Default::default()
    }
}

/// The first `lines` lines of `text`, cut to at most `max_bytes` (on a
/// character boundary), with `…` when anything was left out.
fn first_lines(text: &str, lines: usize, max_bytes: usize) -> String {
    const ELLIPSIS: &str = "…";
    let text = text.trim();
    let joined = text.lines().take(lines).collect::<Vec<_>>().join("\n");
    if joined.len() == text.len() && joined.len() <= max_bytes {
        return joined;
    }
    let mut end = joined.len().min(max_bytes - ELLIPSIS.len());
    while !joined.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &joined[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ids_and_tags() {
        let draft = |id: Option<&str>, tags: &[&str]| Draft {
            id: id.map(str::to_owned),
            title: "t".into(),
            body: String::new(),
            priority: DEFAULT_PRIORITY,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            ..Default::default()
        };
        for (id, tags) in [
            (Some("reply-ready:main"), &[][..]),
            (Some("reply:m1"), &[]),
            (Some("delivery-failed:hook"), &[]),
            (Some("delivery-failed"), &[]),
            (Some("Reply-Ready:main"), &[]),
            (None, &["ci", "reply-ready"]),
            (Some("backup"), &["REPLY"]),
        ] {
            assert!(reserved_in(&draft(id, tags)).is_some(), "{id:?} {tags:?}");
        }
        for (id, tags) in [
            (None, &[][..]),
            (Some("backup:nightly"), &["ci"]),
            (Some("replying:x"), &["reply-later", "delivery"]),
            (Some("x:reply-ready"), &[]),
        ] {
            assert_eq!(reserved_in(&draft(id, tags)), None, "{id:?} {tags:?}");
        }
    }

    #[test]
    fn body_is_the_first_lines_within_4k() {
        assert_eq!(first_lines("  hi  ", 8, 4096), "hi");
        let many: String = (0..20).map(|i| format!("line {i}\n")).collect();
        let b = first_lines(&many, 3, 4096);
        assert_eq!(b, "line 0\nline 1\nline 2…");
        let long = "é".repeat(5000);
        let b = first_lines(&long, 8, 4096);
        assert!(b.len() <= 4096 && b.ends_with('…'), "{}", b.len());
        let exact = "x".repeat(4096);
        assert_eq!(first_lines(&exact, 8, 4096), exact);
    }
}
