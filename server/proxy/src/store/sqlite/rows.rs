//! Rows in and out of one transaction: conversations, messages, change
//! entries, the content-bytes counter and the erasure check, shared by every
//! store operation.

use super::*;

pub(super) fn internal(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(code, _)
            if matches!(
                code.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        other => StoreError::Internal(other.to_string()),
    }
}

pub(super) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(super) fn from_ms(v: i64) -> rusqlite::Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Integer,
            "timestamp out of range".into(),
        )
    })
}

pub(super) const CONVERSATION_COLUMNS: &str = "id, title, created_at, updated_at, version, message_count, \
     last_message_preview, pinned, archived, deleted_at, assistant";

pub(super) struct Row_ {
    pub(super) conversation: Conversation,
    pub(super) deleted_at: Option<DateTime<Utc>>,
}

pub(super) fn conversation_row(row: &Row<'_>) -> rusqlite::Result<Row_> {
    let deleted_at: Option<i64> = row.get(9)?;
    let assistant: Option<String> = row.get(10)?;
    Ok(Row_ {
        conversation: Conversation {
            id: row.get(0)?,
            title: row.get(1)?,
            created_at: from_ms(row.get(2)?)?,
            updated_at: from_ms(row.get(3)?)?,
            version: row.get::<_, i64>(4)?.try_into().unwrap_or_default(),
            message_count: row.get::<_, i64>(5)?.try_into().unwrap_or_default(),
            last_message_preview: row.get(6)?,
            pinned: row.get(7)?,
            archived: row.get(8)?,
            assistant: assistant
                .map(|json| serde_json::from_str(&json))
                .transpose()
                .map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        10,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?
                .unwrap_or_default(),
        },
        deleted_at: deleted_at.map(from_ms).transpose()?,
    })
}

pub(super) fn load(tx: &Connection, user: &UserId, id: &str) -> Result<Option<Row_>> {
    tx.query_row(
        &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE user_id = ?1 AND id = ?2"),
        params![user.as_str(), id],
        conversation_row,
    )
    .optional()
    .map_err(internal)
}

/// The live conversation, or NotFound (absent or deleted).
pub(super) fn load_live(tx: &Connection, user: &UserId, id: &str) -> Result<Conversation> {
    match load(tx, user, id)? {
        Some(Row_ {
            conversation,
            deleted_at: None,
        }) => Ok(conversation),
        _ => Err(StoreError::NotFound),
    }
}

pub(super) fn message_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    let role: String = row.get(1)?;
    let reply: Option<String> = row.get(4)?;
    Ok(Message {
        id: row.get(0)?,
        role: Role::parse(&role).unwrap_or(Role::User),
        content: row.get(2)?,
        timestamp: from_ms(row.get(3)?)?,
        reply: reply
            .map(|json| serde_json::from_str(&json))
            .transpose()
            .map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(
                    4,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            })?,
    })
}

pub(super) fn message_by_id(
    conn: &Connection,
    user: &UserId,
    conversation: &str,
    id: &str,
) -> Result<Option<Message>> {
    conn.query_row(
        "SELECT id, role, content, timestamp, reply FROM messages \
         WHERE user_id = ?1 AND conversation_id = ?2 AND id = ?3",
        params![user.as_str(), conversation, id],
        message_row,
    )
    .optional()
    .map_err(internal)
}

pub(super) fn reply_json(m: &Message) -> Result<Option<String>> {
    m.reply
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Internal(e.to_string()))
}

pub(super) fn messages_of(conn: &Connection, user: &UserId, id: &str) -> Result<Vec<Message>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, role, content, timestamp, reply FROM messages \
             WHERE user_id = ?1 AND conversation_id = ?2 ORDER BY id",
        )
        .map_err(internal)?;
    let rows = stmt
        .query_map(params![user.as_str(), id], message_row)
        .map_err(internal)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)
}

/// Up to `fetch` messages of a conversation in the direction `range` asks:
/// ascending after a message, descending before one.
pub(super) fn message_rows(
    conn: &Connection,
    user: &UserId,
    id: &str,
    range: MessageRange,
    fetch: usize,
) -> Result<Vec<Message>> {
    let fetch = i64::try_from(fetch).unwrap_or(i64::MAX);
    let (sql, bound) = match range {
        MessageRange::After(after) => (
            "SELECT id, role, content, timestamp, reply FROM messages \
             WHERE user_id = ?1 AND conversation_id = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
            after.map(|a| a.to_string()).unwrap_or_default(),
        ),
        MessageRange::Before(before) => (
            "SELECT id, role, content, timestamp, reply FROM messages \
             WHERE user_id = ?1 AND conversation_id = ?2 AND id < ?3 ORDER BY id DESC LIMIT ?4",
            // '~' sorts after every ULID: the newest messages.
            before.map_or_else(|| "~".to_owned(), |b| b.to_string()),
        ),
    };
    let mut stmt = conn.prepare_cached(sql).map_err(internal)?;
    let rows = stmt
        .query_map(params![user.as_str(), id, bound, fetch], message_row)
        .map_err(internal)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(internal)
}

/// Records that `conversation` changed: the next per-user sequence number,
/// with the device that made the change and what it did to the messages.
pub(super) fn record_change(
    tx: &Transaction<'_>,
    user: &UserId,
    conversation: &str,
    device: Option<&DeviceId>,
    mark: MessageMark,
) -> Result<u64> {
    let seq: i64 = tx
        .query_row(
            "INSERT INTO sequences (user_id, seq) VALUES (?1, 1) \
             ON CONFLICT (user_id) DO UPDATE SET seq = seq + 1 RETURNING seq",
            params![user.as_str()],
            |row| row.get(0),
        )
        .map_err(internal)?;
    tx.execute(
        "INSERT INTO changes (user_id, seq, conversation_id, at, device, messages) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            user.as_str(),
            seq,
            conversation,
            ms(now()),
            device.map(DeviceId::as_str),
            mark.to_stored()
        ],
    )
    .map_err(internal)?;
    Ok(seq.try_into().unwrap_or_default())
}

/// [`StoreError::Erased`] when `user`'s account was erased lately.
pub(super) fn refuse_erased(tx: &Transaction<'_>, user: &UserId) -> Result<()> {
    let erased: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM erased_users WHERE user_id = ?1 AND at > ?2)",
            params![
                user.as_str(),
                ms(now() - chrono::Duration::days(crate::store::ERASURE_MEMORY_DAYS))
            ],
            |row| row.get(0),
        )
        .map_err(internal)?;
    if erased {
        return Err(StoreError::Erased);
    }
    Ok(())
}

pub(super) fn stored_len(content: &str) -> u64 {
    content.len() as u64
}

pub(super) fn stored_content_bytes(tx: &Transaction<'_>, user: &UserId, id: &str) -> Result<u64> {
    let bytes: i64 = tx
        .query_row(
            "SELECT content_bytes FROM conversations WHERE user_id = ?1 AND id = ?2",
            params![user.as_str(), id],
            |row| row.get(0),
        )
        .map_err(internal)?;
    Ok(u64::try_from(bytes).unwrap_or(0))
}

pub(super) fn set_content_bytes(
    tx: &Transaction<'_>,
    user: &UserId,
    id: &str,
    bytes: u64,
) -> Result<()> {
    tx.execute(
        "UPDATE conversations SET content_bytes = ?3 WHERE user_id = ?1 AND id = ?2",
        params![user.as_str(), id, i64::try_from(bytes).unwrap_or(i64::MAX)],
    )
    .map_err(internal)?;
    Ok(())
}

pub(super) fn save(tx: &Transaction<'_>, user: &UserId, c: &Conversation) -> Result<()> {
    tx.execute(
        "UPDATE conversations SET title = ?3, updated_at = ?4, version = ?5, message_count = ?6, \
         last_message_preview = ?7, pinned = ?8, archived = ?9, deleted_at = NULL, \
         assistant = ?10 \
         WHERE user_id = ?1 AND id = ?2",
        params![
            user.as_str(),
            c.id,
            c.title,
            ms(c.updated_at),
            i64::try_from(c.version).unwrap_or(i64::MAX),
            i64::try_from(c.message_count).unwrap_or(i64::MAX),
            c.last_message_preview,
            c.pinned,
            c.archived,
            (!c.assistant.is_default())
                .then(|| serde_json::to_string(&c.assistant).ok())
                .flatten()
        ],
    )
    .map_err(internal)?;
    Ok(())
}

pub(super) fn insert_message(
    tx: &Transaction<'_>,
    user: &UserId,
    conversation: &str,
    m: &Message,
) -> Result<()> {
    store_message(tx, user, conversation, m, "INSERT")
}

/// Stores a message, in place of one with its id when `verb` is
/// `INSERT OR REPLACE` (a reply's text growing).
pub(super) fn store_message(
    tx: &Transaction<'_>,
    user: &UserId,
    conversation: &str,
    m: &Message,
    verb: &str,
) -> Result<()> {
    tx.execute(
        &format!(
            "{verb} INTO messages \
         (user_id, conversation_id, id, role, content, timestamp, reply) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ),
        params![
            user.as_str(),
            conversation,
            m.id,
            m.role.as_str(),
            m.content,
            ms(m.timestamp),
            reply_json(m)?
        ],
    )
    .map_err(internal)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_in_milliseconds_and_nonsense_is_an_error() {
        let t = DateTime::from_timestamp_millis(1_800_000_000_123).unwrap_or_default();
        assert_eq!(from_ms(ms(t)).ok(), Some(t));
        assert!(from_ms(i64::MAX).is_err());
    }

    #[test]
    fn a_busy_file_is_worth_retrying_and_other_failures_are_bugs() {
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert!(matches!(internal(busy), StoreError::Unavailable(_)));
        assert!(matches!(
            internal(rusqlite::Error::QueryReturnedNoRows),
            StoreError::Internal(_)
        ));
    }

    #[tokio::test]
    async fn rows_read_back_what_the_store_wrote_and_only_the_owners() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let store =
            SqliteStore::open(&dir.path().join("rows.db")).unwrap_or_else(|e| panic!("{e}"));
        let ada = UserId::parse("user_ada").unwrap_or_else(|_| unreachable!());
        let grace = UserId::parse("user_grace").unwrap_or_else(|_| unreachable!());
        let id = Id::new();
        store
            .create_conversation(
                &ada,
                NewConversation {
                    id,
                    title: "Plans".into(),
                    messages: vec![NewMessage {
                        id: Id::new(),
                        role: Role::User,
                        content: "héllo".into(),
                    }],
                },
                None,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let conn = store.conn.lock().unwrap_or_else(|p| p.into_inner());
        let row = load(&conn, &ada, &id.to_string())
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|r| r.conversation);
        assert_eq!(row.as_ref().map(|c| c.title.as_str()), Some("Plans"));
        assert_eq!(row.map(|c| c.message_count), Some(1));
        let messages = messages_of(&conn, &ada, &id.to_string()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(messages.len(), 1);
        assert_eq!(stored_len(&messages[0].content), 6, "bytes, not characters");
        assert!(
            load(&conn, &grace, &id.to_string())
                .unwrap_or_else(|e| panic!("{e}"))
                .is_none(),
            "another user's row"
        );
        assert!(matches!(
            load_live(&conn, &grace, &id.to_string()),
            Err(StoreError::NotFound)
        ));
    }
}
