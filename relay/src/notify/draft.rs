//! A notification as posted, checked against the protocol's limits before
//! it is given a seq and written anywhere.
//!
//! The rules live here, not in the HTTP handler, because the relay posts
//! notifications of its own (agent hooks) and they must obey the same limits.

use loopchat_proto::{NotifyRequest, is_relay_path};

/// Priority when none is given: an ordinary notification.
pub const DEFAULT_PRIORITY: u8 = 3;
pub const MAX_TITLE_CHARS: usize = 256;
pub const MAX_BODY_BYTES: usize = 4096;
pub const MAX_TAGS: usize = 10;
pub const MAX_TAG_CHARS: usize = 64;
pub const MAX_ID_CHARS: usize = 200;

/// Why a notification was refused; every variant reads as a sentence a
/// script author can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    #[error("title and body are both empty; give at least one")]
    Empty,
    #[error("priority must be an integer from 1 (lowest) to 5 (highest), not {0}")]
    Priority(String),
    #[error("title is {0} characters long; the limit is {MAX_TITLE_CHARS}")]
    TitleTooLong(usize),
    #[error("body is {0} bytes long; the limit is {MAX_BODY_BYTES} (4 KiB)")]
    BodyTooLong(usize),
    #[error("{0} tags given; the limit is {MAX_TAGS}")]
    TooManyTags(usize),
    #[error(
        "tag {0:?} is not valid: tags are 1 to {MAX_TAG_CHARS} characters without spaces or control characters"
    )]
    BadTag(String),
    #[error(
        "click must be a path of this relay under /webchat/ (e.g. /webchat/?session=main), \
         without . or .. segments, backslashes, spaces or control characters, at most 2048 bytes; \
         links to other sites or ports are not allowed: not {0:?}"
    )]
    BadClick(String),
    #[error("id must be 1 to {MAX_ID_CHARS} characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'")]
    BadId,
}

/// A validated notification without its seq and timestamp (the hub assigns
/// those when it accepts it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Draft {
    /// `Some` updates the notification with this id if it is still kept.
    pub id: Option<String>,
    pub title: String,
    pub body: String,
    pub priority: u8,
    pub tags: Vec<String>,
    pub click: Option<String>,
    pub session: Option<String>,
    /// A stored alert image's id ([`super::images::AlertImages`]), pinned by
    /// the caller until the draft is submitted.
    pub image: Option<String>,
    /// Who raises it (see [`loopchat_proto::Notification::source`]).
    pub source: Option<String>,
    pub check: Option<loopchat_proto::CheckOutcome>,
}

impl TryFrom<NotifyRequest> for Draft {
    type Error = DraftError;

    fn try_from(req: NotifyRequest) -> Result<Self, DraftError> {
        if req.title.trim().is_empty() && req.body.trim().is_empty() {
            return Err(DraftError::Empty);
        }
        let priority = match req.priority {
            None => DEFAULT_PRIORITY,
            Some(p @ 1..=5) => p,
            Some(p) => return Err(DraftError::Priority(p.to_string())),
        };
        let title_chars = req.title.chars().count();
        if title_chars > MAX_TITLE_CHARS {
            return Err(DraftError::TitleTooLong(title_chars));
        }
        if req.body.len() > MAX_BODY_BYTES {
            return Err(DraftError::BodyTooLong(req.body.len()));
        }
        if req.tags.len() > MAX_TAGS {
            return Err(DraftError::TooManyTags(req.tags.len()));
        }
        if let Some(bad) = req.tags.iter().find(|t| !is_valid_tag(t)) {
            return Err(DraftError::BadTag(bad.clone()));
        }
        if let Some(click) = &req.click
            && !is_relay_path(click)
        {
            return Err(DraftError::BadClick(click.clone()));
        }
        if let Some(id) = &req.id
            && !is_valid_id(id)
        {
            return Err(DraftError::BadId);
        }
        Ok(Self {
            id: req.id,
            title: req.title,
            body: req.body,
            priority,
            tags: req.tags,
            click: req.click,
            // Checked as it was read (`SessionKey`).
            session: req.session.map(String::from),
            ..Default::default()
        })
    }
}

fn is_valid_tag(tag: &str) -> bool {
    let n = tag.chars().count();
    (1..=MAX_TAG_CHARS).contains(&n) && !tag.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Ids end up in URLs and log lines, like session keys, so they follow the
/// same alphabet (a uuid fits, and so does `backup:nightly`).
pub fn is_valid_id(id: &str) -> bool {
    (1..=MAX_ID_CHARS).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> NotifyRequest {
        NotifyRequest {
            title: "t".into(),
            body: "b".into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_and_limits() {
        let d = Draft::try_from(req()).unwrap();
        assert_eq!(d.priority, DEFAULT_PRIORITY);
        let only_body = NotifyRequest {
            title: String::new(),
            ..req()
        };
        assert!(Draft::try_from(only_body).is_ok());
        let empty = NotifyRequest {
            title: " ".into(),
            body: String::new(),
            ..req()
        };
        assert_eq!(Draft::try_from(empty), Err(DraftError::Empty));
        for p in [0, 6, 255] {
            let r = NotifyRequest {
                priority: Some(p),
                ..req()
            };
            assert!(matches!(Draft::try_from(r), Err(DraftError::Priority(_))));
        }
        let title = NotifyRequest {
            title: "é".repeat(256),
            ..req()
        };
        assert!(Draft::try_from(title).is_ok(), "256 characters, not bytes");
        let title = NotifyRequest {
            title: "x".repeat(257),
            ..req()
        };
        assert_eq!(Draft::try_from(title), Err(DraftError::TitleTooLong(257)));
        let body = NotifyRequest {
            body: "x".repeat(4097),
            ..req()
        };
        assert_eq!(Draft::try_from(body), Err(DraftError::BodyTooLong(4097)));
        let tags = NotifyRequest {
            tags: vec!["a".into(); 11],
            ..req()
        };
        assert_eq!(Draft::try_from(tags), Err(DraftError::TooManyTags(11)));
        for bad in ["", "a b", &"x".repeat(65), "a\nb"] {
            let r = NotifyRequest {
                tags: vec![bad.into()],
                ..req()
            };
            assert!(
                matches!(Draft::try_from(r), Err(DraftError::BadTag(_))),
                "{bad:?}"
            );
        }
        let bad_key = serde_json::json!({"title": "t", "session": "a/b"});
        let err = serde_json::from_value::<NotifyRequest>(bad_key).unwrap_err();
        assert!(
            loopchat_proto::SessionKey::is_refusal(&err.to_string()),
            "{err}"
        );
        for bad in ["", "a b", &"x".repeat(201)] {
            let r = NotifyRequest {
                id: Some(bad.into()),
                ..req()
            };
            assert_eq!(Draft::try_from(r), Err(DraftError::BadId), "{bad:?}");
        }
    }

    /// The click rule (`proto::is_relay_path`) checked against a real URL
    /// parser, the way a browser resolves a click on the relay's page:
    /// whatever it accepts stays on the relay's origin under `/webchat/`,
    /// and the dot segments it refuses really do climb out.
    #[test]
    fn click_targets_stay_on_the_relay() {
        let base = reqwest::Url::parse("http://127.0.0.1:4100/webchat/").unwrap();
        for ok in [
            "/webchat/",
            "/webchat/?session=main",
            "/webchat/x..y/%2e%2ex",
            "/webchat/?q=../..#/../..",
            "/webchat//evil.example/",
        ] {
            assert!(is_relay_path(ok), "{ok}");
            let u = base.join(ok).unwrap();
            assert_eq!(u.origin(), base.origin(), "{ok}");
            assert!(u.path().starts_with("/webchat/"), "{ok} → {u}");
        }
        for climbs in [
            "/webchat/../x",
            "/webchat/%2e%2e/x",
            "/webchat/.%2E/x",
            "/webchat/%2E./x",
        ] {
            assert!(!is_relay_path(climbs), "{climbs}");
            let u = base.join(climbs).unwrap();
            assert_eq!(u.path(), "/x", "{climbs} is a real escape");
        }
        for bad in [
            "https://example.com/x?y=1",
            "http://127.0.0.1:8080/webchat/",
            "javascript:alert(1)",
            "//evil.com",
            "/etc/passwd",
            "file:///etc/passwd",
            "/webchat\\x",
        ] {
            let r = NotifyRequest {
                click: Some(bad.into()),
                ..req()
            };
            assert_eq!(
                Draft::try_from(r),
                Err(DraftError::BadClick(bad.into())),
                "{bad}"
            );
        }
    }
}
