//! The bundled web UI, embedded in the binary, and the legacy
//! `/webchat/?token=…` entry, redirected to the fragment form.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use rust_embed::RustEmbed;
use sha2::{Digest, Sha256};

use super::AppState;
use super::bundle;
use crate::auth::token_matches;

#[derive(RustEmbed)]
#[folder = "$CARGO_MANIFEST_DIR/../webchat-dist"]
struct WebchatDist;

#[utoipa::path(
    get,
    path = "/",
    tag = "ui",
    summary = "Redirects to the web UI",
    responses((status = 302, description = "To `/webchat/`", headers(("Location" = String)))),
)]
pub async fn root() -> Response {
    found("/webchat/")
}

#[utoipa::path(
    get,
    path = "/webchat",
    tag = "ui",
    summary = "Redirects to the web UI",
    responses((status = 302, description = "To `/webchat/`", headers(("Location" = String)))),
)]
pub async fn webchat() -> Response {
    found("/webchat/")
}

/// A 302 Found, as the contract says (axum's `Redirect::to` is a 303).
fn found(location: &str) -> Response {
    let mut response = Redirect::to(location).into_response();
    *response.status_mut() = StatusCode::FOUND;
    response
}

#[utoipa::path(
    get,
    path = "/webchat/",
    tag = "ui",
    summary = "The web UI",
    description = "Open without a token. The page is opened as `/webchat/#token=…`: the fragment \
                   never reaches a server, and the page moves the token into its origin's \
                   `localStorage` and sends it as `Authorization: Bearer`. The legacy \
                   `?token=` form is answered with a 302 to the same URL with the token moved \
                   into the fragment (other parameters kept); a token that is not the main \
                   token is dropped instead. No cookie is ever set.",
    params(
        ("token" = Option<String>, Query, description = "Legacy: the relay's token, moved into the URL fragment by a redirect"),
    ),
    responses(
        (status = 200, description = "index.html (never cached)", content_type = "text/html", body = String),
        (status = 302, description = "`?token=` was given: to the same URL without it, and with \
                                      `#token=…` when it was the main token", headers(
            ("Location" = String),
        )),
    ),
)]
pub async fn index(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    if let Some(response) = token_to_fragment(&state, &uri) {
        return response;
    }
    serve("index.html", &headers)
}

#[utoipa::path(
    get,
    path = "/webchat/{*path}",
    tag = "ui",
    summary = "A file of the web UI",
    description = "Open without a token. Strong ETag, revalidated (`no-cache`); gzip and brotli \
                   when accepted. `sw.js` (the service worker) is served with the shell's version \
                   (the relay's version plus a hash of the bundle) and the list of shell files \
                   filled in; `manifest.webmanifest` is `application/manifest+json`. \
                   `app.bundle.js` is `app.js` and the modules it imports as one script, made \
                   by the relay.",
    params(
        ("path" = String, Path, example = "js/api.js",
         description = "The file's path under `webchat-dist/` (may contain `/`), or `app.bundle.js`"),
        ("v" = Option<String>, Query, description = "The shell version's tag, as the page names its \
         assets: when it is the current one the answer is `immutable` (cached for a year); any \
         other value is ignored"),
        ("If-None-Match" = Option<String>, Header, nullable = false, description = "ETags of copies the client has"),
    ),
    responses(
        (status = 200, description = "The file, with its own Content-Type", content_type = "*/*", body = super::Binary,
         headers(("ETag" = String))),
        (status = 304, description = "Not Modified: `If-None-Match` named the current ETag"),
        (status = 404, description = "`not_found`: no such file", body = loopchat_proto::ErrorBody),
    ),
)]
pub async fn asset(
    path: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    // A path that does not decode (invalid UTF-8) names no file; axum's own
    // rejection would be plain text.
    match path {
        Ok(Path(path)) => {
            let mut response = serve(&path, &headers);
            // `?v=` of this shell version: the page asked for this exact
            // content, which never changes under that URL.
            if uri.query() == Some(&format!("v={}", shell_tag())) && response.status().is_success()
            {
                response.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=31536000, immutable"),
                );
            }
            response
        }
        Err(_) => super::error::ApiError::not_found("no such asset").into_response(),
    }
}

/// `?token=` in the URL (links of earlier versions): redirect to the same URL
/// with the token in the fragment, where the page picks it up. The token
/// thus leaves the query, which servers and proxies see, at once. Nothing is
/// stored in the browser by the relay: a cookie would be sent to every other
/// server on the same host, whatever its port. A token that is not the main
/// one is dropped, so a stale link does not replace a working stored token.
fn token_to_fragment(state: &AppState, uri: &Uri) -> Option<Response> {
    let query = uri.query()?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).ok()?;
    let token = pairs.iter().find(|(k, _)| k == "token")?.1.clone();
    let rest: Vec<_> = pairs.into_iter().filter(|(k, _)| k != "token").collect();
    let mut location = uri.path().to_owned();
    if !rest.is_empty() {
        location.push('?');
        location.push_str(&serde_urlencoded::to_string(&rest).unwrap_or_default());
    }
    if token_matches(&state.credentials.main_token(), &token) {
        location.push('#');
        location.push_str(&serde_urlencoded::to_string([("token", &token)]).unwrap_or_default());
    } else {
        tracing::info!("a browser presented a wrong token; dropped from the URL");
    }
    Some(found(&location))
}

/// The service worker, served with the shell's version and file list filled
/// in (see [`service_worker`]).
const SERVICE_WORKER: &str = "sw.js";

/// Set only by tests: mixed into the shell version so that two relays built
/// from the same bundle count as different versions (the version-swap test).
/// It changes the service worker's cache name and nothing else.
const SALT_ENV: &str = "LOOPCHAT_ASSET_SALT";

/// The one script the relay makes of the page's modules (see [`bundle`]).
const BUNDLE: &str = "app.bundle.js";
/// The module the page starts, and so the bundle.
const ENTRY: &str = "app.js";
/// What the page loads besides the bundle, named with `?v=` in the page the
/// relay serves (so the worker can answer them from its cache unasked).
const PAGE_ASSETS: [&str; 3] = ["boot.js", "style.css", "css/highlight.css"];
/// Marks the page's module tags, which the relay replaces with the bundle.
const MODULES_START: &str = "<!-- modules";
const MODULES_END: &str = "<!-- /modules -->";

/// The page as the relay serves it, and the bundle: made once. `None`
/// when the modules are outside what [`bundle`] takes: the page is then
/// served as it is, with its modules (slower, and said in the log).
fn bundled() -> Option<&'static (String, String)> {
    static BUNDLED: OnceLock<Option<(String, String)>> = OnceLock::new();
    BUNDLED
        .get_or_init(|| {
            let read = |p: &str| {
                WebchatDist::get(p).and_then(|f| String::from_utf8(f.data.into_owned()).ok())
            };
            let made = bundle::bundle(ENTRY, &read)
                .map_err(|e| e.to_string())
                .and_then(|js| {
                    let page = read("index.html").ok_or("no index.html")?;
                    Ok((
                        bundled_page(&page, shell_tag())
                            .ok_or("index.html has no module tags to replace")?,
                        js,
                    ))
                });
            match made {
                Ok(made) => Some(made),
                Err(e) => {
                    tracing::warn!(error = %e, "the page's modules are served one by one");
                    None
                }
            }
        })
        .as_ref()
}

/// `index.html` with its module tags replaced by the bundle, and its other
/// scripts and styles named with `?v=tag`.
fn bundled_page(page: &str, tag: &str) -> Option<String> {
    let start = page.find(MODULES_START)?;
    let end = start + page[start..].find(MODULES_END)? + MODULES_END.len();
    let mut out = format!(
        "{}<script type=\"module\" src=\"{BUNDLE}?v={tag}\"></script>{}",
        &page[..start],
        &page[end..]
    );
    for asset in PAGE_ASSETS {
        let attr = format!("=\"{asset}\"");
        if !out.contains(&attr) {
            return None;
        }
        out = out.replace(&attr, &format!("=\"{asset}?v={tag}\""));
    }
    Some(out)
}

/// The URLs (relative to the page) the page served by the relay loads with
/// `?v=`; empty when it is served unbundled.
fn versioned_files() -> Vec<String> {
    if bundled().is_none() {
        return Vec::new();
    }
    std::iter::once(BUNDLE)
        .chain(PAGE_ASSETS)
        .map(|f| format!("{f}?v={}", shell_tag()))
        .collect()
}

/// The files the service worker keeps for offline use: every embedded file
/// but the worker itself, with the page as `./` (its URL in the scope), and
/// the `?v=` URLs the page loads.
fn shell_files() -> Vec<String> {
    let mut files: Vec<String> = WebchatDist::iter()
        .filter(|p| p != SERVICE_WORKER)
        .map(|p| {
            if p == "index.html" {
                "./".to_owned()
            } else {
                p.into_owned()
            }
        })
        .collect();
    files.extend(versioned_files());
    files.sort();
    files
}

/// The hash part of the shell version, as the page's `?v=`.
fn shell_tag() -> &'static str {
    let version = shell_version();
    version.rsplit_once('+').map_or(version, |(_, tag)| tag)
}

/// The relay's version plus a hash of the whole bundle: any change to any
/// file gives the worker a new cache, so a new relay never serves a mix of
/// old and new files from the cache.
fn shell_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        let mut paths: Vec<_> = WebchatDist::iter()
            .filter(|p| p != SERVICE_WORKER)
            .collect();
        paths.sort();
        let mut h = Sha256::new();
        for p in paths {
            if let Some(file) = WebchatDist::get(&p) {
                h.update(p.as_bytes());
                h.update([0]);
                h.update(file.metadata.sha256_hash());
            }
        }
        if let Some(salt) = std::env::var_os(SALT_ENV).filter(|s| !s.is_empty()) {
            h.update(salt.as_encoded_bytes());
        }
        let digest = h.finalize();
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}+{hex}", env!("CARGO_PKG_VERSION"))
    })
}

/// `sw.js` with its placeholders replaced by the version and the file list
/// (as JSON literals, so nothing in a file name can break out of the string).
fn service_worker() -> Option<Vec<u8>> {
    let file = WebchatDist::get(SERVICE_WORKER)?;
    let text = std::str::from_utf8(&file.data).ok()?;
    let version = serde_json::to_string(shell_version()).ok()?;
    let files = serde_json::to_string(&shell_files()).ok()?;
    Some(
        text.replace("\"__LOOPCHAT_SHELL_VERSION__\"", &version)
            .replace("[\"__LOOPCHAT_SHELL_FILES__\"]", &files)
            .into_bytes(),
    )
}

/// One embedded file in every encoding we serve, computed once on first
/// request: compressing per request (brotli at its default quality) cost
/// milliseconds of CPU for a few kilobytes.
struct Encoded {
    identity: Bytes,
    gzip: Option<Bytes>,
    brotli: Option<Bytes>,
    etag: String,
    content_type: String,
}

/// The encodings of `path`, made once: a request that comes while another
/// is making them waits for that one instead of compressing again.
fn encoded(path: &str) -> Option<Arc<Encoded>> {
    type Cell = Arc<OnceLock<Option<Arc<Encoded>>>>;
    static CACHE: OnceLock<Mutex<HashMap<String, Cell>>> = OnceLock::new();
    // Only files that exist get a cell: any path a client makes up must not
    // grow the map.
    let known = matches!(path, SERVICE_WORKER | BUNDLE) || WebchatDist::get(path).is_some();
    if !known {
        return None;
    }
    let cell = CACHE
        .get_or_init(Default::default)
        .lock()
        .entry(path.to_owned())
        .or_default()
        .clone();
    cell.get_or_init(|| make_encoded(path)).clone()
}

/// Makes the page, the bundle, the worker and the page's other assets in
/// the background as the relay starts: compressing the bundle (brotli at
/// its best) takes long enough to show in the first page load after a
/// start, which is what the shell waits for.
pub fn warm() {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let spawned = std::thread::Builder::new()
            .name("asset-warm-up".into())
            .spawn(|| {
                for path in ["index.html", BUNDLE, SERVICE_WORKER]
                    .into_iter()
                    .chain(PAGE_ASSETS)
                {
                    encoded(path);
                }
            });
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "no asset warm-up");
        }
    });
}

fn make_encoded(path: &str) -> Option<Arc<Encoded>> {
    let made = match path {
        SERVICE_WORKER => Some(service_worker()?),
        "index.html" => bundled().map(|(page, _)| page.clone().into_bytes()),
        BUNDLE => Some(bundled()?.1.clone().into_bytes()),
        _ => None,
    };
    let (data, hash) = if let Some(data) = made {
        let hash: [u8; 32] = Sha256::digest(&data).into();
        (data, hash)
    } else {
        let file = WebchatDist::get(path)?;
        (file.data.into_owned(), file.metadata.sha256_hash())
    };
    let identity = Bytes::from(data);
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let textual = mime.type_() == "text"
        || matches!(
            mime.subtype().as_str(),
            "javascript" | "json" | "manifest+json" | "svg" | "xml"
        );
    let worth_compressing = textual && identity.len() >= 256;
    let e = Arc::new(Encoded {
        gzip: worth_compressing.then(|| gzip(&identity)).flatten(),
        brotli: worth_compressing.then(|| brotli(&identity)).flatten(),
        etag: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash),
        content_type: if textual {
            format!("{mime}; charset=utf-8")
        } else {
            mime.to_string()
        },
        identity,
    });
    Some(e)
}

fn gzip(data: &[u8]) -> Option<Bytes> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).ok()?;
    enc.finish().ok().map(Bytes::from)
}

fn brotli(data: &[u8]) -> Option<Bytes> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).ok()?;
    Some(Bytes::from(out))
}

/// Whether the client accepts `coding` (a `q=0` entry refuses it).
fn accepts(headers: &HeaderMap, coding: &str) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let name = parts.next().unwrap_or("");
            let refused =
                parts.any(|p| p.replace(' ', "") == "q=0" || p.replace(' ', "") == "q=0.0");
            name.eq_ignore_ascii_case(coding) && !refused
        })
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = encoded(path) else {
        return super::error::ApiError::not_found(format!("no asset {path:?}")).into_response();
    };
    let (body, coding) = match (&file.brotli, &file.gzip) {
        (Some(br), _) if accepts(headers, "br") => (br.clone(), Some("br")),
        (_, Some(gz)) if accepts(headers, "gzip") => (gz.clone(), Some("gzip")),
        _ => (file.identity.clone(), None),
    };
    // A strong ETag names one representation, so it differs per coding.
    let etag = match coding {
        Some(c) => format!("\"{}-{c}\"", file.etag),
        None => format!("\"{}\"", file.etag),
    };
    let is_index = path == "index.html";
    // Assets are not fingerprinted, so they are revalidated (cheap: 304);
    // the page itself is never cached so an upgrade shows at once.
    let cache = if is_index { "no-store" } else { "no-cache" };
    let mut response = if !is_index
        && headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, file.content_type.clone())], body).into_response()
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Some(c) = coding {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static(c));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_checks_session_keys_by_the_protocol_s_rule() {
        // The page cannot call proto; its two copies of the rule (boot.js
        // runs before any module) must say what proto says.
        let rule = format!("/{}/", loopchat_proto::SESSION_KEY_PATTERN);
        for file in ["boot.js", "js/util.js"] {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../webchat-dist/").to_owned() + file;
            let text = std::fs::read_to_string(&path).expect("webchat-dist file");
            assert!(
                text.contains(&rule),
                "{file} does not check keys with {rule}"
            );
        }
    }

    #[test]
    fn accept_encoding_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            "gzip, deflate, br;q=0".parse().unwrap(),
        );
        assert!(accepts(&h, "gzip"));
        assert!(!accepts(&h, "br"));
        h.insert(header::ACCEPT_ENCODING, "BR".parse().unwrap());
        assert!(accepts(&h, "br"));
    }

    #[test]
    fn compressed_variants_round_trip() {
        let data = b"hello hello hello hello hello hello hello hello".repeat(20);
        let gz = gzip(&data).unwrap();
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out).unwrap();
        assert_eq!(out, data);
        let br = brotli(&data).unwrap();
        let mut out = Vec::new();
        brotli::BrotliDecompress(&mut &br[..], &mut out).unwrap();
        assert_eq!(out, data);
        assert!(br.len() < data.len() / 4);
    }
}
