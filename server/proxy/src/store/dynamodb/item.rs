//! How conversations, messages and keys are encoded as DynamoDB items (the
//! table layout is in the parent's docs).

use super::*;

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn pk(user: &UserId) -> AttributeValue {
    s(format!("USER#{user}"))
}

pub(super) fn key(user: &UserId, sk: String) -> Item {
    HashMap::from([("pk".to_owned(), pk(user)), ("sk".to_owned(), s(sk))])
}

/// A processed webhook delivery: outside every user's partition, keyed by
/// its `svix-id` (hashed: a header's text never becomes a key as is).
pub(super) fn delivery_key(delivery: &str) -> Item {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(delivery.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    HashMap::from([
        ("pk".to_owned(), s(format!("WEBHOOK#{hex}"))),
        ("sk".to_owned(), s("DELIVERY")),
    ])
}

/// The erasure marker: outside the user's partition, so erasing the
/// partition never removes it.
pub(super) fn erased_key(user: &UserId) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(format!("ERASED#{user}"))),
        ("sk".to_owned(), s("ERASED")),
    ])
}

pub(super) fn conv_sk(id: &str) -> String {
    format!("CONV#{id}")
}

pub(super) fn msg_sk(conversation: &str, id: &str) -> String {
    format!("MSG#{conversation}#{id}")
}

pub(super) fn chg_sk(seq: u64) -> String {
    format!("CHG#{seq:020}")
}

pub(super) fn gsi_sk(updated_at: DateTime<Utc>, id: &str) -> String {
    format!("{:015}#{id}", updated_at.timestamp_millis().max(0))
}

pub(super) fn get_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub(super) fn get_n(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub(super) fn get_bool(item: &Item, name: &str) -> bool {
    item.get(name)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

pub(super) fn get_time(item: &Item, name: &str) -> Result<DateTime<Utc>> {
    get_s(item, name)
        .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| StoreError::Internal(format!("item lacks a valid {name}")))
}

pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(super) struct Stored {
    pub(super) conversation: Conversation,
    pub(super) deleted_at: Option<DateTime<Utc>>,
    /// Bytes of message content (`contentBytes`); absent on items written
    /// before the caps, counted from the messages when first needed.
    pub(super) content_bytes: Option<u64>,
}

pub(super) fn conversation_from(item: &Item) -> Result<Stored> {
    let id = get_s(item, "sk")
        .and_then(|sk| sk.strip_prefix("CONV#").map(str::to_owned))
        .ok_or_else(|| StoreError::Internal("conversation item without id".into()))?;
    Ok(Stored {
        conversation: Conversation {
            id,
            title: get_s(item, "title").unwrap_or_default(),
            created_at: get_time(item, "createdAt")?,
            updated_at: get_time(item, "updatedAt")?,
            version: get_n(item, "version").unwrap_or(1),
            message_count: get_n(item, "messageCount").unwrap_or(0),
            last_message_preview: get_s(item, "lastMessagePreview"),
            pinned: get_bool(item, "pinned"),
            archived: get_bool(item, "archived"),
            assistant: get_s(item, "assistant")
                .map(|json| serde_json::from_str(&json))
                .transpose()
                .map_err(|e| {
                    StoreError::Internal(format!("stored assistant settings are unreadable: {e}"))
                })?
                .unwrap_or_default(),
        },
        deleted_at: match item.get("deletedAt") {
            Some(_) => Some(get_time(item, "deletedAt")?),
            None => None,
        },
        content_bytes: get_n(item, "contentBytes"),
    })
}

pub(super) fn conversation_item(
    user: &UserId,
    c: &Conversation,
    deleted_at: Option<DateTime<Utc>>,
    content_bytes: Option<u64>,
) -> Item {
    let mut item = key(user, conv_sk(&c.id));
    if let Some(bytes) = content_bytes {
        item.insert("contentBytes".into(), n(bytes));
    }
    item.insert("type".into(), s("conversation"));
    item.insert("title".into(), s(c.title.clone()));
    item.insert("createdAt".into(), s(rfc3339(c.created_at)));
    item.insert("updatedAt".into(), s(rfc3339(c.updated_at)));
    item.insert("version".into(), n(c.version));
    item.insert("messageCount".into(), n(c.message_count));
    if let Some(preview) = &c.last_message_preview {
        item.insert("lastMessagePreview".into(), s(preview.clone()));
    }
    item.insert("pinned".into(), AttributeValue::Bool(c.pinned));
    item.insert("archived".into(), AttributeValue::Bool(c.archived));
    if !c.assistant.is_default()
        && let Ok(json) = serde_json::to_string(&c.assistant)
    {
        item.insert("assistant".into(), s(json));
    }
    match deleted_at {
        None => {
            item.insert("gsi1pk".into(), pk(user));
            item.insert("gsi1sk".into(), s(gsi_sk(c.updated_at, &c.id)));
        }
        Some(at) => {
            item.insert("deletedAt".into(), s(rfc3339(at)));
            let expires = at + chrono::Duration::days(TOMBSTONE_TTL_DAYS);
            item.insert("expiresAt".into(), n(expires.timestamp()));
        }
    }
    item
}

pub(super) fn message_from(item: &Item) -> Result<Message> {
    let id = get_s(item, "sk")
        .and_then(|sk| sk.rsplit('#').next().map(str::to_owned))
        .ok_or_else(|| StoreError::Internal("message item without id".into()))?;
    Ok(Message {
        id,
        role: get_s(item, "role")
            .and_then(|r| Role::parse(&r))
            .unwrap_or(Role::User),
        content: get_s(item, "content").unwrap_or_default(),
        timestamp: get_time(item, "timestamp")?,
        reply: get_s(item, "reply")
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| StoreError::Internal(format!("a stored reply is unreadable: {e}")))?,
    })
}

pub(super) fn message_item(user: &UserId, conversation: &str, m: &Message) -> Item {
    let mut item = key(user, msg_sk(conversation, &m.id));
    item.insert("type".into(), s("message"));
    item.insert("role".into(), s(m.role.as_str()));
    item.insert("content".into(), s(m.content.clone()));
    item.insert("timestamp".into(), s(rfc3339(m.timestamp)));
    if let Some(json) = m.reply.as_ref().and_then(|r| serde_json::to_string(r).ok()) {
        item.insert("reply".into(), s(json));
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> UserId {
        UserId::parse("user_ada").unwrap_or_else(|_| unreachable!())
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 123_000_000).unwrap_or_default()
    }

    fn conversation() -> Conversation {
        Conversation {
            id: "01JAAAAAAAAAAAAAAAAAAAAAAA".into(),
            title: "Plans".into(),
            created_at: at(0),
            updated_at: at(60),
            version: 7,
            message_count: 3,
            last_message_preview: Some("see you".into()),
            pinned: true,
            archived: false,
            assistant: Default::default(),
        }
    }

    #[test]
    fn a_live_conversation_round_trips_and_is_indexed() {
        let c = conversation();
        let item = conversation_item(&ada(), &c, None, Some(42));
        assert_eq!(get_s(&item, "pk").as_deref(), Some("USER#user_ada"));
        assert_eq!(get_s(&item, "sk"), Some(conv_sk(&c.id)));
        assert_eq!(get_s(&item, "gsi1sk"), Some(gsi_sk(c.updated_at, &c.id)));
        assert!(!item.contains_key("expiresAt"));
        let stored = conversation_from(&item).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored.conversation, c);
        assert_eq!(stored.deleted_at, None);
        assert_eq!(stored.content_bytes, Some(42));
    }

    #[test]
    fn a_tombstone_leaves_the_index_and_expires() {
        let item = conversation_item(&ada(), &conversation(), Some(at(120)), None);
        assert!(!item.contains_key("gsi1pk") && !item.contains_key("gsi1sk"));
        let expires = get_n(&item, "expiresAt").unwrap_or_default();
        let days = (expires as i64 - at(120).timestamp()) / 86_400;
        assert_eq!(days, TOMBSTONE_TTL_DAYS);
        let stored = conversation_from(&item).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored.deleted_at, Some(at(120)));
        assert_eq!(
            stored.content_bytes, None,
            "an item from before the counter"
        );
    }

    #[test]
    fn a_message_round_trips() {
        let m = Message {
            id: "01JBBBBBBBBBBBBBBBBBBBBBBB".into(),
            role: Role::Assistant,
            content: "Hello **there**".into(),
            timestamp: at(5),
            reply: None,
        };
        let item = message_item(&ada(), "01JAAAAAAAAAAAAAAAAAAAAAAA", &m);
        assert_eq!(
            get_s(&item, "sk").as_deref(),
            Some("MSG#01JAAAAAAAAAAAAAAAAAAAAAAA#01JBBBBBBBBBBBBBBBBBBBBBBB")
        );
        assert_eq!(message_from(&item).unwrap_or_else(|e| panic!("{e}")), m);
    }

    #[test]
    fn keys_sort_as_the_feed_and_the_index_need() {
        // Zero-padded: string order is numeric order.
        assert!(chg_sk(9) < chg_sk(10));
        assert_eq!(chg_sk(1).len(), chg_sk(u64::MAX).len());
        assert!(gsi_sk(at(1), "b") < gsi_sk(at(2), "a"));
        // A header's text never becomes a key as it is.
        let delivery = delivery_key("msg_../../x");
        assert!(!get_s(&delivery, "pk").unwrap_or_default().contains(".."));
        assert_ne!(erased_key(&ada()).get("pk"), Some(&pk(&ada())));
    }

    #[test]
    fn unreadable_items_are_errors_not_defaults() {
        let mut item = conversation_item(&ada(), &conversation(), None, None);
        item.insert("createdAt".into(), s("yesterday"));
        assert!(conversation_from(&item).is_err());
    }
}
