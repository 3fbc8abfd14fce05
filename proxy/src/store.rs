//! Where users' data lives, behind one trait with two implementations:
//! DynamoDB (the single table of design section 2) and embedded SQLite (local and
//! self-hosted). Both pass the same conformance suite (`proxy/tests/`).
//!
//! Every method takes the caller's [`UserId`] and validated [`Id`]s: an
//! implementation builds keys from those only, so one user can never name
//! another's data. Anything not the caller's is [`StoreError::NotFound`].

pub mod dynamodb;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use confab_wire::conversations::{
    Change, Changes, Conversation, ConversationDetail, Deletion, Message, Page, Profile, Role,
};

use crate::ids::{Id, UserId};

pub use dynamodb::DynamoStore;
pub use sqlite::SqliteStore;

/// How long deleted conversations stay restorable (and visible as deletions in
/// the change feed) before they are purged.
pub const TOMBSTONE_TTL_DAYS: i64 = 30;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// The conversation changed since the version the caller gave.
    #[error("version conflict")]
    Conflict(Box<Conversation>),
    /// The id is taken by something the request does not match (a message id
    /// reused for different content, a create replayed onto a deleted item).
    #[error("{0}")]
    IdTaken(&'static str),
    #[error("invalid cursor")]
    InvalidCursor,
    /// The store cannot be reached or is overloaded; the request may be retried.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store failure: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Profile fields that come from the identity provider, never from a request body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileFields {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub image_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub id: Id,
    pub role: Role,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConversation {
    pub id: Id,
    pub title: String,
    pub messages: Vec<NewMessage>,
}

/// Changes to a conversation; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patch {
    pub title: Option<String>,
    pub pinned: Option<bool>,
    pub archived: Option<bool>,
    /// Replaces every message (the template's PUT).
    pub messages: Option<Vec<NewMessage>>,
    /// Optimistic concurrency: apply only if the stored version is this one.
    pub expected_version: Option<u64>,
}

/// Whether a create made something new or found the same id already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created<T> {
    pub value: T,
    pub created: bool,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip proving the store answers (for `/readyz`).
    async fn ping(&self) -> Result<()>;

    async fn get_profile(&self, user: &UserId) -> Result<Option<Profile>>;
    async fn put_profile(&self, user: &UserId, fields: ProfileFields) -> Result<Profile>;

    /// Live (not deleted) conversations, most recently changed first.
    async fn list_conversations(
        &self,
        user: &UserId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Conversation>>;

    /// Creates a conversation; replaying an existing id returns the stored one
    /// with `created: false` and changes nothing.
    async fn create_conversation(
        &self,
        user: &UserId,
        new: NewConversation,
    ) -> Result<Created<ConversationDetail>>;

    async fn get_conversation(&self, user: &UserId, id: Id) -> Result<ConversationDetail>;

    async fn update_conversation(
        &self,
        user: &UserId,
        id: Id,
        patch: Patch,
    ) -> Result<Conversation>;

    /// Marks the conversation deleted (a tombstone, restorable for
    /// [`TOMBSTONE_TTL_DAYS`]). Deleting a deleted conversation is NotFound.
    async fn delete_conversation(
        &self,
        user: &UserId,
        id: Id,
        expected_version: Option<u64>,
    ) -> Result<Deletion>;

    async fn restore_conversation(&self, user: &UserId, id: Id) -> Result<Conversation>;

    /// Appends one message and updates the conversation's counters atomically.
    /// Replaying the same message id returns the stored message, `created: false`.
    async fn append_message(
        &self,
        user: &UserId,
        conversation: Id,
        message: NewMessage,
    ) -> Result<Created<(Message, Conversation)>>;

    /// Everything that changed after `since` (0 = from the beginning), at most
    /// `limit` conversations, each in its current state or as a deletion.
    async fn changes(&self, user: &UserId, since: u64, limit: usize) -> Result<Changes>;

    /// Erases every item of the user (Clerk's user.deleted).
    async fn erase_user(&self, user: &UserId) -> Result<()>;
}

/// Timestamps are kept to the millisecond, as JavaScript clients see them.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// The short preview a conversation list shows for the last message.
pub fn preview(content: &str) -> String {
    const MAX_CHARS: usize = 140;
    let flat: String = content.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= MAX_CHARS {
        flat
    } else {
        let mut cut: String = flat.chars().take(MAX_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

/// A change-feed entry for a conversation in its current state.
pub fn change_of(conversation: Conversation, deleted_at: Option<DateTime<Utc>>) -> Change {
    match deleted_at {
        Some(_) => Change::Deleted(Deletion {
            id: conversation.id,
            deleted: true,
            version: conversation.version,
            updated_at: conversation.updated_at,
        }),
        None => Change::Updated(conversation),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_flattens_and_cuts() {
        assert_eq!(preview("hello\n\n  world"), "hello world");
        let long = "é".repeat(500);
        let p = preview(&long);
        assert_eq!(p.chars().count(), 140);
        assert!(p.ends_with('…'));
    }
}
