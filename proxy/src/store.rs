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
    /// The change history after this cursor was pruned (older than
    /// [`TOMBSTONE_TTL_DAYS`]); `current` is where a client resumes after listing.
    #[error("cursor expired")]
    CursorExpired { current: u64 },
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

impl Patch {
    /// Applies the field changes (not `messages`) to `c`, bumping its version
    /// and `updatedAt`; a mismatched `expected_version` is a conflict.
    pub fn apply(&self, c: &mut Conversation, at: DateTime<Utc>) -> Result<()> {
        check_version(c, self.expected_version)?;
        if let Some(title) = &self.title {
            c.title = title.clone();
        }
        if let Some(pinned) = self.pinned {
            c.pinned = pinned;
        }
        if let Some(archived) = self.archived {
            c.archived = archived;
        }
        c.version += 1;
        c.updated_at = at;
        Ok(())
    }
}

/// Optimistic concurrency: `expected`, when given, must be the stored version.
pub fn check_version(c: &Conversation, expected: Option<u64>) -> Result<()> {
    match expected {
        Some(expected) if expected != c.version => Err(StoreError::Conflict(Box::new(c.clone()))),
        _ => Ok(()),
    }
}

/// New messages as stored, all stamped `at`.
pub fn materialise(messages: Vec<NewMessage>, at: DateTime<Utc>) -> Vec<Message> {
    messages
        .into_iter()
        .map(|m| Message {
            id: m.id.to_string(),
            role: m.role,
            content: m.content,
            timestamp: at,
        })
        .collect()
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

    /// Removes tombstones and change entries older than [`TOMBSTONE_TTL_DAYS`];
    /// returns how many items went. DynamoDB does this itself (TTL).
    async fn purge_expired(&self) -> Result<u64> {
        Ok(0)
    }
}

/// The list cursor both stores issue: `{updatedAt millis}:{id}`.
pub fn parse_list_cursor(cursor: &str) -> Result<(i64, Id)> {
    let (at, id) = cursor.split_once(':').ok_or(StoreError::InvalidCursor)?;
    let at: i64 = at.parse().map_err(|_| StoreError::InvalidCursor)?;
    let id = Id::parse(id).map_err(|_| StoreError::InvalidCursor)?;
    if at < 0 {
        return Err(StoreError::InvalidCursor);
    }
    Ok((at, id))
}

pub fn list_cursor(c: &Conversation) -> String {
    format!("{}:{}", c.updated_at.timestamp_millis(), c.id)
}

/// The change-feed rule shared by both stores. `first_after` is the first
/// retained entry after `since`, `current` the user's latest sequence number.
/// Sequence numbers are contiguous, so a gap right after `since` means the
/// history there was pruned.
pub fn check_cursor(since: u64, first_after: Option<u64>, current: u64) -> Result<()> {
    if since > current {
        return Err(StoreError::InvalidCursor);
    }
    match first_after {
        Some(first) if first != since + 1 => Err(StoreError::CursorExpired { current }),
        None if since < current => Err(StoreError::CursorExpired { current }),
        _ => Ok(()),
    }
}

/// Timestamps are kept to the millisecond, as JavaScript clients see them.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

pub use confab_wire::conversations::preview;

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
    fn cursor_rule() {
        assert!(check_cursor(0, None, 0).is_ok());
        assert!(check_cursor(3, Some(4), 9).is_ok());
        assert!(check_cursor(9, None, 9).is_ok());
        assert!(matches!(
            check_cursor(0, Some(5), 9),
            Err(StoreError::CursorExpired { current: 9 })
        ));
        assert!(matches!(
            check_cursor(2, None, 9),
            Err(StoreError::CursorExpired { current: 9 })
        ));
        assert!(matches!(
            check_cursor(10, None, 9),
            Err(StoreError::InvalidCursor)
        ));
    }

    #[test]
    fn preview_flattens_and_cuts() {
        assert_eq!(preview("hello\n\n  world"), "hello world");
        let long = "é".repeat(500);
        let p = preview(&long);
        assert_eq!(p.chars().count(), 140);
        assert!(p.ends_with('…'));
    }
}
