//! One tool call of a run: checked, decided (policy, approval), run, and
//! its progress published as `tool.*` events. The result goes back to the
//! turn, which stores it as a `toolResult` message.

use std::time::{Duration, Instant};

use loopchat_proto::{ApprovalChoice, ApprovalDecision, EventBody, PendingApproval, ToolStatus};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::SessionRuntime;
use crate::agent::ToolCall;
use crate::tools::{Policy, Toolbox};

/// The tools of the pipeline and how runs use them.
pub struct ToolRuntime {
    pub toolbox: Toolbox,
    /// Tool steps one run may take.
    pub max_steps: usize,
    /// An unanswered approval is denied after this.
    pub approval_timeout: Duration,
}

/// What a call produced, for the `toolResult` message.
pub(super) struct CallResult {
    pub content: Vec<Value>,
    pub is_error: bool,
}

impl CallResult {
    fn text(status: ToolStatus, text: impl Into<String>) -> Self {
        Self {
            content: vec![json!({"type": "text", "text": text.into()})],
            is_error: status != ToolStatus::Ok,
        }
    }
}

pub(super) struct Step<'a> {
    pub tools: &'a ToolRuntime,
    pub rt: &'a SessionRuntime,
    pub run_id: &'a str,
    pub cancel: &'a CancellationToken,
}

impl Step<'_> {
    fn publish(&self, body: EventBody) {
        self.rt.events.publish(body);
    }

    fn end(&self, call_id: &str, status: ToolStatus, started: Instant) {
        self.publish(EventBody::ToolEnd {
            run_id: self.run_id.to_owned(),
            call_id: call_id.to_owned(),
            status,
            duration_ms: started.elapsed().as_millis() as u64,
        });
    }

    /// A call refused before it ran: a card (start and end) and the reason
    /// as the result.
    fn refused(&self, call: &ToolCall, args: Value, status: ToolStatus, why: String) -> CallResult {
        let now = Instant::now();
        self.publish(EventBody::ToolStart {
            run_id: self.run_id.to_owned(),
            call_id: call.id.clone(),
            name: call.name.clone(),
            args,
        });
        self.end(&call.id, status, now);
        CallResult::text(status, why)
    }

    /// Runs `call`; `arrived` is when the model's reply with it was
    /// complete (for the relay's per-step cost, logged at debug).
    pub(super) async fn run(&self, call: &ToolCall, arrived: Instant) -> CallResult {
        let toolbox = &self.tools.toolbox;
        let args = match toolbox.prepare(&call.name, &call.arguments) {
            Ok(a) => a,
            Err(why) => {
                let raw = serde_json::from_str(&call.arguments)
                    .unwrap_or_else(|_| Value::String(call.arguments.clone()));
                return self.refused(call, raw, ToolStatus::Error, why);
            }
        };
        match toolbox.policy(&call.name) {
            Policy::Allow => {}
            Policy::Deny => {
                let why = format!(
                    "The tool {} is not allowed by the relay's policy; it was not run.",
                    call.name
                );
                return self.refused(call, args, ToolStatus::Denied, why);
            }
            Policy::Ask if self.rt.approvals.allowed_for_session(&call.name) => {}
            Policy::Ask => {
                if let Some(refusal) = self.approval(call, &args).await {
                    return refusal;
                }
            }
        }
        let started = Instant::now();
        self.publish(EventBody::ToolStart {
            run_id: self.run_id.to_owned(),
            call_id: call.id.clone(),
            name: call.name.clone(),
            args: args.clone(),
        });
        tracing::debug!(target: "loopchat_relay::timing", step = "tool_calls_to_start", us = arrived.elapsed().as_micros() as u64, "tool step cost");
        let events = self.rt.events.clone();
        let (run_id, call_id) = (self.run_id.to_owned(), call.id.clone());
        let on_output = move |text: String| {
            events.publish(EventBody::ToolUpdate {
                run_id: run_id.clone(),
                call_id: call_id.clone(),
                text,
            });
        };
        let ran = Instant::now();
        let out = toolbox
            .run(&call.name, &args, &on_output, self.cancel)
            .await;
        tracing::debug!(target: "loopchat_relay::timing", step = "tool_run", us = ran.elapsed().as_micros() as u64, "tool run");
        let status = if self.cancel.is_cancelled() {
            ToolStatus::Aborted
        } else if out.is_error {
            ToolStatus::Error
        } else {
            ToolStatus::Ok
        };
        self.end(&call.id, status, started);
        CallResult {
            content: out.content,
            is_error: out.is_error,
        }
    }

    /// Waits for the user's decision; `None` when the call may run.
    async fn approval(&self, call: &ToolCall, args: &Value) -> Option<CallResult> {
        let timeout = self.tools.approval_timeout;
        let expires_at = crate::clock::rfc3339_from_millis(
            crate::clock::now_millis() + timeout.as_millis() as i64,
        );
        let info = PendingApproval {
            run_id: self.run_id.to_owned(),
            call_id: call.id.clone(),
            name: call.name.clone(),
            args: args.clone(),
            expires_at: expires_at.clone(),
        };
        let answer = self.rt.approvals.ask(info);
        self.publish(EventBody::ToolApproval {
            run_id: self.run_id.to_owned(),
            call_id: call.id.clone(),
            name: call.name.clone(),
            args: args.clone(),
            expires_at,
        });
        let decision = tokio::select! {
            biased;
            () = self.cancel.cancelled() => ApprovalDecision::Cancelled,
            a = answer => match a {
                Ok(ApprovalChoice::Approve) => ApprovalDecision::Approved,
                Ok(ApprovalChoice::AllowSession) => ApprovalDecision::ApprovedForSession,
                Ok(ApprovalChoice::Deny) => ApprovalDecision::Denied,
                Err(_) => ApprovalDecision::Cancelled,
            },
            () = tokio::time::sleep(timeout) => ApprovalDecision::Expired,
        };
        self.rt.approvals.withdraw(&call.id);
        self.publish(EventBody::ToolApprovalResolved {
            run_id: self.run_id.to_owned(),
            call_id: call.id.clone(),
            decision,
        });
        let now = Instant::now();
        let (status, why) = match decision {
            ApprovalDecision::Approved | ApprovalDecision::ApprovedForSession => return None,
            ApprovalDecision::Denied => (
                ToolStatus::Denied,
                "The user denied this tool call; it was not run.".to_owned(),
            ),
            ApprovalDecision::Expired => (
                ToolStatus::Denied,
                format!(
                    "No one approved this tool call within {} seconds, so it was denied and not run.",
                    timeout.as_secs()
                ),
            ),
            ApprovalDecision::Cancelled => (ToolStatus::Aborted, "Operation aborted".to_owned()),
        };
        self.end(&call.id, status, now);
        Some(CallResult::text(status, why))
    }
}

/// The result stored for a call that was never started: the run was
/// stopped, or it reached its step limit.
pub(super) fn not_run(
    step: &Step<'_>,
    call: &ToolCall,
    status: ToolStatus,
    why: String,
) -> CallResult {
    let now = Instant::now();
    step.end(&call.id, status, now);
    CallResult::text(status, why)
}
