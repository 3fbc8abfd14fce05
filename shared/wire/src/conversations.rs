//! Conversations, messages and profiles as the HTTP API and the IPC layer carry
//! them (design section 3). JSON is camelCase; timestamps are RFC 3339 UTC.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    System,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            "system" => Some(Role::System),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub id: String,
    pub clerk_id: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub image_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub role: Role,
    pub content: String,
    pub timestamp: DateTime<Utc>,
    /// Present on replies the assistant wrote: their status, model, usage.
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<crate::assistant::Reply>,
}

/// A conversation's summary: everything but its messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: String,
    pub title: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Increases by one with every change; the basis of optimistic concurrency.
    pub version: u64,
    pub message_count: u64,
    pub last_message_preview: Option<String>,
    pub pinned: bool,
    pub archived: bool,
    /// How the assistant works here (absent: the defaults).
    #[serde(default, skip_serializing_if = "AssistantSettings::is_default")]
    pub assistant: AssistantSettings,
}

/// How the assistant works in one conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AssistantSettings {
    /// The assistant does not answer here.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub off: bool,
    /// The model replies use here; the server's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Sent to the model as its system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

impl AssistantSettings {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checked the same way on every side: a model id of 1-128 of
    /// `A-Z a-z 0-9 - _ . : / @`, instructions of at most
    /// [`crate::limits::MAX_INSTRUCTIONS_CHARS`]. Blank instructions are none.
    pub fn checked(mut self) -> Result<Self, (&'static str, String)> {
        if let Some(model) = &self.model {
            let plain = |c: char| c.is_ascii_alphanumeric() || "-_.:/@".contains(c);
            if model.is_empty() || model.len() > 128 || !model.chars().all(plain) {
                return Err((
                    "assistant.model",
                    "must be a model id: 1 to 128 of letters, digits and - _ . : / @".into(),
                ));
            }
        }
        self.instructions = self.instructions.filter(|i| !i.trim().is_empty());
        if let Some(instructions) = &self.instructions
            && instructions.chars().count() > crate::limits::MAX_INSTRUCTIONS_CHARS
        {
            return Err((
                "assistant.instructions",
                format!(
                    "must be at most {} characters",
                    crate::limits::MAX_INSTRUCTIONS_CHARS
                ),
            ));
        }
        Ok(self)
    }
}

/// A conversation with its messages, oldest first: all of them, or with
/// `?limit=n` the newest `n`, and `nextCursor` (pass it as `before` to
/// `GET /api/conversations/{id}/messages`) when earlier ones exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConversationDetail {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The header a desktop install names itself with on every request; the
/// server records it on the changes the request makes, so the install can
/// recognise its own changes in notices and in the feed.
pub const DEVICE_HEADER: &str = "x-confab-device";

/// A device id: 1 to 64 of `A-Z a-z 0-9 _ -` (a ULID, as the desktop makes
/// them). Anything else is refused rather than echoed to other devices.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, DeviceIdError> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(DeviceIdError::Length);
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(DeviceIdError::Characters);
        }
        Ok(Self(raw.to_owned()))
    }

    /// A device id from random bits: 32 hex digits.
    pub fn from_bits(bits: u128) -> Self {
        Self(format!("{bits:032x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Why a device id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceIdError {
    #[error("must be 1 to {} characters", DeviceId::MAX_LEN)]
    Length,
    #[error("may contain only letters, digits, '_' and '-'")]
    Characters,
}

impl TryFrom<String> for DeviceId {
    type Error = DeviceIdError;
    fn try_from(raw: String) -> Result<Self, DeviceIdError> {
        Self::parse(&raw)
    }
}

impl From<DeviceId> for String {
    fn from(id: DeviceId) -> String {
        id.0
    }
}

impl std::fmt::Display for DeviceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which messages of a conversation changed since the feed's cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MessageChanges {
    /// The oldest message written since the cursor: messages with this id or
    /// a later one may be new or changed; earlier ones are as they were. Ask
    /// `GET /api/conversations/{id}/messages?after=<the last message you hold
    /// before this id>`.
    pub from: Option<String>,
    /// The messages were replaced wholesale (the template's PUT): fetch them
    /// all again.
    pub all: bool,
}

/// A conversation in the change feed: its current state, plus what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConversationChange {
    #[serde(flatten)]
    pub conversation: Conversation,
    /// The device whose write is the latest one this entry covers, when it
    /// named itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
    /// Absent when no message changed (a rename, a pin, a restore).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_changes: Option<MessageChanges>,
}

impl ConversationChange {
    /// A change that says nothing about messages: fetch them all when needed.
    pub fn whole(conversation: Conversation) -> Self {
        Self {
            conversation,
            device: None,
            message_changes: Some(MessageChanges {
                from: None,
                all: true,
            }),
        }
    }
}

/// A message to add; the server assigns the id when none is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewMessage {
    #[serde(default)]
    pub id: Option<String>,
    pub role: Role,
    pub content: String,
}

/// `POST /api/conversations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateConversation {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub messages: Option<Vec<NewMessage>>,
}

/// `PUT /api/conversations/{id}` (and the template's `PUT /api/conversations`,
/// which carries `id` in the body). Absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateConversation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<bool>,
    /// The assistant's settings here, replaced whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assistant: Option<AssistantSettings>,
    /// Replaces every message (template compatibility).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<NewMessage>>,
    /// The version the client last saw; a mismatch answers 409.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// `POST /api/conversations/{id}/messages` answers the stored message and the
/// conversation's new summary (its counters and version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AppendedMessage {
    pub message: Message,
    pub conversation: Conversation,
}

/// A page of results, most recently changed first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A deleted conversation as the change feed reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Deletion {
    pub id: String,
    /// Always true; tells a deletion from a conversation in [`Change`].
    pub deleted: bool,
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

/// One entry of `GET /api/changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Change {
    Deleted(Deletion),
    Updated(ConversationChange),
}

impl Change {
    pub fn id(&self) -> &str {
        match self {
            Change::Deleted(d) => &d.id,
            Change::Updated(c) => &c.conversation.id,
        }
    }

    pub fn version(&self) -> u64 {
        match self {
            Change::Deleted(d) => d.version,
            Change::Updated(c) => c.conversation.version,
        }
    }
}

/// A page of messages in id order, oldest first
/// (`GET /api/conversations/{id}/messages`). `nextCursor` continues in the
/// direction asked: pass it as `after` (or `before` when paging back).
pub type MessagePage = Page<Message>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Changes {
    pub items: Vec<Change>,
    /// Pass back as `since` to get what changed after this answer.
    pub cursor: String,
    /// More changes are waiting: ask again with `cursor` right away.
    pub has_more: bool,
}

/// The data of a `change` server-sent event: something of the caller's
/// changed; pull `GET /api/changes` to learn what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChangeNotice {
    /// The conversation that changed, when the change concerns one.
    pub conversation_id: Option<String>,
    /// Its version after the change.
    pub version: Option<u64>,
    /// The device that made the change, when it named itself: that device
    /// already holds the change and skips its own echo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
}

/// The short preview a conversation list shows for the last message: spaces
/// folded, at most 140 characters. Computed the same way by the proxy and by the
/// desktop cache (for writes not yet synced).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn conversation_detail_is_flat_camel_case() {
        let detail = ConversationDetail {
            conversation: Conversation {
                id: "01J00000000000000000000000".into(),
                title: "Plans".into(),
                created_at: at("2026-11-26T10:00:00Z"),
                updated_at: at("2026-11-26T10:05:00.123Z"),
                version: 3,
                message_count: 1,
                last_message_preview: Some("hi".into()),
                pinned: false,
                archived: false,
                assistant: Default::default(),
            },
            messages: vec![Message {
                id: "01J00000000000000000000001".into(),
                role: Role::User,
                content: "hi".into(),
                timestamp: at("2026-11-26T10:05:00.123Z"),
                reply: None,
            }],
            next_cursor: None,
        };
        let json = serde_json::to_value(&detail).unwrap();
        assert_eq!(json["messageCount"], 1);
        assert_eq!(json["lastMessagePreview"], "hi");
        assert_eq!(json["updatedAt"], "2026-11-26T10:05:00.123Z");
        assert_eq!(json["messages"][0]["role"], "user");
        assert!(json.get("conversation").is_none());
        // The template's shape: no cursor unless a page was asked for.
        assert!(json.get("nextCursor").is_none());
    }

    #[test]
    fn feed_entries_carry_device_and_message_changes() {
        let json = serde_json::json!({
            "items": [{"id": "b", "title": "t", "createdAt": "2026-11-26T10:00:00Z",
                 "updatedAt": "2026-11-26T10:00:00Z", "version": 2, "messageCount": 1,
                 "lastMessagePreview": "hi", "pinned": false, "archived": false,
                 "device": "01JDEVICE", "messageChanges": {"from": "01J1", "all": false}}],
            "cursor": "7",
            "hasMore": false
        });
        let changes: Changes = serde_json::from_value(json).unwrap();
        let Change::Updated(c) = &changes.items[0] else {
            panic!("an update");
        };
        assert_eq!(c.device.as_ref().map(DeviceId::as_str), Some("01JDEVICE"));
        assert_eq!(
            c.message_changes.as_ref().and_then(|m| m.from.as_deref()),
            Some("01J1")
        );
        // A hostile device id is refused, not carried along.
        let bad = serde_json::json!({"conversationId": null, "version": null, "device": "a b"});
        assert!(serde_json::from_value::<ChangeNotice>(bad).is_err());
    }

    #[test]
    fn device_ids_are_short_and_plain() {
        assert!(DeviceId::parse("01JDX3Q5G6Y7Z8A9B0C1D2E3F4").is_ok());
        for bad in ["", "a b", "dev/../x", "é", &"a".repeat(65)] {
            assert!(DeviceId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn changes_tell_deletions_from_updates() {
        let json = serde_json::json!({
            "items": [
                {"id": "a", "deleted": true, "version": 4, "updatedAt": "2026-11-26T10:00:00Z"},
                {"id": "b", "title": "t", "createdAt": "2026-11-26T10:00:00Z",
                 "updatedAt": "2026-11-26T10:00:00Z", "version": 1, "messageCount": 0,
                 "lastMessagePreview": null, "pinned": false, "archived": false}
            ],
            "cursor": "7",
            "hasMore": false
        });
        let changes: Changes = serde_json::from_value(json).unwrap();
        assert!(matches!(changes.items[0], Change::Deleted(_)));
        assert!(matches!(changes.items[1], Change::Updated(_)));
        assert_eq!(changes.items[1].id(), "b");
    }

    #[test]
    fn requests_reject_unknown_fields() {
        let err = serde_json::from_str::<CreateConversation>(r#"{"title":"x","userId":"other"}"#)
            .unwrap_err();
        assert!(err.to_string().contains("userId"), "{err}");
    }

    #[test]
    fn roles_are_closed() {
        assert!(serde_json::from_str::<Role>(r#""admin""#).is_err());
        for role in [Role::User, Role::Assistant, Role::System] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
    }
}
