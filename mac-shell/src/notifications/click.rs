//! A click on a popup: what it asks for, and where that may lead.

use std::sync::Arc;

use loopchat_proto::Notification;

/// What a click on a popup asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClickTarget {
    /// Open this session in the window.
    Session(String),
    /// The alert's `click`: a path under the relay (`/webchat/?session=…`).
    Link(String),
    /// Just bring the window forward (a summary, an alert about nothing in
    /// particular).
    Window,
}

impl ClickTarget {
    /// The alert's link if it has one, else its session.
    pub fn of(n: &Notification) -> Self {
        if let Some(link) = n.click.as_deref().filter(|c| !c.is_empty()) {
            ClickTarget::Link(link.to_owned())
        } else if let Some(session) = n.session.as_deref().filter(|s| !s.is_empty()) {
            ClickTarget::Session(session.to_owned())
        } else {
            ClickTarget::Window
        }
    }

    /// Where to go, for a window showing the relay at `base_url`
    /// (`http://127.0.0.1:PORT/webchat/`).
    pub fn resolve(&self, base_url: &str) -> Opening {
        match self {
            ClickTarget::Session(key) => {
                if loopchat_proto::validate_session_key(key).is_ok() {
                    Opening::InWindow(crate::relay::session_url(base_url, key))
                } else {
                    Opening::FocusOnly
                }
            }
            // The relay accepts nothing but its own paths; this re-check is
            // for a relay that is hostile (remote mode) or older. An
            // absolute URL of the relay itself is followed too; a link to
            // anywhere else only brings the window forward.
            ClickTarget::Link(link) => {
                let origin = origin(base_url);
                let path = link.strip_prefix(origin).unwrap_or(link);
                if loopchat_proto::is_relay_path(path) {
                    Opening::InWindow(format!("{origin}{path}"))
                } else {
                    Opening::FocusOnly
                }
            }
            ClickTarget::Window => Opening::FocusOnly,
        }
    }
}

/// See [`ClickTarget::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opening {
    /// Navigate the window's page here (same relay).
    InWindow(String),
    FocusOnly,
}

/// `http://127.0.0.1:1` of `http://127.0.0.1:1/webchat/`.
fn origin(base_url: &str) -> &str {
    let after_scheme = base_url.find("://").map(|i| i + 3).unwrap_or(0);
    match base_url[after_scheme..].find('/') {
        Some(i) => &base_url[..after_scheme + i],
        None => base_url,
    }
}

/// A click on a popup this shell raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    pub target: ClickTarget,
    /// The relay's base URL when the alert was raised.
    pub base_url: String,
}

/// Called on every click, on the notifier's runtime.
pub type OnClick = Arc<dyn Fn(Click) + Send + Sync>;

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::test_alert as n;

    #[test]
    fn clicks_resolve() {
        let base = "http://127.0.0.1:4100/webchat/";
        let mut a = n(1, 3);
        assert_eq!(ClickTarget::of(&a), ClickTarget::Window);
        a.session = Some("work".into());
        assert_eq!(ClickTarget::of(&a), ClickTarget::Session("work".into()));
        assert_eq!(
            ClickTarget::of(&a).resolve(base),
            Opening::InWindow("http://127.0.0.1:4100/webchat/?session=work".into())
        );
        a.click = Some("/webchat/?session=main".into());
        assert_eq!(
            ClickTarget::of(&a).resolve(base),
            Opening::InWindow("http://127.0.0.1:4100/webchat/?session=main".into())
        );
        let link = |l: &str| ClickTarget::Link(l.into()).resolve(base);
        assert_eq!(
            link("http://127.0.0.1:4100/webchat/?session=x"),
            Opening::InWindow("http://127.0.0.1:4100/webchat/?session=x".into())
        );
        // Only the relay's own pages: another site, another port of
        // 127.0.0.1, a path that climbs out of /webchat/ only focus.
        for elsewhere in [
            "https://ci.example.com/run/1",
            "http://127.0.0.1:18999/webchat/",
            "http://127.0.0.1:41000/webchat/",
            "http://127.0.0.1:4100/webchat/../x",
            "/webchat/%2e%2e/x",
            "/etc/passwd",
            "/\\evil.example/",
            "//evil.example/",
            "javascript:alert(1)",
        ] {
            assert_eq!(link(elsewhere), Opening::FocusOnly, "{elsewhere}");
        }
        assert_eq!(
            ClickTarget::Session("a/b".into()).resolve(base),
            Opening::FocusOnly
        );
        assert_eq!(ClickTarget::Window.resolve(base), Opening::FocusOnly);
        assert_eq!(origin(base), "http://127.0.0.1:4100");
    }
}
