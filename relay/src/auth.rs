//! Who may talk to the relay: the token (as a bearer header, or as a
//! WebSocket subprotocol), and the Host/Origin guards against other web pages
//! in the user's browser and DNS rebinding.
//!
//! There is deliberately no cookie: browsers scope cookies by host and not by
//! port, so a cookie for 127.0.0.1 would go to every other local web server.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// The WebSocket subprotocol the relay speaks, and the only one it ever
/// echoes back in `Sec-WebSocket-Protocol`.
pub const WS_PROTOCOL: &str = "loopchat";

/// Prefix of the subprotocol value that carries the token on a WebSocket
/// upgrade (`Sec-WebSocket-Protocol: loopchat, bearer.<token>`): a browser
/// cannot set `Authorization` on one. Tokens are base64url, which is valid
/// in a subprotocol name.
pub const WS_BEARER_PREFIX: &str = "bearer.";

/// 32 random bytes, base64url without padding.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Reads the persistent token, creating it (0600) on first start so that a
/// restart does not log out open windows.
pub fn load_or_create_token(path: &Path) -> io::Result<String> {
    match fs::read_to_string(path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = new_token();
    write_token(path, &token)?;
    Ok(token)
}

/// Replaces the token file atomically (0600).
pub fn write_token(path: &Path, token: &str) -> io::Result<()> {
    crate::durable::write_atomically(path, format!("{token}\n").as_bytes()).map(drop)
}

/// Constant-time comparison, so response timing does not leak how much of
/// a guessed token was right.
pub fn token_matches(expected: &str, given: &str) -> bool {
    expected.as_bytes().ct_eq(given.as_bytes()).into()
}

/// The token of a request: `Authorization: Bearer …`, and nothing else (no
/// cookie, no query parameter).
pub fn presented_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

/// The token a WebSocket upgrade offers as the subprotocol `bearer.<token>`.
pub fn subprotocol_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(WS_BEARER_PREFIX))
        .filter(|t| !t.is_empty())
}

/// Is `host` (a Host header value or an Origin's authority: name plus an
/// optional port) one the relay answers to? Loopback names on any port —
/// a tunnel's local port differs from the relay's — or a configured name.
pub fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = strip_port(host);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        // An IPv6 literal must be bracketed in a Host header.
        let well_formed = ip.is_ipv4() || name.starts_with('[');
        return well_formed && ip.is_loopback();
    }
    allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Is this Origin header value a loopback (or configured) origin?
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    origin_authority(origin).is_some_and(|(_, rest)| host_allowed(rest, allowed))
}

/// Is the page that sent `origin` the relay's own page, as reached through
/// `host`? Every loopback port is the same *site* to a browser, so
/// `SameSite` rules cannot tell another local web server's page from the
/// relay's; only comparing host and port does.
pub fn origin_matches_host(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin_authority(origin) else {
        return false;
    };
    let default_port = if scheme == "https" { ":443" } else { ":80" };
    let normal = |a: &str| {
        let a = a.to_ascii_lowercase();
        match a.strip_suffix(default_port) {
            Some(bare) => bare.to_owned(),
            None => a,
        }
    };
    normal(authority) == normal(host)
}

/// `("http" | "https", "host[:port]")` of an Origin value; `None` for
/// `null`, `file:`, extension origins, or anything with a path.
fn origin_authority(origin: &str) -> Option<(&'static str, &str)> {
    let (scheme, rest) = if let Some(rest) = origin.strip_prefix("http://") {
        ("http", rest)
    } else {
        ("https", origin.strip_prefix("https://")?)
    };
    (!rest.is_empty() && !rest.contains('/')).then_some((scheme, rest))
}

fn strip_port(host: &str) -> &str {
    if let Some(end) = host.strip_prefix('[').and_then(|_| host.find(']')) {
        let (name, rest) = host.split_at(end + 1);
        let port_ok = rest.is_empty()
            || rest
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        return if port_ok { name } else { "" };
    }
    match host.rsplit_once(':') {
        Some((name, port))
            if !name.contains(':')
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            name
        }
        Some(_) if host.matches(':').count() > 1 => host, // unbracketed IPv6: rejected later
        Some(_) => "",
        None => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let none: &[String] = &[];
        for ok in [
            "localhost",
            "localhost:1",
            "LOCALHOST:65535",
            "127.0.0.1",
            "127.9.8.7:80",
            "[::1]",
            "[::1]:4000",
        ] {
            assert!(host_allowed(ok, none), "{ok}");
        }
        for bad in [
            "evil.com",
            "evil.com:80",
            "localhost.evil.com",
            "127.0.0.1.nip.io",
            "10.0.0.1",
            "0.0.0.0",
            "::1",
            "[::2]:80",
            "",
            "localhost:abc",
            "[::1]x",
            "192.168.1.1:8080",
        ] {
            assert!(!host_allowed(bad, none), "{bad}");
        }
        assert!(host_allowed("box.lan:9", &["box.lan".into()]));
    }

    #[test]
    fn origins() {
        let none: &[String] = &[];
        assert!(origin_allowed("http://127.0.0.1:5555", none));
        assert!(origin_allowed("http://localhost", none));
        for bad in [
            "null",
            "https://evil.com",
            "http://127.0.0.1.evil.com",
            "file://",
            "http://localhost/x",
        ] {
            assert!(!origin_allowed(bad, none), "{bad}");
        }
        assert!(origin_matches_host(
            "http://127.0.0.1:5555",
            "127.0.0.1:5555"
        ));
        assert!(origin_matches_host("http://LocalHost", "localhost:80"));
        assert!(origin_matches_host("https://box.lan", "box.lan:443"));
        for (origin, host) in [
            ("http://127.0.0.1:9999", "127.0.0.1:5555"),
            ("http://localhost:5555", "127.0.0.1:5555"),
            ("http://127.0.0.1", "127.0.0.1:5555"),
            ("https://127.0.0.1:5555/", "127.0.0.1:5555"),
            ("null", "127.0.0.1:5555"),
        ] {
            assert!(!origin_matches_host(origin, host), "{origin} vs {host}");
        }
    }

    #[test]
    fn tokens() {
        let t = new_token();
        assert_eq!(t.len(), 43);
        assert!(token_matches(&t, &t.clone()));
        assert!(!token_matches(&t, &t[..42]));
        let mut h = axum::http::HeaderMap::new();
        // The cookie of earlier versions is no credential.
        h.insert("cookie", "a=b; loopchat_token=xyz; c=d".parse().unwrap());
        assert_eq!(presented_token(&h), None);
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(presented_token(&h), Some("abc"));
        assert_eq!(subprotocol_token(&h), None);
        h.insert("sec-websocket-protocol", "loopchat".parse().unwrap());
        assert_eq!(subprotocol_token(&h), None);
        h.append(
            "sec-websocket-protocol",
            "other, bearer.tok_en-1".parse().unwrap(),
        );
        assert_eq!(subprotocol_token(&h), Some("tok_en-1"));
        h.insert(
            "sec-websocket-protocol",
            "loopchat, bearer.".parse().unwrap(),
        );
        assert_eq!(subprotocol_token(&h), None);
    }
}
