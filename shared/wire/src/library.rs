//! The user's conversations as the desktop shows them: the local cache's view,
//! with what is not synced yet. The UI reads only these; the shell builds them
//! from the cache.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::conversations::{Conversation, Message};

/// A row of the conversation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListItem {
    #[serde(flatten)]
    pub conversation: Conversation,
    /// Local changes not yet acknowledged by the server.
    pub pending: u32,
    /// Why the server refused a change of this conversation, if it did.
    pub failed: Option<String>,
    /// For a conversation still titled by default: its first message, cut
    /// short, which the list shows as its title until it gets one.
    #[serde(default)]
    pub opening: Option<String>,
}

impl ListItem {
    /// What the list shows as the title.
    pub fn shown_title(&self) -> &str {
        self.opening.as_deref().unwrap_or(&self.conversation.title)
    }
}

/// One open conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationView {
    pub conversation: Conversation,
    /// Oldest first: all of them, or the newest of a window.
    pub messages: Vec<MessageView>,
    /// How many messages come before `messages` (not in this answer).
    #[serde(default)]
    pub earlier: u64,
    pub pending: u32,
    pub failed: Option<String>,
    /// Deleted (locally or on another device): shown with Undo until purged.
    pub deleted: bool,
    /// As [`ListItem::opening`].
    #[serde(default)]
    pub opening: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageView {
    #[serde(flatten)]
    pub message: Message,
    /// Not yet acknowledged by the server.
    pub pending: bool,
    /// A reply to this message is asked for and the request has not
    /// reached the server yet (offline: it goes once the message syncs).
    #[serde(default)]
    pub asking: bool,
}

/// A run of a conversation's messages (`get_messages`), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagesWindow {
    pub messages: Vec<MessageView>,
    /// More messages lie beyond, in the direction asked.
    pub more: bool,
}

/// Which conversations a list shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ListFilter {
    /// Not archived: pinned first, then most recently changed.
    #[default]
    Active,
    Archived,
}

/// A full-text search result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchHit {
    pub conversation_id: String,
    pub title: String,
    /// The matching message, when the match is in a message rather than the title.
    pub message_id: Option<String>,
    /// Plain text around the match; `[` and `]` never appear unescaped in it, the
    /// UI highlights the ranges in `highlights` (character offsets).
    pub snippet: String,
    pub highlights: Vec<(u32, u32)>,
}

/// Where sync stands, for the status indicator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    pub connection: Connection,
    /// Writes waiting to be sent.
    pub pending: u64,
    /// Writes the server refused; each can be retried or discarded.
    pub failed: u64,
    pub last_synced_at: Option<DateTime<Utc>>,
    /// The last sync error, for people.
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Connection {
    Online,
    Syncing,
    Offline,
    SignedOut,
}

/// A page of the conversation list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListPage {
    pub items: Vec<ListItem>,
    /// How many conversations the filter shows in all.
    pub total: u64,
}

/// Which cached conversations changed (locally or from the server): the UI
/// reads the list, and the open conversation if it is among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LibraryChanged {
    pub conversation_ids: Vec<String>,
}

/// A streaming reply, as the windows follow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "data")]
pub enum ReplyLive {
    /// Text appended (`offset` bytes of text came before it).
    Delta(crate::assistant::ReplyDelta),
    /// It ended; the cache holds the final text (a `library-changed` follows).
    Done(crate::assistant::ReplyDone),
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExportFormat {
    Markdown,
    Json,
}
