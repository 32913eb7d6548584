//! Whether the window has the keyboard focus (alerts stay quiet while it
//! does).

use std::sync::Arc;

use tokio::sync::watch;

/// Whether the window has the keyboard focus. Set from any thread (the
/// window's event loop); cheap.
#[derive(Clone)]
pub struct Focus {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Focus {
    fn default() -> Self {
        Self::new(false)
    }
}

impl Focus {
    pub fn new(focused: bool) -> Self {
        Self {
            tx: Arc::new(watch::Sender::new(focused)),
        }
    }

    pub fn set(&self, focused: bool) {
        self.tx
            .send_if_modified(|f| std::mem::replace(f, focused) != focused);
    }

    pub fn get(&self) -> bool {
        *self.tx.borrow()
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn focus_flag() {
        let f = Focus::default();
        let mut rx = f.subscribe();
        assert!(!f.get());
        f.set(true);
        assert!(f.get());
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        f.set(true);
        assert!(!rx.has_changed().unwrap(), "no change, no wake-up");
    }
}
