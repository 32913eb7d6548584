//! Tool calls waiting for the user's decision, per session.
//!
//! A run that needs an approval registers the call here and waits on the
//! answer (or its timeout, or its cancel). The approve endpoint answers
//! through [`Approvals::answer`]. What a page needs to show the pending
//! cards after a reload is [`Approvals::pending`].

use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};

use loopchat_proto::{ApprovalChoice, PendingApproval};
use tokio::sync::oneshot;

#[derive(Default)]
pub struct Approvals {
    inner: Mutex<State>,
}

#[derive(Default)]
struct State {
    pending: HashMap<String, (PendingApproval, oneshot::Sender<ApprovalChoice>)>,
    /// Insertion order of `pending`, for a stable list.
    order: Vec<String>,
    /// Tools allowed for the rest of this session ("Allow for this session").
    allowed: HashSet<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no tool call {0:?} is waiting for a decision in this session")]
pub struct NotPending(pub String);

impl Approvals {
    /// Registers a call; the receiver resolves with the decision (or errs
    /// when the entry is dropped unanswered).
    pub(crate) fn ask(&self, info: PendingApproval) -> oneshot::Receiver<ApprovalChoice> {
        let (tx, rx) = oneshot::channel();
        let mut st = self.inner.lock();
        st.order.push(info.call_id.clone());
        st.pending.insert(info.call_id.clone(), (info, tx));
        rx
    }

    /// The user's answer. "Allow for this session" also lets the tool run
    /// unasked from now on.
    pub fn answer(
        &self,
        call_id: &str,
        choice: ApprovalChoice,
    ) -> Result<PendingApproval, NotPending> {
        let mut st = self.inner.lock();
        let Some((info, tx)) = st.pending.remove(call_id) else {
            return Err(NotPending(call_id.to_owned()));
        };
        st.order.retain(|c| c != call_id);
        if choice == ApprovalChoice::AllowSession {
            st.allowed.insert(info.name.clone());
        }
        // The run may have stopped waiting in between: then it was already
        // resolved as expired or cancelled, and this answer changes nothing.
        let _ = tx.send(choice);
        Ok(info)
    }

    /// Forgets a call the run stopped waiting for (timeout, cancel).
    pub(crate) fn withdraw(&self, call_id: &str) {
        let mut st = self.inner.lock();
        st.pending.remove(call_id);
        st.order.retain(|c| c != call_id);
    }

    pub fn pending(&self) -> Vec<PendingApproval> {
        let st = self.inner.lock();
        st.order
            .iter()
            .filter_map(|c| st.pending.get(c).map(|(i, _)| i.clone()))
            .collect()
    }

    pub fn allowed_for_session(&self, tool: &str) -> bool {
        self.inner.lock().allowed.contains(tool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(call: &str, name: &str) -> PendingApproval {
        PendingApproval {
            run_id: "r".into(),
            call_id: call.into(),
            name: name.into(),
            args: serde_json::json!({}),
            expires_at: String::new(),
        }
    }

    #[tokio::test]
    async fn answers_reach_the_waiting_run() {
        let a = Approvals::default();
        let rx = a.ask(info("c1", "bash"));
        let rx2 = a.ask(info("c2", "write"));
        assert_eq!(a.pending().len(), 2);
        a.answer("c1", ApprovalChoice::Deny).unwrap();
        assert_eq!(rx.await.unwrap(), ApprovalChoice::Deny);
        assert_eq!(
            a.answer("c1", ApprovalChoice::Approve),
            Err(NotPending("c1".into()))
        );
        assert!(!a.allowed_for_session("write"));
        a.answer("c2", ApprovalChoice::AllowSession).unwrap();
        assert_eq!(rx2.await.unwrap(), ApprovalChoice::AllowSession);
        assert!(a.allowed_for_session("write"));
        assert!(a.pending().is_empty());
        let rx3 = a.ask(info("c3", "bash"));
        a.withdraw("c3");
        assert!(rx3.await.is_err());
        assert!(a.answer("c3", ApprovalChoice::Approve).is_err());
    }
}
