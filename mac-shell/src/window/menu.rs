//! The window's menu (muda: tao has no menus of its own).

use muda::accelerator::{Accelerator, Code, Modifiers};
use muda::{CheckMenuItem, Menu, MenuId, MenuItem, PredefinedMenuItem, Submenu};

/// What a menu entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MenuCommand {
    Reload,
    NewChat,
    ToggleAlertsPause,
    /// Asks for confirmation first (the window shows a question page).
    StopRelay,
    Quit,
}

const RELOAD: &str = "reload";
const NEW_CHAT: &str = "new-chat";
const ALERTS: &str = "alerts-pause";
const STOP_RELAY: &str = "stop-relay";
const QUIT: &str = "quit";

impl MenuCommand {
    pub fn from_id(id: &MenuId) -> Option<Self> {
        Some(match id.as_ref() {
            RELOAD => Self::Reload,
            NEW_CHAT => Self::NewChat,
            ALERTS => Self::ToggleAlertsPause,
            STOP_RELAY => Self::StopRelay,
            QUIT => Self::Quit,
            _ => return None,
        })
    }
}

/// The menu bar and the one item whose state changes.
pub(crate) struct ShellMenu {
    pub menu: Menu,
    pub alerts: CheckMenuItem,
}

/// `can_stop_relay`: local mode. A remote relay is never stopped from here
/// (it serves whoever else is connected to it).
pub(crate) fn build(alerts_paused: bool, can_stop_relay: bool) -> Result<ShellMenu, muda::Error> {
    let ctrl = |code| Some(Accelerator::new(Modifiers::CONTROL, code));
    let alerts = CheckMenuItem::with_id(ALERTS, "Pause alerts", true, alerts_paused, None);
    let stop = MenuItem::with_id(
        STOP_RELAY,
        "Stop relay…",
        can_stop_relay,
        Some(Accelerator::new(
            Modifiers::CONTROL | Modifiers::SHIFT,
            Code::KeyS,
        )),
    );
    let chat = Submenu::with_items(
        "Chat",
        true,
        &[
            &MenuItem::with_id(RELOAD, "Reload", true, ctrl(Code::KeyR)),
            &MenuItem::with_id(NEW_CHAT, "New chat", true, ctrl(Code::KeyN)),
            &alerts,
            &PredefinedMenuItem::separator(),
            &stop,
            &PredefinedMenuItem::separator(),
            &MenuItem::with_id(QUIT, "Quit", true, ctrl(Code::KeyQ)),
        ],
    )?;
    let menu = Menu::new();
    menu.append(&chat)?;
    Ok(ShellMenu { menu, alerts })
}
