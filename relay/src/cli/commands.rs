//! The client commands: each one HTTP request (or stream) against the relay.

use std::io::Write;
use std::process::ExitCode;

use anyhow::anyhow;
use futures_util::StreamExt;
use loopchat_proto::{
    AbortRequest, ArchiveRequest, ArchivedResponse, HistoryResponse, InfoResponse, Message,
    NotifyRequest, NotifyResponse, PinRequest, PurgeRequest, RestoreRequest, Role, RpcRequest,
    RpcResponse, SessionsResponse,
};
use serde_json::Value;

use super::Target;
use super::client::{Client, Refused, json, send as send_request};
use loopchat_proto::sse::SseStream;

pub async fn tools(target: &Target, as_json: bool) -> anyhow::Result<ExitCode> {
    let client = Client::connect(target)?;
    let t: loopchat_proto::ToolsResponse = json(client.get("/webchat/tools")).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&t)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !t.enabled {
        println!("tools are off ([tools] enabled = false)");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "workspace  {}{}",
        t.workspace.as_deref().unwrap_or("?"),
        if t.confined {
            " (file tools confined)"
        } else {
            ""
        }
    );
    println!("{:<32} {:<12} policy", "tool", "source");
    for tool in &t.tools {
        println!(
            "{:<32} {:<12} {}{}",
            tool.name,
            tool.source,
            tool.policy,
            if tool.available {
                ""
            } else {
                " (unavailable: server restarting)"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(target: &Target, as_json: bool) -> anyhow::Result<ExitCode> {
    let client = Client::connect(target)?;
    let s: loopchat_proto::StatusResponse = json(client.get("/webchat/status")).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    let c = &s.connections;
    let k = &c.by_kind;
    println!("version      {}", s.version);
    println!("uptime       {} s", s.uptime_secs);
    println!("agent        {}", agent_line(&s.agent));
    println!(
        "connections  {} (sse {}, websocket {}, shell {}, cli {})",
        c.total, k.sse, k.websocket, k.shell, k.cli
    );
    for (token, n) in &c.by_token {
        println!("  token {token}: {n}");
    }
    println!("sessions     {}", s.sessions);
    println!("runs         {} in flight", s.runs_in_flight);
    println!(
        "checks       {} ok, {} failing, {} running",
        s.checks.ok, s.checks.failing, s.checks.running
    );
    println!(
        "journal      {} bytes, {} entries",
        s.journal.bytes, s.journal.entries
    );
    Ok(ExitCode::SUCCESS)
}

/// The backend, and its model when it has one: `openai (qwen)`.
fn agent_line(agent: &loopchat_proto::AgentInfo) -> String {
    match &agent.model {
        Some(m) => format!("{} ({m})", agent.backend),
        None => agent.backend.clone(),
    }
}

pub async fn info(target: &Target, as_json: bool) -> anyhow::Result<ExitCode> {
    let client = Client::connect(target)?;
    let info: InfoResponse = json(client.get("/webchat/info?limit=1")).await?;
    if as_json {
        // The discovery file is the stable, documented shape; with --url
        // there is none, so the info answer stands in.
        let out = match &client.discovery {
            Some(d) => serde_json::to_string_pretty(d)?,
            None => serde_json::to_string_pretty(&info)?,
        };
        println!("{out}");
    } else {
        println!("relay     {}", info.base_url);
        println!("version   {}", info.version);
        println!("agent     {}", agent_line(&info.agent));
        if let Some(d) = &client.discovery {
            println!("pid       {}", d.pid);
            println!("started   {}", d.started_at);
            println!("store     {}", d.store);
        }
        println!(
            "open      {}#token=…  (token: `loopchat info --json`)",
            info.base_url
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn sessions(target: &Target, archived: bool, as_json: bool) -> anyhow::Result<ExitCode> {
    let client = Client::connect(target)?;
    if archived {
        let list: ArchivedResponse = json(client.get("/webchat/archived")).await?;
        if as_json {
            println!("{}", serde_json::to_string_pretty(&list)?);
            return Ok(ExitCode::SUCCESS);
        }
        if list.sessions.is_empty() {
            println!("no archived sessions");
        }
        for s in list.sessions {
            println!(
                "{:<36} {:<24} archived {}  {}",
                s.session_id,
                s.key,
                crate::clock::rfc3339_from_millis(s.archived_at),
                s.title.unwrap_or_default()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let list: SessionsResponse = json(client.get("/webchat/sessions")).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.sessions.is_empty() {
        println!("no sessions yet");
    }
    for s in list.sessions {
        println!(
            "{}{:<24} {}  {}",
            if s.pinned { "* " } else { "  " },
            s.key,
            crate::clock::rfc3339_from_millis(s.updated_at),
            s.title.or(s.preview).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn sessions_action(
    target: &Target,
    action: super::SessionsAction,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    use super::SessionsAction as A;
    let client = Client::connect(target)?;
    let answer: Value = match &action {
        A::Rename { key, title } => {
            // The key goes as typed: the relay's refusal (and its code) is
            // what the user sees.
            let body = serde_json::json!({ "session": key, "name": title });
            json(client.post("/webchat/rename").json(&body)).await?
        }
        A::Delete { key } => {
            let body = ArchiveRequest {
                session: Some(key.clone()),
            };
            json(client.post("/webchat/archive").json(&body)).await?
        }
        A::Restore { session_id } => {
            let body = RestoreRequest {
                session_id: session_id.clone(),
            };
            json(client.post("/webchat/restore").json(&body)).await?
        }
        A::Purge { session_id, all } => {
            let body = PurgeRequest {
                session_id: session_id.clone(),
                all: *all,
            };
            json(client.post("/webchat/purge").json(&body)).await?
        }
        A::Pin { key } | A::Unpin { key } => {
            let body = PinRequest {
                session: Some(key.clone()),
                pinned: matches!(action, A::Pin { .. }),
            };
            json(client.post("/webchat/pin").json(&body)).await?
        }
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &action {
        A::Rename { key, title } if title.trim().is_empty() => println!("{key}: title cleared"),
        A::Rename { key, title } => println!("{key}: renamed to {:?}", title.trim()),
        A::Delete { key } => println!(
            "{key}: archived as {} (loopchat sessions restore {0})",
            answer["archived"]["sessionId"].as_str().unwrap_or("?")
        ),
        A::Restore { .. } => println!(
            "restored as {}",
            answer["session"]["key"].as_str().unwrap_or("?")
        ),
        A::Purge { .. } => println!("purged {}", answer["purged"].as_u64().unwrap_or_default()),
        A::Pin { key } => println!("{key}: pinned"),
        A::Unpin { key } => println!("{key}: unpinned"),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn history(
    target: &Target,
    session: &str,
    limit: usize,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let client = Client::connect(target)?;
    let page: HistoryResponse = json(
        client
            .get("/webchat/history")
            .query(&[("session", session), ("limit", &limit.to_string())]),
    )
    .await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(ExitCode::SUCCESS);
    }
    for m in &page.messages {
        print_message(m);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn search(
    target: &Target,
    query: &str,
    session: Option<&str>,
    limit: usize,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let client = Client::connect(target)?;
    let mut params = vec![("q", query.to_owned()), ("limit", limit.to_string())];
    if let Some(s) = session {
        params.push(("session", s.to_owned()));
    }
    let found: loopchat_proto::SearchResponse =
        json(client.get("/webchat/search").query(&params)).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !found.complete {
        eprintln!("the search index is still catching up: some messages may be missing");
    }
    if found.hits.is_empty() {
        println!("no match");
    }
    for hit in &found.hits {
        let title = hit
            .title
            .as_deref()
            .map(|t| format!(" \"{t}\""))
            .unwrap_or_default();
        println!(
            "{}{title}  {}  {}\n  {}\n",
            hit.session,
            hit.timestamp,
            hit.message_id,
            hit.snippet.replace('\n', " ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn print_message(m: &Message) {
    let who = match m.role {
        Role::User => "you",
        Role::Assistant => "agent",
        Role::System => "system",
        Role::ToolResult => "tool",
    };
    let note = m
        .stop_reason
        .as_deref()
        .map(|r| format!(" [{r}]"))
        .unwrap_or_default();
    println!("{who} ({}){note}:\n{}\n", m.timestamp, m.content.text());
}

/// `loopchat send`'s own arguments (the relay target is flattened beside them).
#[derive(clap::Args)]
pub struct SendArgs {
    // Free text may start with `-` ("-5 is negative"); flags after it still parse.
    #[arg(allow_hyphen_values = true)]
    pub text: String,
    #[arg(long, default_value = "main")]
    pub session: String,
    /// Print tokens as they arrive (Ctrl-C aborts the run).
    #[arg(long)]
    pub stream: bool,
    #[arg(long)]
    pub thinking: Option<String>,
    /// Idempotency key: a retry with the same id never makes a second turn.
    #[arg(long)]
    pub id: Option<String>,
    /// Also post the reply as a notification to every window and shell.
    #[arg(long, conflicts_with = "to")]
    pub deliver: bool,
    /// Send the reply to this configured target (`[targets.NAME]`) instead.
    #[arg(long, value_name = "NAME")]
    pub to: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// Approve every tool call of this turn that asks (for scripts).
    #[arg(long, conflicts_with = "deny_all")]
    pub approve: bool,
    /// Deny every tool call of this turn that asks (for scripts).
    #[arg(long)]
    pub deny_all: bool,
}

/// How `send` answers a `tool.approval`: the flag, else a question on the
/// terminal; without either the call waits for a window (or its expiry).
#[derive(Clone, Copy)]
enum Answer {
    All(&'static str),
    Ask,
    Leave,
}

async fn answer_approval(client: &Client, session: &str, v: &Value, how: Answer) {
    let call = v["callId"].as_str().unwrap_or_default().to_owned();
    let name = v["name"].as_str().unwrap_or("?").to_owned();
    let shown = match v["args"].get("command").and_then(Value::as_str) {
        Some(cmd) => cmd.to_owned(),
        None => v["args"].to_string(),
    };
    let decision = match how {
        Answer::All(d) => d,
        Answer::Leave => {
            eprintln!("[tool {name} waits for approval in a window: {shown}]");
            return;
        }
        Answer::Ask => {
            eprint!("\nAllow {name}: {shown}\n[y]es / [n]o / [a]lways this session? ");
            let line = tokio::task::spawn_blocking(|| {
                let mut l = String::new();
                std::io::stdin().read_line(&mut l).map(|_| l)
            })
            .await;
            match line.ok().and_then(Result::ok).as_deref().map(str::trim) {
                Some("y" | "yes") => "approve",
                Some("a" | "always") => "allowSession",
                _ => "deny",
            }
        }
    };
    let body = serde_json::json!({"session": session, "callId": call, "decision": decision});
    if let Err(e) = send_request(client.post("/webchat/approve").json(&body)).await {
        eprintln!("could not answer the approval of {name}: {e}");
    }
}

/// `body` as JSON with the session key as the user typed it: the relay
/// judges keys, so a bad one gets its refusal (and the protocol's code).
fn with_session(body: &impl serde::Serialize, session: Option<&str>) -> anyhow::Result<Value> {
    let mut body = serde_json::to_value(body)?;
    if let Some(key) = session {
        body["session"] = key.into();
    }
    Ok(body)
}

pub async fn send(target: &Target, args: SendArgs) -> anyhow::Result<ExitCode> {
    let client = Client::connect(target)?;
    let body = RpcRequest {
        text: args.text,
        thinking: args.thinking,
        id: args.id,
        stream: Some(args.stream),
        deliver: args.deliver.then_some(true),
        to: args.to,
        ..Default::default()
    };
    let body = with_session(&body, Some(&args.session))?;
    use std::io::IsTerminal as _;
    let how = if args.approve {
        Answer::All("approve")
    } else if args.deny_all {
        Answer::All("deny")
    } else if std::io::stdin().is_terminal() {
        Answer::Ask
    } else {
        Answer::Leave
    };
    if !args.stream {
        // The session's events beside the rpc, subscribed first, for the
        // approvals the turn may ask for.
        let events =
            send_request(client.get(&format!("/webchat/events?session={}", args.session))).await?;
        let watch = {
            let client = client.clone();
            let session = args.session.clone();
            async move {
                let mut events = SseStream::new(Box::pin(events.bytes_stream()));
                while let Some(Ok(data)) = events.next().await {
                    let Ok(v) = serde_json::from_str::<Value>(&data) else {
                        continue;
                    };
                    if v["type"] == "tool.approval" {
                        answer_approval(&client, &session, &v, how).await;
                    }
                }
                std::future::pending::<()>().await;
            }
        };
        let reply: RpcResponse = tokio::select! {
            r = json(client.post("/webchat/rpc").json(&body)) => r?,
            () = watch => unreachable!("the watch never ends"),
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&reply)?);
        } else {
            println!("{}", reply.message.content.text());
        }
        return Ok(ExitCode::SUCCESS);
    }

    let response = send_request(client.post("/webchat/rpc").json(&body)).await?;
    let mut events = SseStream::new(Box::pin(response.bytes_stream()));
    let mut run_id: Option<String> = None;
    let mut stdout = std::io::stdout();
    loop {
        let next = tokio::select! {
            e = events.next() => e,
            _ = tokio::signal::ctrl_c() => {
                // Stop the run on the relay, not just our view of it.
                let abort = AbortRequest { session: None, run_id: run_id.clone() };
                let abort = with_session(&abort, Some(&args.session))?;
                let _ = send_request(client.post("/webchat/abort").json(&abort)).await;
                eprintln!("\naborted");
                return Ok(ExitCode::from(130));
            }
        };
        let Some(event) = next else {
            return Err(anyhow!("the relay closed the stream before the run ended"));
        };
        let data = event.map_err(|e| anyhow!("broken event stream: {e}"))?;
        let v: Value = serde_json::from_str(&data)?;
        if args.json {
            println!("{data}");
        }
        match v.get("type").and_then(Value::as_str) {
            Some("run.start") => run_id = v["runId"].as_str().map(str::to_owned),
            Some("tool.approval") => answer_approval(&client, &args.session, &v, how).await,
            Some("delta") if !args.json => {
                let _ = write!(stdout, "{}", v["text"].as_str().unwrap_or(""));
                let _ = stdout.flush();
            }
            Some("done") => {
                if !args.json {
                    println!();
                }
                return Ok(ExitCode::SUCCESS);
            }
            Some("error") => {
                return Err(anyhow!(
                    "{} ({})",
                    v["error"].as_str().unwrap_or("the run failed"),
                    v["code"].as_str().unwrap_or("error")
                ));
            }
            _ => {}
        }
    }
}

/// Exit status when the relay says "not now" (rate limited): sysexits'
/// EX_TEMPFAIL, so a cron wrapper can tell "retry later" from "wrong".
pub const EXIT_TRY_LATER: u8 = 75;

/// `loopchat notify`'s own arguments (the relay target is flattened beside them).
#[derive(clap::Args)]
pub struct NotifyArgs {
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub title: String,
    /// The text; `-` reads it from stdin.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub body: String,
    /// 1 (lowest) to 5 (highest); default 3.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub priority: Option<u8>,
    /// A tag (repeatable, at most 10).
    #[arg(long = "tag", allow_hyphen_values = true)]
    pub tags: Vec<String>,
    /// Opened on click: a page of the relay, as a path under /webchat/
    /// (e.g. /webchat/?session=main). Links to other sites are refused.
    #[arg(long)]
    pub click: Option<String>,
    /// The session it is about.
    #[arg(long)]
    pub session: Option<String>,
    /// Reusing an id updates that notification instead of adding one.
    #[arg(long)]
    pub id: Option<String>,
    /// Attach a PNG, JPEG, GIF or WebP image (at most 512 KiB).
    #[arg(long, value_name = "FILE")]
    pub image: Option<std::path::PathBuf>,
    /// Print the relay's answer as JSON instead of the id.
    #[arg(long)]
    pub json: bool,
}

/// The file as a notify `image`, checked here first so that a wrong file
/// is named in the error rather than reported as a relay refusal.
fn read_image(path: &std::path::Path) -> anyhow::Result<loopchat_proto::NotifyImage> {
    use base64::Engine;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| anyhow!("cannot read --image {shown}: {e}"))?;
    let max = loopchat_proto::MAX_ALERT_IMAGE_BYTES;
    if meta.len() > max as u64 {
        return Err(anyhow!(
            "--image {shown} is {} bytes; the limit is {max} (512 KiB): scale it down or compress it",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| anyhow!("cannot read --image {shown}: {e}"))?;
    let mime = crate::attachments::sniff(&bytes)
        .ok_or_else(|| anyhow!("--image {shown} is not a PNG, JPEG, GIF or WebP image"))?;
    Ok(loopchat_proto::NotifyImage {
        mime_type: mime.to_owned(),
        data: base64::engine::general_purpose::STANDARD.encode(&bytes),
    })
}

pub async fn notify(target: &Target, args: NotifyArgs) -> anyhow::Result<ExitCode> {
    let body = if args.body == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| anyhow!("cannot read the body from stdin: {e}"))?;
        text.trim_end().to_owned()
    } else {
        args.body
    };
    let image = args.image.as_deref().map(read_image).transpose()?;
    let client = Client::connect(target)?;
    let request = NotifyRequest {
        title: args.title,
        body,
        priority: args.priority,
        tags: args.tags,
        click: args.click,
        session: None,
        id: args.id,
        image,
    };
    let request = with_session(&request, args.session.as_deref())?;
    let answer = json::<NotifyResponse>(
        client
            .post("/webchat/notify")
            .timeout(std::time::Duration::from_secs(30))
            .json(&request),
    )
    .await;
    match answer {
        Ok(r) if args.json => println!("{}", serde_json::to_string(&r)?),
        Ok(r) => println!("{}", r.id),
        Err(e) => {
            if let Some(refused) = e.downcast_ref::<Refused>()
                && refused.status == 429
            {
                eprintln!("loopchat: {refused}");
                return Ok(ExitCode::from(EXIT_TRY_LATER));
            }
            return Err(e);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn check_list(target: &Target, as_json: bool) -> anyhow::Result<ExitCode> {
    let client = Client::connect(target)?;
    let list: loopchat_proto::ChecksResponse = json(client.get("/webchat/checks")).await?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if list.checks.is_empty() {
        println!("no checks configured (add [[checks]] to config.toml)");
    }
    for c in list.checks {
        let last = c.last_run.as_ref().map_or_else(
            || "never ran".to_owned(),
            |r| {
                let exit = r
                    .exit_code
                    .map_or_else(|| "killed".to_owned(), |e| format!("exit {e}"));
                format!("last {} ({exit}, {} ms)", r.started_at, r.duration_ms)
            },
        );
        let status = if c.running {
            format!("{} (running)", c.status)
        } else {
            c.status
        };
        println!(
            "{:<20} {:<18} {:<16} {last}  next {}",
            c.name,
            status,
            c.schedule,
            c.next_run.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn check_run(target: &Target, name: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let client = Client::connect(target)?;
    let path = format!("/webchat/checks/{}/run", percent_encode_segment(name));
    let answer = json::<loopchat_proto::CheckRunResponse>(client.post(&path)).await;
    let r = match answer {
        Ok(r) => r.run,
        Err(e) => {
            eprintln!("loopchat: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    if as_json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let exit = r
            .exit_code
            .map_or_else(|| "no exit code".to_owned(), |e| format!("exit {e}"));
        let how = if r.timed_out { ", timed out" } else { "" };
        println!("{name}: {exit}{how}, {} ms", r.duration_ms);
        if !r.output.is_empty() {
            println!("{}", r.output.trim_end());
        }
    }
    Ok(if r.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub async fn ask_alert(
    target: &Target,
    id: &str,
    session: Option<String>,
    as_json: bool,
) -> anyhow::Result<ExitCode> {
    let client = Client::connect(target)?;
    let path = format!("/webchat/notifications/{}/ask", percent_encode_segment(id));
    let r: loopchat_proto::AskAlertResponse = json(client.post(&path).json(&with_session(
        &loopchat_proto::AskAlertRequest { session: None },
        session.as_deref(),
    )?))
    .await?;
    if as_json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("{}", r.session);
    }
    Ok(ExitCode::SUCCESS)
}

/// A name or id as one path segment (they are ASCII of a small alphabet
/// when valid; anything else is escaped so the relay can say it is unknown).
fn percent_encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"._:-".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
