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
}

/// A conversation with all its messages, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConversationDetail {
    #[serde(flatten)]
    pub conversation: Conversation,
    pub messages: Vec<Message>,
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
    Updated(Conversation),
}

impl Change {
    pub fn id(&self) -> &str {
        match self {
            Change::Deleted(d) => &d.id,
            Change::Updated(c) => &c.id,
        }
    }

    pub fn version(&self) -> u64 {
        match self {
            Change::Deleted(d) => d.version,
            Change::Updated(c) => c.version,
        }
    }
}

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
            },
            messages: vec![Message {
                id: "01J00000000000000000000001".into(),
                role: Role::User,
                content: "hi".into(),
                timestamp: at("2026-11-26T10:05:00.123Z"),
            }],
        };
        let json = serde_json::to_value(&detail).unwrap();
        assert_eq!(json["messageCount"], 1);
        assert_eq!(json["lastMessagePreview"], "hi");
        assert_eq!(json["updatedAt"], "2026-11-26T10:05:00.123Z");
        assert_eq!(json["messages"][0]["role"], "user");
        assert!(json.get("conversation").is_none());
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
