//! Where users' data lives, behind one trait with two implementations:
//! DynamoDB (the single table of design section 2) and embedded SQLite (local and
//! self-hosted). Both pass the same conformance suite (`proxy/tests/it/`).
//!
//! Every method takes the caller's [`UserId`] and validated [`Id`]s: an
//! implementation builds keys from those only, so one user can never name
//! another's data. Anything not the caller's is [`StoreError::NotFound`].

pub mod dynamodb;
mod feed;
mod replies;
pub mod sqlite;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

use confab_wire::conversations::{
    Change, Changes, Conversation, ConversationChange, ConversationDetail, Deletion, Message,
    MessageChanges, Page, Profile, Role,
};

pub use confab_wire::conversations::DeviceId;

use crate::ids::{Id, UserId};

pub use dynamodb::DynamoStore;
pub use feed::{FeedWalk, LogEntry, MessageMark, check_cursor};
pub use replies::{ReplyPlan, ReplyWrite, count_reply, plan_reply, usage_day};
pub use sqlite::SqliteStore;

/// How long a processed webhook delivery is remembered: twice the signature's
/// freshness window, past which a replay is refused as stale anyway.
pub const DELIVERY_MEMORY_SECS: i64 = 2 * crate::webhooks::TOLERANCE_SECS;

/// How long an erased account is remembered: writes that arrive after the
/// erasure (a device still holding a token and an outbox) are refused rather
/// than recreating data. Longer than any session a token could stem from.
pub const ERASURE_MEMORY_DAYS: i64 = 60;

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
    /// The write would take a conversation past one of its caps ([`Caps`]);
    /// the message names the cap and its setting.
    #[error("{0}")]
    CapReached(String),
    /// A reply must answer a user message of the same conversation.
    #[error("`after` names no message of yours in this conversation")]
    NotAUserMessage,
    /// A reply to this message is being written (regenerate waits for it
    /// to end, or for Stop).
    #[error("a reply to this message is being written: stop it first")]
    ReplyBusy,
    /// The run writing a reply was replaced, or the reply ended: the writer
    /// stops.
    #[error("this reply already ended")]
    ReplyEnded,
    /// The account was erased (Clerk's user.deleted): nothing is written
    /// for it any more.
    #[error("this account was deleted")]
    Erased,
    /// The user's daily token budget is spent; `used` tokens so far today.
    #[error("daily token budget spent")]
    OverBudget { used: u64 },
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
    /// Replaces the assistant's settings here.
    pub assistant: Option<confab_wire::conversations::AssistantSettings>,
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
        if let Some(assistant) = &self.assistant {
            c.assistant = assistant.clone();
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
            reply: None,
        })
        .collect()
}

/// Which messages a page holds: after a message (oldest first, from the
/// start when `None`), or before one (the newest ones before it, the newest
/// of all when `None`; still answered oldest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageRange {
    After(Option<Id>),
    Before(Option<Id>),
}

/// Cuts a page fetched with one extra item: `rows` in the direction asked
/// (ascending for `After`, descending for `Before`), at most `limit` kept and
/// at most [`crate::limits::MAX_PAGE_BYTES`] of content (always one message).
/// Answers oldest first, with the cursor that continues in that direction.
pub fn message_page(mut rows: Vec<Message>, range: MessageRange, limit: usize) -> Page<Message> {
    let mut bytes = 0;
    let mut keep = 0;
    for m in rows.iter().take(limit) {
        bytes += m.content.len();
        if keep > 0 && bytes > crate::limits::MAX_PAGE_BYTES {
            break;
        }
        keep += 1;
    }
    let more = rows.len() > keep;
    rows.truncate(keep);
    let next_cursor = if more {
        rows.last().map(|m| m.id.clone())
    } else {
        None
    };
    if matches!(range, MessageRange::Before(_)) {
        rows.reverse();
    }
    Page {
        items: rows,
        next_cursor,
    }
}

/// Per-conversation caps: a conversation holds at most this many messages
/// and bytes of message content. A write that would pass one is refused,
/// naming the cap; nothing of it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub messages: u64,
    pub bytes: u64,
}

impl Default for Caps {
    fn default() -> Self {
        Self {
            messages: 10_000,
            bytes: 20 * 1024 * 1024,
        }
    }
}

impl Caps {
    /// Whether a conversation of `count` messages and `bytes` of content may
    /// take `more` messages of `more_bytes` more.
    pub fn check(&self, count: u64, bytes: u64, more: u64, more_bytes: u64) -> Result<()> {
        if count.saturating_add(more) > self.messages {
            return Err(StoreError::CapReached(format!(
                "a conversation holds at most {} messages (CONFAB_MAX_CONVERSATION_MESSAGES) and this one has {count}: start a new conversation",
                self.messages
            )));
        }
        if bytes.saturating_add(more_bytes) > self.bytes {
            return Err(StoreError::CapReached(format!(
                "a conversation holds at most {} bytes of messages (CONFAB_MAX_CONVERSATION_BYTES) and this one has {bytes}: start a new conversation",
                self.bytes
            )));
        }
        Ok(())
    }
}

/// The bytes of content `messages` hold (what [`Caps::bytes`] counts).
pub fn content_bytes<'a>(messages: impl IntoIterator<Item = &'a Message>) -> u64 {
    messages.into_iter().map(|m| m.content.len() as u64).sum()
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
        device: Option<&DeviceId>,
    ) -> Result<Created<ConversationDetail>>;

    /// The conversation with all its messages (the template's shape).
    async fn get_conversation(&self, user: &UserId, id: Id) -> Result<ConversationDetail>;

    /// The conversation with its newest `limit` messages, and the cursor for
    /// earlier ones (pass as `before` to [`Store::messages`]).
    async fn get_conversation_newest(
        &self,
        user: &UserId,
        id: Id,
        limit: usize,
    ) -> Result<ConversationDetail>;

    /// A page of a live conversation's messages.
    async fn messages(
        &self,
        user: &UserId,
        conversation: Id,
        range: MessageRange,
        limit: usize,
    ) -> Result<Page<Message>>;

    async fn update_conversation(
        &self,
        user: &UserId,
        id: Id,
        patch: Patch,
        device: Option<&DeviceId>,
    ) -> Result<Conversation>;

    /// Marks the conversation deleted (a tombstone, restorable for
    /// [`TOMBSTONE_TTL_DAYS`]). Deleting a deleted conversation is NotFound.
    async fn delete_conversation(
        &self,
        user: &UserId,
        id: Id,
        expected_version: Option<u64>,
        device: Option<&DeviceId>,
    ) -> Result<Deletion>;

    async fn restore_conversation(
        &self,
        user: &UserId,
        id: Id,
        device: Option<&DeviceId>,
    ) -> Result<Conversation>;

    /// Appends one message and updates the conversation's counters atomically.
    /// Replaying the same message id returns the stored message, `created: false`.
    async fn append_message(
        &self,
        user: &UserId,
        conversation: Id,
        message: NewMessage,
        device: Option<&DeviceId>,
    ) -> Result<Created<(Message, Conversation)>>;

    /// Everything that changed after `since` (0 = from the beginning), at most
    /// `limit` conversations, each in its current state or as a deletion,
    /// with the device of its latest change and which messages changed.
    /// The `device` arguments of the writes are what this reports.
    async fn changes(&self, user: &UserId, since: u64, limit: usize) -> Result<Changes>;

    /// Whether a webhook delivery (its `svix-id`) was processed within the
    /// last [`DELIVERY_MEMORY_SECS`], by any instance.
    async fn delivery_seen(&self, delivery: &str) -> Result<bool>;

    /// Remembers a processed webhook delivery for [`DELIVERY_MEMORY_SECS`].
    async fn record_delivery(&self, delivery: &str) -> Result<()>;

    /// Starts, checkpoints, ends or stops an assistant reply (see
    /// [`ReplyWrite`]), updating the conversation like an append: counters,
    /// caps, version and a change entry marking the reply's id.
    async fn write_reply(
        &self,
        user: &UserId,
        conversation: Id,
        write: ReplyWrite,
        device: Option<&DeviceId>,
    ) -> Result<Created<(Message, Conversation)>>;

    /// Adds `tokens` (negative to give some back) to the user's count for
    /// `day` ([`usage_day`]) and answers the new count. With `budget`,
    /// nothing is added when the count is already at or past it:
    /// [`StoreError::OverBudget`]. Atomic across instances.
    async fn charge_usage(
        &self,
        user: &UserId,
        day: &str,
        tokens: i64,
        budget: Option<u64>,
    ) -> Result<u64>;

    /// Erases every item of the user (Clerk's user.deleted) and remembers
    /// the erasure for [`ERASURE_MEMORY_DAYS`]: meanwhile creating a
    /// conversation or a profile for the user is [`StoreError::Erased`].
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

/// Timestamps are kept to the millisecond, as JavaScript clients see them.
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

pub use confab_wire::conversations::preview;

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
            Err(StoreError::CursorExpired { current: 9 })
        ));
    }

    fn entry(seq: u64, conversation: &str, mark: MessageMark) -> LogEntry {
        LogEntry {
            seq,
            conversation: conversation.into(),
            device: DeviceId::parse(&format!("dev{seq}")).ok(),
            mark,
        }
    }

    fn live(id: &str) -> Conversation {
        let at = now();
        Conversation {
            id: id.into(),
            title: "t".into(),
            created_at: at,
            updated_at: at,
            version: 1,
            message_count: 0,
            last_message_preview: None,
            pinned: false,
            archived: false,
            assistant: Default::default(),
        }
    }

    #[test]
    fn the_feed_walk_folds_entries_per_conversation() {
        let mut walk = FeedWalk::new(4, 2);
        let from = |id: &str| MessageMark::From(id.into());
        assert_eq!(walk.push(entry(5, "a", from("m5"))), Ok(true));
        assert_eq!(walk.push(entry(6, "b", MessageMark::Untouched)), Ok(true));
        assert_eq!(walk.push(entry(7, "a", from("m3"))), Ok(true));
        assert_eq!(walk.push(entry(8, "b", MessageMark::All)), Ok(true));
        assert_eq!(walk.push(entry(9, "b", from("m9"))), Ok(true));
        // A third conversation: the page is full, its entry is not consumed.
        assert_eq!(walk.push(entry(10, "c", from("m10"))), Ok(false));
        assert!(walk.has_more);
        assert_eq!(walk.cursor(), 9);
        assert_eq!(walk.conversations(), ["a", "b"]);
        let Change::Updated(a) = walk.change(live("a"), None) else {
            panic!("a is live");
        };
        assert_eq!(a.device.as_ref().map(DeviceId::as_str), Some("dev7"));
        let a = a.message_changes.unwrap();
        assert_eq!((a.from.as_deref(), a.all), (Some("m3"), false));
        let Change::Updated(b) = walk.change(live("b"), None) else {
            panic!("b is live");
        };
        assert!(b.message_changes.unwrap().all);
        assert!(matches!(
            walk.change(live("x"), Some(now())),
            Change::Deleted(_)
        ));
    }

    #[test]
    fn the_feed_walk_stops_at_a_hole() {
        let mut walk = FeedWalk::new(4, 10);
        assert_eq!(walk.push(entry(5, "a", MessageMark::Untouched)), Ok(true));
        assert_eq!(walk.push(entry(7, "a", MessageMark::Untouched)), Err(7));
    }

    fn message(id: &str, bytes: usize) -> Message {
        Message {
            id: id.into(),
            role: Role::User,
            content: "x".repeat(bytes),
            timestamp: now(),
            reply: None,
        }
    }

    #[test]
    fn message_pages_are_cut_by_count_and_bytes() {
        let rows = vec![message("1", 1), message("2", 1), message("3", 1)];
        let page = message_page(rows.clone(), MessageRange::After(None), 2);
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));
        let page = message_page(rows, MessageRange::After(None), 3);
        assert_eq!(page.next_cursor, None);

        // Paging back: fetched newest first, answered oldest first.
        let back = vec![message("3", 1), message("2", 1), message("1", 1)];
        let page = message_page(back, MessageRange::Before(None), 2);
        let ids: Vec<_> = page.items.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["2", "3"]);
        assert_eq!(page.next_cursor.as_deref(), Some("2"));

        // One message over the byte budget still makes a page of one.
        let big = crate::limits::MAX_PAGE_BYTES;
        let page = message_page(
            vec![message("1", big + 1), message("2", 1)],
            MessageRange::After(None),
            10,
        );
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.next_cursor.as_deref(), Some("1"));
    }

    #[test]
    fn caps_name_their_setting() {
        let caps = Caps {
            messages: 3,
            bytes: 100,
        };
        assert!(caps.check(2, 50, 1, 50).is_ok());
        let count = caps.check(3, 0, 1, 1).unwrap_err().to_string();
        assert!(
            count.contains("CONFAB_MAX_CONVERSATION_MESSAGES"),
            "{count}"
        );
        let bytes = caps.check(0, 60, 1, 41).unwrap_err().to_string();
        assert!(bytes.contains("CONFAB_MAX_CONVERSATION_BYTES"), "{bytes}");
        assert!(caps.check(u64::MAX, u64::MAX, 1, 1).is_err());
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
