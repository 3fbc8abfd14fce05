//! The IPC contract between the UI and the desktop shell.
//!
//! Each command is a type implementing [`Command`]: its name, its arguments and
//! its output are declared once here, so the Yew side and the Tauri side cannot
//! drift apart. The shell's build script grants exactly [`COMMANDS`] in the app's
//! ACL manifest; nothing else is callable from the webview.

use serde::{Serialize, de::DeserializeOwned};

use crate::app::AppInfo;
use crate::auth::{AuthState, SignOutArgs, SignOutOutcome};

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

/// `auth_state`: where sign-in stands now (then follow [`AuthChanged`]).
pub struct GetAuthState;

impl Command for GetAuthState {
    const NAME: &'static str = "auth_state";
    type Args = NoArgs;
    type Output = AuthState;
}

/// `sign_in`: starts an attempt and opens the system browser at the provider.
/// Answers the new state (normally `waiting`).
pub struct SignIn;

impl Command for SignIn {
    const NAME: &'static str = "sign_in";
    type Args = NoArgs;
    type Output = AuthState;
}

/// `cancel_sign_in`: forgets the pending attempt; a late callback is ignored.
pub struct CancelSignIn;

impl Command for CancelSignIn {
    const NAME: &'static str = "cancel_sign_in";
    type Args = NoArgs;
    type Output = AuthState;
}

/// `sign_out`: revokes at the provider, forgets the keyring entry and the
/// in-memory tokens; asks first when writes are waiting to sync.
pub struct SignOut;

impl Command for SignOut {
    const NAME: &'static str = "sign_out";
    type Args = SignOutArgs;
    type Output = SignOutOutcome;
}

/// `auth-changed`: emitted with the new state on every change.
pub struct AuthChanged;

impl Event for AuthChanged {
    const NAME: &'static str = "auth-changed";
    type Payload = AuthState;
}

/// Every command the shell registers, and therefore every command its ACL allows.
pub const COMMANDS: &[&str] = &[
    GetAppInfo::NAME,
    GetAuthState::NAME,
    SignIn::NAME,
    CancelSignIn::NAME,
    SignOut::NAME,
];

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
