//! The few pages the shell shows itself: "connecting", an error with a
//! Retry button, and the questions (unknown host key, key passphrase).
//!
//! Every piece of text is HTML-escaped: error messages quote remote data
//! (a discovery file, a server's words) that must not become markup. The
//! buttons talk back through `window.ipc.postMessage`.

/// Minimal escaping for text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
  :root { color-scheme: light dark; }
  body { font: 15px/1.45 system-ui, sans-serif; margin: 0; padding: 48px;
         background: #f6f7f9; color: #1d232b; }
  @media (prefers-color-scheme: dark) { body { background: #16191d; color: #e4e7eb; } }
  main { max-width: 720px; margin: 0 auto; }
  h1 { font-size: 20px; margin: 0 0 8px; }
  .step { display: inline-block; font-size: 12px; text-transform: uppercase; letter-spacing: .06em;
          background: #c0392b; color: #fff; border-radius: 4px; padding: 2px 8px; margin-bottom: 16px; }
  .ask { background: #2d6cdf; }
  pre { white-space: pre-wrap; word-break: break-word; background: rgba(127,127,127,.12);
        border-radius: 6px; padding: 12px 14px; font: 13px/1.5 ui-monospace, monospace; }
  button { font: inherit; padding: 8px 18px; border-radius: 6px; border: 1px solid #2d6cdf;
           background: #2d6cdf; color: #fff; cursor: pointer; margin-right: 8px; }
  button.secondary { background: transparent; color: inherit; border-color: rgba(127,127,127,.6); }
  input { font: inherit; padding: 7px 10px; width: 60%; border-radius: 6px; border: 1px solid rgba(127,127,127,.6); }
";

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\">\
         <title>{}</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>",
        escape(title)
    )
}

pub(crate) fn status(text: &str) -> String {
    document(
        "loopchat",
        &format!("<h1>loopchat</h1><p>{}</p>", escape(text)),
    )
}

/// The page shown when a step failed; Retry posts `retry`.
pub(crate) fn error(step: &str, message: &str) -> String {
    document(
        "loopchat: web chat server unreachable",
        &format!(
            "<span class=\"step\">{} failed</span>\
             <h1>Web chat server unreachable</h1>\
             <pre id=\"message\">{}</pre>\
             <p><button id=\"retry\" onclick=\"window.ipc.postMessage('retry')\">Retry</button></p>",
            escape(step),
            escape(message)
        ),
    )
}

/// Unknown host: shows the fingerprint; posts `hostkey:yes` / `hostkey:no`.
pub(crate) fn host_key(host: &str, key_type: &str, fingerprint: &str, known_hosts: &str) -> String {
    document(
        "loopchat: unknown host",
        &format!(
            "<span class=\"step ask\">host key</span>\
             <h1>Trust {host}?</h1>\
             <p>This SSH server is not in <code>{kh}</code>. Its key:</p>\
             <pre>{key_type} {fingerprint}</pre>\
             <p>Compare it with the server's own (<code>ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub</code> there). \
             If it matches, trust it: it will be recorded and checked from now on.</p>\
             <p><button id=\"trust\" autofocus onclick=\"window.ipc.postMessage('hostkey:yes')\">Trust and connect</button>\
             <button class=\"secondary\" onclick=\"window.ipc.postMessage('hostkey:no')\">Cancel</button></p>",
            host = escape(host),
            kh = escape(known_hosts),
            key_type = escape(key_type),
            fingerprint = escape(fingerprint),
        ),
    )
}

/// Encrypted identity file: posts `passphrase:<text>` or `passphrase-skip`.
pub(crate) fn passphrase(key: &str) -> String {
    document(
        "loopchat: passphrase",
        &format!(
            "<span class=\"step ask\">auth</span>\
             <h1>Passphrase needed</h1>\
             <p>The key <code>{}</code> is encrypted.</p>\
             <form onsubmit=\"window.ipc.postMessage('passphrase:' + document.getElementById('p').value); return false;\">\
             <p><input id=\"p\" type=\"password\" autofocus autocomplete=\"off\"></p>\
             <p><button type=\"submit\">Unlock</button>\
             <button type=\"button\" class=\"secondary\" onclick=\"window.ipc.postMessage('passphrase-skip')\">Skip this key</button></p>\
             </form>",
            escape(key)
        ),
    )
}

/// "Stop the relay?": posts `stop:yes` / `stop:no`. `Escape` cancels.
pub(crate) fn confirm_stop(home: &str) -> String {
    document(
        "loopchat: stop the relay?",
        &format!(
            "<span class=\"step ask\">stop relay</span>\
             <h1>Stop the relay?</h1>\
             <p>The relay serving <code>{}</code> stops: running replies end, every window and \
             browser tab on it goes offline, and scripts can no longer send alerts until it is \
             started again. Your chats are kept.</p>\
             <p><button id=\"stop\" autofocus onclick=\"window.ipc.postMessage('stop:yes')\">Stop relay</button>\
             <button id=\"cancel\" class=\"secondary\" onclick=\"window.ipc.postMessage('stop:no')\">Cancel</button></p>\
             <script>document.addEventListener('keydown', e => {{ if (e.key === 'Escape') window.ipc.postMessage('stop:no'); }});</script>",
            escape(home)
        ),
    )
}

/// No relay on the remote host: shows what will run there; posts
/// `relaystart:yes` / `relaystart:no`.
pub(crate) fn relay_start(host: &str, reason: &str, command: &str) -> String {
    document(
        "loopchat: start a relay?",
        &format!(
            "<span class=\"step ask\">remote relay</span>\
             <h1>No relay runs on {host}</h1>\
             <pre>{reason}</pre>\
             <p>Start one there now, over this SSH connection? It keeps running after you close the \
             shell and log out. This runs on {host}:</p>\
             <pre id=\"command\">{command}</pre>\
             <p><button id=\"start\" autofocus onclick=\"window.ipc.postMessage('relaystart:yes')\">Start the relay</button>\
             <button class=\"secondary\" onclick=\"window.ipc.postMessage('relaystart:no')\">Cancel</button></p>",
            host = escape(host),
            reason = escape(reason),
            command = escape(command),
        ),
    )
}

/// After "Stop relay": says so, with a button that starts it again
/// (posts `retry`, like the error page).
pub(crate) fn stopped(home: &str) -> String {
    document(
        "loopchat: relay stopped",
        &format!(
            "<span class=\"step ask\">stopped</span>\
             <h1>The relay is stopped</h1>\
             <p>Nothing serves <code>{}</code> now. Quitting the shell leaves it stopped; \
             starting the shell again starts it.</p>\
             <p><button id=\"retry\" autofocus onclick=\"window.ipc.postMessage('retry')\">Start it again</button></p>",
            escape(home)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_page_escapes() {
        let html = error("discovery", "<script>alert(1)</script> & \"x\"");
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;x&quot;"));
        assert!(html.contains("discovery failed"));
        assert!(html.contains("postMessage('retry')"));
    }

    #[test]
    fn question_pages_escape() {
        assert!(host_key("<h>", "t", "SHA256:x", "/k").contains("Trust &lt;h&gt;?"));
        assert!(passphrase("/a'b").contains("/a&#39;b"));
        assert!(relay_start("h", "r", "a && b <x>").contains("a &amp;&amp; b &lt;x&gt;"));
        assert!(confirm_stop("/h<x>").contains("/h&lt;x&gt;"));
        assert!(stopped("/h<x>").contains("postMessage('retry')"));
    }
}
