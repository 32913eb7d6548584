//! The window's menu (muda: tao has no menus of its own).

use muda::accelerator::{Accelerator, Code, Modifiers};
use muda::{CheckMenuItem, Menu, MenuId, MenuItem, PredefinedMenuItem, Submenu};

/// What a menu entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MenuCommand {
    Reload,
    NewChat,
    ToggleAlertsPause,
    Quit,
}

const RELOAD: &str = "reload";
const NEW_CHAT: &str = "new-chat";
const ALERTS: &str = "alerts-pause";
const QUIT: &str = "quit";

impl MenuCommand {
    pub fn from_id(id: &MenuId) -> Option<Self> {
        Some(match id.as_ref() {
            RELOAD => Self::Reload,
            NEW_CHAT => Self::NewChat,
            ALERTS => Self::ToggleAlertsPause,
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

pub(crate) fn build(alerts_paused: bool) -> Result<ShellMenu, muda::Error> {
    let ctrl = |code| Some(Accelerator::new(Modifiers::CONTROL, code));
    let alerts = CheckMenuItem::with_id(ALERTS, "Pause alerts", true, alerts_paused, None);
    let chat = Submenu::with_items(
        "Chat",
        true,
        &[
            &MenuItem::with_id(RELOAD, "Reload", true, ctrl(Code::KeyR)),
            &MenuItem::with_id(NEW_CHAT, "New chat", true, ctrl(Code::KeyN)),
            &alerts,
            &PredefinedMenuItem::separator(),
            &MenuItem::with_id(QUIT, "Quit", true, ctrl(Code::KeyQ)),
        ],
    )?;
    let menu = Menu::new();
    menu.append(&chat)?;
    Ok(ShellMenu { menu, alerts })
}
