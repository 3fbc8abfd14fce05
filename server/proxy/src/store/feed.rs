//! The change feed's rules, shared by both stores: what a change entry
//! records of the messages, how a page of entries is walked, and when a
//! cursor can no longer be resumed.

use super::*;

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
