//! Where users' data lives, behind one trait with two implementations:
//! DynamoDB (the single table of design section 2) and embedded SQLite (local and
//! self-hosted). Both pass the same conformance suite (`proxy/tests/it/`).
//!
//! Every method takes the caller's [`UserId`] and validated [`Id`]s: an
//! implementation builds keys from those only, so one user can never name
//! another's data. Anything not the caller's is [`StoreError::NotFound`].

pub mod dynamodb;
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

/// What a write did to a conversation's messages, as its change entry records
/// it: the feed tells devices which messages to fetch from this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageMark {
    /// No message changed (a rename, a pin, a delete, a restore).
    Untouched,
    /// Messages with this id or later ones were written.
    From(String),
    /// Every message was replaced.
    All,
}

impl MessageMark {
    /// How both stores keep a mark: none, `*` for all, or the message id.
    pub fn to_stored(&self) -> Option<&str> {
        match self {
            MessageMark::Untouched => None,
            MessageMark::All => Some("*"),
            MessageMark::From(id) => Some(id),
        }
    }

    pub fn from_stored(stored: Option<&str>) -> Self {
        match stored {
            None => MessageMark::Untouched,
            Some("*") => MessageMark::All,
            Some(id) => MessageMark::From(id.to_owned()),
        }
    }

    /// The mark of a write that stored `messages` (in id order).
    pub fn from_first(messages: &[Message]) -> Self {
        messages
            .iter()
            .map(|m| m.id.as_str())
            .min()
            .map_or(MessageMark::Untouched, |id| {
                MessageMark::From(id.to_owned())
            })
    }
}

/// One entry of a user's change log, as both stores keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub conversation: String,
    pub device: Option<DeviceId>,
    pub mark: MessageMark,
}

/// Walks change-log entries in sequence order and collects at most `limit`
/// conversations: the entries of the first `limit` distinct conversations,
/// up to (not including) the first entry of one more. Every entry it consumes
/// belongs to a conversation it reports, so what an entry says about messages
/// is never lost across pages.
#[derive(Debug)]
pub struct FeedWalk {
    limit: usize,
    cursor: u64,
    order: Vec<String>,
    seen: HashMap<String, (Option<DeviceId>, Option<MessageChanges>)>,
    pub has_more: bool,
}

impl FeedWalk {
    pub fn new(since: u64, limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            cursor: since,
            order: Vec::new(),
            seen: HashMap::new(),
            has_more: false,
        }
    }

    /// The last sequence number consumed.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Consumes `entry`. `Ok(false)`: the page is full, stop walking.
    /// Sequence numbers are contiguous: a hole means pruned history.
    pub fn push(&mut self, entry: LogEntry) -> Result<bool, u64> {
        if entry.seq != self.cursor + 1 {
            return Err(entry.seq);
        }
        if !self.seen.contains_key(&entry.conversation) {
            if self.order.len() == self.limit {
                self.has_more = true;
                return Ok(false);
            }
            self.order.push(entry.conversation.clone());
        }
        let slot = self.seen.entry(entry.conversation).or_default();
        slot.0 = entry.device;
        slot.1 = match (slot.1.take(), entry.mark) {
            (Some(m), _) if m.all => Some(m),
            (_, MessageMark::All) => Some(MessageChanges {
                from: None,
                all: true,
            }),
            (known, MessageMark::Untouched) => known,
            (
                Some(MessageChanges {
                    from: Some(old), ..
                }),
                MessageMark::From(new),
            ) => Some(MessageChanges {
                from: Some(old.min(new)),
                all: false,
            }),
            (_, MessageMark::From(new)) => Some(MessageChanges {
                from: Some(new),
                all: false,
            }),
        };
        self.cursor = entry.seq;
        Ok(true)
    }

    /// The conversations to report, in the order their first entry came.
    pub fn conversations(&self) -> &[String] {
        &self.order
    }

    /// The feed entry of `id` in its current state.
    pub fn change(
        &mut self,
        conversation: Conversation,
        deleted_at: Option<DateTime<Utc>>,
    ) -> Change {
        let (device, message_changes) = self.seen.remove(&conversation.id).unwrap_or_default();
        match deleted_at {
            Some(_) => Change::Deleted(Deletion {
                id: conversation.id,
                deleted: true,
                version: conversation.version,
                updated_at: conversation.updated_at,
            }),
            None => Change::Updated(ConversationChange {
                conversation,
                device,
                message_changes,
            }),
        }
    }
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

/// A write of an assistant reply; [`plan_reply`] decides what it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyWrite {
    /// A new reply (empty, `streaming`) to the user message `reply.after`.
    /// A reply with its id that exists is answered as it is (`created:
    /// false`), unless `regenerate`: then one that is not live is replaced.
    Start { message: Message, regenerate: bool },
    /// The run that started the reply (its `timestamp`) writes its text and
    /// status. Refused with [`StoreError::ReplyEnded`] when another run
    /// replaced it or it ended; a reply stopped meanwhile stays `stopped`.
    Progress { message: Message },
    /// A streaming reply becomes `stopped`, its text kept; one that ended
    /// is answered as it is.
    Stop { id: Id },
}

impl ReplyWrite {
    pub fn id(&self) -> String {
        match self {
            ReplyWrite::Start { message, .. } | ReplyWrite::Progress { message } => {
                message.id.clone()
            }
            ReplyWrite::Stop { id } => id.to_string(),
        }
    }

    /// The user message a start answers.
    pub fn after(&self) -> Option<&str> {
        match self {
            ReplyWrite::Start { message, .. } => message.reply.as_ref().map(|r| r.after.as_str()),
            _ => None,
        }
    }
}

/// What a [`ReplyWrite`] does, given the stored reply and (for a start) the
/// message it answers: the same rule in both stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyPlan {
    /// Write nothing; answer this.
    Keep(Message),
    /// Store this message (new when nothing was stored).
    Write(Message),
}

pub fn plan_reply(
    write: ReplyWrite,
    existing: Option<Message>,
    after: Option<&Message>,
    at: DateTime<Utc>,
) -> Result<ReplyPlan> {
    use confab_wire::assistant::ReplyStatus;
    let stored_reply = |m: &Message| m.reply.clone().filter(|_| m.role == Role::Assistant);
    match write {
        ReplyWrite::Start {
            message,
            regenerate,
        } => {
            let Some(existing) = existing else {
                return match after {
                    Some(a) if a.role == Role::User => Ok(ReplyPlan::Write(message)),
                    _ => Err(StoreError::NotAUserMessage),
                };
            };
            let same_question = stored_reply(&existing)
                .zip(message.reply.as_ref())
                .is_some_and(|(old, new)| old.after == new.after);
            if !same_question {
                return Err(StoreError::IdTaken(
                    "this message id is already used for a different message",
                ));
            }
            match (regenerate, stored_reply(&existing)) {
                (false, _) => Ok(ReplyPlan::Keep(existing)),
                (true, Some(old)) if old.is_live(at) => Err(StoreError::ReplyBusy),
                (true, _) => Ok(ReplyPlan::Write(message)),
            }
        }
        ReplyWrite::Progress { mut message } => {
            let existing = existing.ok_or(StoreError::NotFound)?;
            let old = stored_reply(&existing).ok_or(StoreError::NotFound)?;
            if existing.timestamp != message.timestamp {
                return Err(StoreError::ReplyEnded);
            }
            match old.status {
                ReplyStatus::Streaming => Ok(ReplyPlan::Write(message)),
                ReplyStatus::Stopped => {
                    // The run learns of a stop made elsewhere: its text is
                    // kept, the status stays.
                    if let Some(r) = message.reply.as_mut() {
                        r.status = ReplyStatus::Stopped;
                        r.error = None;
                        r.stop_reason = old.stop_reason;
                    }
                    if message.content.len() < existing.content.len() {
                        return Ok(ReplyPlan::Keep(existing));
                    }
                    Ok(ReplyPlan::Write(message))
                }
                _ => Err(StoreError::ReplyEnded),
            }
        }
        ReplyWrite::Stop { .. } => {
            let existing = existing.ok_or(StoreError::NotFound)?;
            let mut old = stored_reply(&existing).ok_or(StoreError::NotFound)?;
            if old.status != ReplyStatus::Streaming {
                return Ok(ReplyPlan::Keep(existing));
            }
            old.status = ReplyStatus::Stopped;
            old.stop_reason = Some("stopped".into());
            old.updated_at = at;
            Ok(ReplyPlan::Write(Message {
                reply: Some(old),
                ..existing
            }))
        }
    }
}

/// The conversation after a reply write: counters, preview, version.
/// `old_len` is the stored text's length (`None`: the reply is new);
/// `newest` whether no message sorts after the reply.
pub fn count_reply(
    c: &mut Conversation,
    message: &Message,
    old_len: Option<u64>,
    newest: bool,
    at: DateTime<Utc>,
) {
    if old_len.is_none() {
        c.message_count += 1;
    }
    if newest && !message.content.is_empty() {
        c.last_message_preview = Some(preview(&message.content));
    }
    c.version += 1;
    c.updated_at = at;
}

/// The UTC day a usage count belongs to, as both stores key it.
pub fn usage_day(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d").to_string()
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

/// The change-feed rule shared by both stores. `first_after` is the first
/// retained entry after `since`, `current` the user's latest sequence number.
/// Sequence numbers are contiguous, so a gap right after `since` means the
/// history there was pruned. A cursor beyond `current` (the store restored
/// from an older backup, the account erased and made again) cannot be
/// resumed either: both answer "list again from `current`", never an error a
/// device would retry forever.
pub fn check_cursor(since: u64, first_after: Option<u64>, current: u64) -> Result<()> {
    if since > current {
        return Err(StoreError::CursorExpired { current });
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
