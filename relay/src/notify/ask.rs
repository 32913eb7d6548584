//! "Ask the agent about this alert": the first message of that turn.

use loopchat_proto::Notification;

/// Everything the agent needs to start investigating, as plain text. The
/// body and output are quoted as given: the agent reads them as data from
/// the alert, which the prompt says.
pub fn prompt(n: &Notification, image_attached: bool) -> String {
    let mut out = String::from(
        "Please investigate this alert. Everything below the line comes from the alert itself.\n\n---\n",
    );
    let title = if n.title.is_empty() {
        "(no title)"
    } else {
        &n.title
    };
    out.push_str(&format!("Alert: {title}\n"));
    out.push_str(&format!(
        "Id: {} · priority {} · {}\n",
        n.id, n.priority, n.timestamp
    ));
    if let Some(source) = &n.source {
        out.push_str(&format!("Raised by: {source}\n"));
    }
    if !n.tags.is_empty() {
        out.push_str(&format!("Tags: {}\n", n.tags.join(", ")));
    }
    if let Some(c) = &n.check {
        let exit = c.exit_code.map_or_else(
            || "none (killed or not started)".to_owned(),
            |e| e.to_string(),
        );
        out.push_str(&format!(
            "Check: {} · state {} · exit code {exit} · {} ms\n",
            c.name, c.state, c.duration_ms
        ));
    }
    if let Some(image) = &n.image {
        out.push_str(&format!(
            "Image: {image}{}\n",
            if image_attached {
                " (attached to this message)"
            } else {
                ""
            }
        ));
    }
    if !n.body.is_empty() {
        out.push_str(&format!("\nBody:\n{}\n", n.body));
    }
    if let Some(c) = &n.check
        && !c.output.trim().is_empty()
        && !n.body.contains(c.output.trim())
    {
        out.push_str(&format!(
            "\nOutput tail:\n```\n{}\n```\n",
            c.output.trim_end()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_the_alert() {
        let n = Notification {
            id: "check:disk".into(),
            title: "disk failing (exit 1)".into(),
            body: "```\n/ is 97% full\n```".into(),
            priority: 4,
            image: Some("ab.png".into()),
            check: Some(loopchat_proto::CheckOutcome {
                name: "disk".into(),
                exit_code: Some(1),
                duration_ms: 12,
                output: "/ is 97% full\n".into(),
                state: "failing".into(),
            }),
            ..Default::default()
        };
        let p = prompt(&n, true);
        for part in [
            "disk failing (exit 1)",
            "/ is 97% full",
            "exit code 1",
            "Check: disk",
            "ab.png (attached",
        ] {
            assert!(p.contains(part), "{part}: {p}");
        }
        assert_eq!(p.matches("97% full").count(), 1, "output not repeated");
    }
}
