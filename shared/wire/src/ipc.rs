//! The IPC contract between the UI and the desktop shell.
//!
//! Each command is a type implementing [`Command`]: its name, its arguments and
//! its output are declared once here, so the Yew side and the Tauri side cannot
//! drift apart. The shell's build script grants exactly [`COMMANDS`] in the app's
//! ACL manifest; nothing else is callable from the webview.

use serde::{Serialize, de::DeserializeOwned};

use crate::app::AppInfo;
use crate::auth::{AuthState, SignOutArgs, SignOutOutcome};
use crate::library::{
    ConversationView, ExportFormat, LibraryChanged, ListFilter, ListItem, ListPage, MessageView,
    MessagesWindow, SearchHit, SyncStatus,
};
use crate::updates::UpdateState;

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

/// Declares a command type with its name, arguments and output.
macro_rules! command {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $args:ty => $out:ty) => {
        $(#[$doc])*
        pub struct $ty;
        impl Command for $ty {
            const NAME: &'static str = $name;
            type Args = $args;
            type Output = $out;
        }
    };
}

command!(
    /// `app_info`: version and build facts of the running app.
    GetAppInfo, "app_info", NoArgs => AppInfo
);
command!(
    /// `auth_state`: where sign-in stands now (then follow [`AuthChanged`]).
    GetAuthState, "auth_state", NoArgs => AuthState
);
command!(
    /// `sign_in`: starts an attempt and opens the system browser at the
    /// provider. Answers the new state (normally `waiting`).
    SignIn, "sign_in", NoArgs => AuthState
);
command!(
    /// `sign_in_link`: the pending attempt's link, for a user whose browser
    /// could not be opened to paste into any browser.
    SignInLink, "sign_in_link", NoArgs => Option<String>
);
command!(
    /// `cancel_sign_in`: forgets the pending attempt; a late callback is ignored.
    CancelSignIn, "cancel_sign_in", NoArgs => AuthState
);
command!(
    /// `sign_out`: revokes at the provider, forgets the keyring entry and the
    /// in-memory tokens; asks first when writes are waiting to sync.
    SignOut, "sign_out", SignOutArgs => SignOutOutcome
);

/// `auth-changed`: emitted with the new state on every change.
pub struct AuthChanged;

impl Event for AuthChanged {
    const NAME: &'static str = "auth-changed";
    type Payload = AuthState;
}

/// Arguments naming one conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ById {
    pub id: String,
}

/// `get_conversation`: the conversation with its newest `limit` messages
/// (all of them without a limit; none with 0, for its state alone).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenArgs {
    pub id: String,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// `get_messages`: the messages after one (oldest first), or the newest
/// before one (paging back), at most `limit` (default and maximum 500).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MessagesArgs {
    pub id: String,
    #[serde(default)]
    pub after: Option<String>,
    #[serde(default)]
    pub before: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
}

/// Most rows one `list_conversations` call answers: longer lists are read
/// in pages (`offset`).
pub const MAX_LIST_PAGE: u32 = 500;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListArgs {
    #[serde(default)]
    pub filter: ListFilter,
    #[serde(default)]
    pub offset: u32,
    pub limit: u32,
}

/// `get_list_items`: the rows of these conversations that `filter` shows
/// (the others are gone from it), and the filter's total.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListItemsArgs {
    #[serde(default)]
    pub filter: ListFilter,
    pub ids: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateArgs {
    #[serde(default)]
    pub title: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateArgs {
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub pinned: Option<bool>,
    #[serde(default)]
    pub archived: Option<bool>,
    /// The assistant's settings here, replaced whole.
    #[serde(default)]
    pub assistant: Option<crate::conversations::AssistantSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppendArgs {
    pub conversation_id: String,
    pub content: String,
    /// Ask the assistant to answer it (once the message is on the server).
    #[serde(default)]
    pub ask: bool,
    /// The model to answer with; the conversation's or the server's default
    /// when absent.
    #[serde(default)]
    pub model: Option<String>,
}

/// `ask_reply`: a reply to one of the user's messages (Retry, Regenerate).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AskArgs {
    pub conversation_id: String,
    /// The user message to answer.
    pub after: String,
    #[serde(default)]
    pub model: Option<String>,
    /// Replace the reply it has (which must have ended).
    #[serde(default)]
    pub regenerate: bool,
}

/// `stop_reply`: the reply to stop.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopArgs {
    pub conversation_id: String,
    pub message_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SearchArgs {
    pub query: String,
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportArgs {
    pub id: String,
    pub format: ExportFormat,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OpenLinkArgs {
    pub url: String,
}

command!(
    /// `list_conversations`: a page of the list, from the cache.
    ListConversations, "list_conversations", ListArgs => ListPage
);
command!(
    /// `get_conversation`: one conversation with a window of its messages,
    /// from the cache.
    GetConversation, "get_conversation", OpenArgs => Option<ConversationView>
);
command!(
    /// `get_list_items`: only the rows that changed, for the list to patch
    /// itself instead of reading every row again.
    GetListItems, "get_list_items", ListItemsArgs => ListPage
);
command!(
    /// `get_messages`: more of a conversation's messages, from the cache:
    /// what came after the newest shown, or earlier ones.
    GetMessages, "get_messages", MessagesArgs => MessagesWindow
);
command!(
    /// `create_conversation`: saved locally with its outbox entry, then synced.
    CreateConversation, "create_conversation", CreateArgs => ListItem
);
command!(
    /// `update_conversation`: rename, pin, archive.
    UpdateConversation, "update_conversation", UpdateArgs => ListItem
);
command!(
    /// `delete_conversation`: a tombstone; `restore_conversation` undoes it.
    DeleteConversation, "delete_conversation", ById => ()
);
command!(RestoreConversation, "restore_conversation", ById => ListItem);
command!(
    /// `append_message`: the user's message, at the end.
    AppendMessage, "append_message", AppendArgs => MessageView
);
command!(
    /// `ask_reply`: queues a request for the assistant's reply to a message
    /// (sent once the message is on the server).
    AskReply, "ask_reply", AskArgs => ()
);
command!(
    /// `stop_reply`: stops a streaming reply; its text so far is kept.
    StopReply, "stop_reply", StopArgs => ()
);
command!(
    /// `assistant_info`: whether the server's assistant is on, and its
    /// models (the last answer when offline).
    GetAssistant, "assistant_info", NoArgs => crate::assistant::AssistantInfo
);
command!(
    /// `search_conversations`: full-text search of the cache.
    SearchConversations, "search_conversations", SearchArgs => Vec<SearchHit>
);
command!(
    /// `export_conversation`: asks where to save (the system's save dialog)
    /// and writes the file; answers its path, or none when cancelled.
    ExportConversation, "export_conversation", ExportArgs => Option<String>
);
command!(
    /// `sync_status`: the status indicator's data.
    GetSyncStatus, "sync_status", NoArgs => SyncStatus
);
command!(
    /// `sync_now`: push and pull at once.
    SyncNow, "sync_now", NoArgs => SyncStatus
);
command!(
    /// `retry_failed`: sends the conversation's refused writes again.
    RetryFailed, "retry_failed", ById => ()
);
command!(
    /// `discard_failed`: drops the conversation's refused writes.
    DiscardFailed, "discard_failed", ById => ()
);
command!(
    /// `open_link`: opens an http(s) or mailto link from a message in the
    /// system browser (the webview never navigates away).
    OpenLink, "open_link", OpenLinkArgs => ()
);

command!(
    /// `update_state`: where self-update stands (then follow [`UpdateChanged`]).
    GetUpdateState, "update_state", NoArgs => UpdateState
);
command!(
    /// `check_for_updates`: asks the update server now; answers when the
    /// check is done.
    CheckForUpdates, "check_for_updates", NoArgs => UpdateState
);
command!(
    /// `install_update`: downloads the offered version, verifies its
    /// signature, installs it and restarts. Only ever on the user's request.
    InstallUpdate, "install_update", NoArgs => ()
);
command!(
    /// `dismiss_update`: hides the offer or the failure until the next check.
    DismissUpdate, "dismiss_update", NoArgs => UpdateState
);

/// `update-changed`: emitted with the new state on every change.
pub struct UpdateChanged;

impl Event for UpdateChanged {
    const NAME: &'static str = "update-changed";
    type Payload = UpdateState;
}

/// `library-changed`: cached conversations changed.
pub struct LibraryChangedEvent;

impl Event for LibraryChangedEvent {
    const NAME: &'static str = "library-changed";
    type Payload = LibraryChanged;
}

/// `reply-live`: a reply's text as it grows, and its end.
pub struct ReplyLiveEvent;

impl Event for ReplyLiveEvent {
    const NAME: &'static str = "reply-live";
    type Payload = crate::library::ReplyLive;
}

/// `sync-status`: the status indicator changed.
pub struct SyncStatusChanged;

impl Event for SyncStatusChanged {
    const NAME: &'static str = "sync-status";
    type Payload = SyncStatus;
}

/// Every command the shell registers, and therefore every command its ACL allows.
pub const COMMANDS: &[&str] = &[
    GetAppInfo::NAME,
    GetAuthState::NAME,
    SignIn::NAME,
    SignInLink::NAME,
    CancelSignIn::NAME,
    SignOut::NAME,
    ListConversations::NAME,
    GetConversation::NAME,
    GetMessages::NAME,
    GetListItems::NAME,
    CreateConversation::NAME,
    UpdateConversation::NAME,
    DeleteConversation::NAME,
    RestoreConversation::NAME,
    AppendMessage::NAME,
    AskReply::NAME,
    StopReply::NAME,
    GetAssistant::NAME,
    SearchConversations::NAME,
    ExportConversation::NAME,
    GetSyncStatus::NAME,
    SyncNow::NAME,
    RetryFailed::NAME,
    DiscardFailed::NAME,
    OpenLink::NAME,
    GetUpdateState::NAME,
    CheckForUpdates::NAME,
    InstallUpdate::NAME,
    DismissUpdate::NAME,
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
