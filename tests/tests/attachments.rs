//! Issue 17 item 6: text files and PDFs as attachments (Decision 82). The
//! file's text reaches the model — the `command` backend here is `cat`, so
//! the reply is exactly what the model was given — the file downloads back
//! byte for byte, the limits are served by `/webchat/info`, and every kind of
//! bad file is refused with a clear error and leaves nothing behind.

use loopchat_tests::{Relay, RelayOptions, all_messages};
use serde_json::{Value, json};

/// A minimal valid PDF, written here so the test needs no PDF tool: one page
/// showing `lines` in Helvetica (a standard font, no embedding), with the
/// cross-reference table's offsets computed from the bytes. `None`: a page
/// with no text at all (what a scan looks like to a text extractor).
fn make_pdf(lines: Option<&[&str]>) -> Vec<u8> {
    let content = match lines {
        Some(lines) => {
            let mut c = String::from("BT /F1 14 Tf 72 720 Td 18 TL\n");
            for l in lines {
                c.push_str(&format!("({l}) Tj T*\n"));
            }
            c.push_str("ET\n");
            c
        }
        None => "0 0 m 100 100 l S\n".to_owned(),
    };
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>".to_owned(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{content}endstream", content.len()),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        pdf.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

fn cat_relay(config: &str) -> Relay {
    Relay::start_with(
        RelayOptions::default()
            .env("LOOPCHAT_AGENT", "command")
            .env("LOOPCHAT_AGENT_COMMAND", r#"["cat"]"#)
            .config(config),
    )
}

async fn upload(relay: &Relay, mime: &str, bytes: Vec<u8>) -> (u16, Value) {
    let r = relay
        .client()
        .post("/webchat/attachments")
        .header("content-type", mime)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Files in the home's attachments folder.
fn stored_files(relay: &Relay) -> Vec<String> {
    match std::fs::read_dir(relay.home.join("attachments")) {
        Ok(d) => d
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn a_pdf_and_a_text_file_reach_the_model_and_download_back() {
    let relay = cat_relay("");
    let api = relay.client();

    // The limits the page uses come from the relay.
    let (_, info) = api.get_json("/webchat/info").await;
    let limits = &info["attachments"];
    assert_eq!(limits["maxBytes"], 10 * 1024 * 1024, "{info}");
    assert_eq!(limits["maxCount"], 8);
    let types: Vec<&str> = limits["types"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for t in ["image/png", "text/plain", "application/pdf"] {
        assert!(types.contains(&t), "{types:?}");
    }

    let pdf = make_pdf(Some(&["Quarterly figures", "Apples sold: 4217"]));
    let (status, up) = upload(&relay, "application/pdf", pdf.clone()).await;
    assert_eq!(status, 200, "{up}");
    let pdf_id = up["id"].as_str().unwrap().to_owned();
    assert!(pdf_id.ends_with(".pdf"), "{up}");
    let notes = "Shopping list\n- pears\n- ünïcode ✓\n".as_bytes().to_vec();
    let (status, up) = upload(&relay, "text/plain", notes.clone()).await;
    assert_eq!(status, 200, "{up}");
    let txt_id = up["id"].as_str().unwrap().to_owned();

    let (status, answer) = api
        .rpc(json!({
            "text": "Summarise these.",
            "session": "files",
            "attachments": [
                {"id": pdf_id, "name": "report \"Q3\".pdf"},
                {"id": txt_id, "name": "notes.txt"},
            ],
        }))
        .await;
    assert_eq!(status, 200, "{answer}");
    // `cat` answers with exactly what the model was given.
    let seen = answer["message"]["content"].as_str().unwrap().to_owned();
    assert!(seen.starts_with("Summarise these.\n"), "{seen}");
    let pdf_block = seen
        .split("<file name=\"report Q3.pdf\" type=\"application/pdf\">\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no framed PDF (quotes dropped from the name): {seen}"));
    let pdf_text = pdf_block.split("\n</file>").next().unwrap();
    assert!(pdf_text.contains("Quarterly figures"), "{pdf_text:?}");
    assert!(pdf_text.contains("Apples sold: 4217"), "{pdf_text:?}");
    assert!(
        seen.contains(
            "<file name=\"notes.txt\" type=\"text/plain\">\nShopping list\n- pears\n- ünïcode ✓\n\n</file>"
        ),
        "{seen}"
    );

    // The stored user message shows the files, not their text.
    let messages = all_messages(&api, "files").await;
    let user = messages.iter().find(|m| m["role"] == "user").unwrap();
    let parts = user["content"].as_array().unwrap();
    assert_eq!(parts[0]["text"], "Summarise these.");
    let files: Vec<&Value> = parts
        .iter()
        .filter(|p| p["attachment"].is_string())
        .collect();
    assert_eq!(files.len(), 2, "{user}");
    assert_eq!(files[0]["name"], "report Q3.pdf");
    assert_eq!(files[0]["mimeType"], "application/pdf");
    assert_eq!(files[0]["size"], pdf.len());
    assert_eq!(files[1]["name"], "notes.txt");

    // Each file downloads back byte for byte, as a download.
    for (part, bytes) in [(files[0], &pdf), (files[1], &notes)] {
        let url = part["url"].as_str().unwrap();
        let r = api.get(&format!("/webchat/{url}")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-disposition"], "attachment");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(part["mimeType"].as_str().unwrap())
        );
        assert_eq!(&r.bytes().await.unwrap().to_vec(), bytes);
    }
}

#[tokio::test]
async fn bad_files_are_refused_clearly_and_nothing_is_kept() {
    let relay = cat_relay("attachment_limit = 4096\n");
    let api = relay.client();
    let (_, info) = api.get_json("/webchat/info").await;
    assert_eq!(info["attachments"]["maxBytes"], 4096, "{info}");

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "application/pdf",
            b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R >>\nendobj\ntrailer\n<<>>\n%%EOF\n"
                .to_vec(),
            400,
            "the PDF's text could not be read",
        ),
        (
            "application/pdf",
            b"this is not a PDF".to_vec(),
            400,
            "not a PDF",
        ),
        ("application/pdf", make_pdf(None), 400, "no text"),
        (
            "text/plain",
            vec![0xff, 0xfe, 0x00, 0x41],
            400,
            "not UTF-8 text",
        ),
        (
            "application/zip",
            b"PK\x03\x04".to_vec(),
            415,
            "unsupported attachment type",
        ),
        ("text/plain", vec![b'a'; 5000], 413, "larger than"),
    ];
    for (mime, bytes, status, says) in cases {
        let (got, body) = upload(&relay, mime, bytes).await;
        assert_eq!(got, status, "{mime}: {body}");
        assert_eq!(body["ok"], false);
        let error = body["error"].as_str().unwrap();
        assert!(
            error.contains(says),
            "{mime}: {error:?} should say {says:?}"
        );
    }
    assert!(
        stored_files(&relay).is_empty(),
        "{:?}",
        stored_files(&relay)
    );

    // Too many files, or a name with control characters: a 400 before any
    // turn, and the session stays empty.
    let (_, up) = upload(&relay, "text/plain", b"one".to_vec()).await;
    let id = up["id"].as_str().unwrap();
    let nine: Vec<Value> = (0..9).map(|_| json!({"id": id})).collect();
    let (status, body) = api
        .rpc(json!({"text": "x", "session": "bad", "attachments": nine}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("at most 8"),
        "{body}"
    );
    let (status, body) = api
        .rpc(
            json!({"text": "x", "session": "bad", "attachments": [{"id": id, "name": "a\nb.txt"}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("control characters"),
        "{body}"
    );
    assert!(all_messages(&api, "bad").await.is_empty());
}
