//! The IPC contract between the UI and the desktop shell.
//!
//! Each command is a type implementing [`Command`]: its name, its arguments and
//! its output are declared once here, so the Yew side and the Tauri side cannot
//! drift apart. The shell's build script grants exactly [`COMMANDS`] in the app's
//! ACL manifest; nothing else is callable from the webview.

use serde::{Serialize, de::DeserializeOwned};

use crate::app::AppInfo;

/// A command the UI can invoke.
pub trait Command {
    /// The command's name as registered with Tauri (snake_case).
    const NAME: &'static str;
    /// Arguments, serialised as the invoke payload (camelCase keys).
    type Args: Serialize + DeserializeOwned;
    /// What the command answers on success. Failures are [`crate::ErrorBody`].
    type Output: Serialize + DeserializeOwned;
}

/// An event the shell emits to the UI.
pub trait Event {
    const NAME: &'static str;
    type Payload: Serialize + DeserializeOwned + Clone;
}

/// Arguments of a command that takes none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NoArgs {}

/// `app_info`: version and build facts of the running app.
pub struct GetAppInfo;

impl Command for GetAppInfo {
    const NAME: &'static str = "app_info";
    type Args = NoArgs;
    type Output = AppInfo;
}

/// Every command the shell registers, and therefore every command its ACL allows.
pub const COMMANDS: &[&str] = &[GetAppInfo::NAME];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for name in COMMANDS {
            assert!(seen.insert(*name), "duplicate command {name}");
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name} is not snake_case"
            );
        }
    }

    #[test]
    fn no_args_serialises_as_empty_object() {
        assert_eq!(serde_json::to_string(&NoArgs {}).unwrap(), "{}");
    }
}
