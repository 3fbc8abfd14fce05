//! The embedded store: one SQLite file (WAL), the same semantics as DynamoDB.
//!
//! One connection behind a mutex, used from Tokio's blocking pool: every
//! operation is a short transaction, so serialising them costs little and makes
//! per-user counters (version, message count, change sequence) race-free.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use confab_wire::conversations::{
    Changes, Conversation, ConversationDetail, Deletion, Message, Page, Profile, Role,
};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::{
    Caps, Created, DELIVERY_MEMORY_SECS, DeviceId, FeedWalk, LogEntry, MessageMark, MessageRange,
    NewConversation, NewMessage, Patch, ProfileFields, ReplyPlan, ReplyWrite, Result, Store,
    StoreError, TOMBSTONE_TTL_DAYS, check_cursor, check_version, content_bytes, count_reply,
    list_cursor, materialise, message_page, now, parse_list_cursor, plan_reply, preview,
};
use crate::ids::{Id, UserId};

mod rows;
mod schema;

use rows::*;
use schema::{MIGRATIONS, SCHEMA, SCHEMA_VERSION};

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    caps: Caps,
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(internal)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(internal)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(internal)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(internal)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Unavailable(format!(
                "{} was written by a newer Confab (schema {version}); upgrade the proxy",
                path.display()
            )));
        }
        if version >= 1 {
            for step in MIGRATIONS
                .iter()
                .skip(usize::try_from(version - 1).unwrap_or(0))
            {
                conn.execute_batch(step).map_err(internal)?;
            }
        }
        conn.execute_batch(SCHEMA).map_err(internal)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(internal)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            caps: Caps::default(),
        })
    }

    /// The per-conversation caps this store enforces.
    pub fn with_caps(mut self, caps: Caps) -> Self {
        self.caps = caps;
        self
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| StoreError::Internal("store lock poisoned".into()))?;
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.run(move |conn| {
            let tx = conn.transaction().map_err(internal)?;
            let value = f(&tx)?;
            tx.commit().map_err(internal)?;
            Ok(value)
        })
        .await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        self.run(|conn| conn.query_row("SELECT 1", [], |_| Ok(())).map_err(internal))
            .await
    }

    async fn get_profile(&self, user: &UserId) -> Result<Option<Profile>> {
        let user = user.clone();
        self.run(move |conn| {
            conn.query_row(
                "SELECT email, first_name, last_name, image_url, created_at, updated_at \
                 FROM profiles WHERE user_id = ?1",
                params![user.as_str()],
                |row| {
                    Ok(Profile {
                        id: user.to_string(),
                        clerk_id: user.to_string(),
                        email: row.get(0)?,
                        first_name: row.get(1)?,
                        last_name: row.get(2)?,
                        image_url: row.get(3)?,
                        created_at: from_ms(row.get(4)?)?,
                        updated_at: from_ms(row.get(5)?)?,
                    })
                },
            )
            .optional()
            .map_err(internal)
        })
        .await
    }

    async fn put_profile(&self, user: &UserId, fields: ProfileFields) -> Result<Profile> {
        let at = ms(now());
        {
            let user = user.clone();
            self.write(move |tx| {
                refuse_erased(tx, &user)?;
                tx.execute(
                    "INSERT INTO profiles (user_id, email, first_name, last_name, image_url, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
                     ON CONFLICT (user_id) DO UPDATE SET email = ?2, first_name = ?3, last_name = ?4, \
                     image_url = ?5, updated_at = ?6",
                    params![user.as_str(), fields.email, fields.first_name, fields.last_name, fields.image_url, at],
                )
                .map_err(internal)?;
                Ok(())
            })
            .await?;
        }
        self.get_profile(user).await?.ok_or(StoreError::NotFound)
    }

    async fn list_conversations(
        &self,
        user: &UserId,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<Conversation>> {
        let user = user.clone();
        let after = cursor
            .map(parse_list_cursor)
            .transpose()?
            .map(|(at, id)| (at, id.to_string()));
        let limit = limit.max(1);
        self.run(move |conn| {
            let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
            let (at, id) = after.unwrap_or((i64::MAX, String::new()));
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations \
                     WHERE user_id = ?1 AND deleted_at IS NULL \
                     AND (updated_at < ?2 OR (updated_at = ?2 AND id < ?3) OR ?3 = '') \
                     ORDER BY updated_at DESC, id DESC LIMIT ?4"
                ))
                .map_err(internal)?;
            let mut items = stmt
                .query_map(params![user.as_str(), at, id, fetch], conversation_row)
                .map_err(internal)?
                .map(|r| r.map(|row| row.conversation))
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(internal)?;
            let next_cursor = if items.len() > limit {
                items.truncate(limit);
                items.last().map(list_cursor)
            } else {
                None
            };
            Ok(Page { items, next_cursor })
        })
        .await
    }

    async fn create_conversation(
        &self,
        user: &UserId,
        new: NewConversation,
        device: Option<&DeviceId>,
    ) -> Result<Created<ConversationDetail>> {
        let user = user.clone();
        let device = device.cloned();
        let caps = self.caps;
        self.write(move |tx| {
            refuse_erased(tx, &user)?;
            let id = new.id.to_string();
            if let Some(existing) = load(tx, &user, &id)? {
                if existing.deleted_at.is_some() {
                    return Err(StoreError::IdTaken(
                        "a deleted conversation has this id: restore it instead",
                    ));
                }
                let messages = messages_of(tx, &user, &id)?;
                return Ok(Created {
                    value: ConversationDetail {
                        conversation: existing.conversation,
                        messages,
                        next_cursor: None,
                    },
                    created: false,
                });
            }
            let at = now();
            let messages = materialise(new.messages, at);
            let bytes = content_bytes(&messages);
            caps.check(0, 0, messages.len() as u64, bytes)?;
            let conversation = Conversation {
                id: id.clone(),
                title: new.title,
                created_at: at,
                updated_at: at,
                version: 1,
                message_count: messages.len() as u64,
                last_message_preview: messages.last().map(|m| preview(&m.content)),
                pinned: false,
                archived: false,
                assistant: Default::default(),
            };
            tx.execute(
                "INSERT INTO conversations (user_id, id, title, created_at, updated_at, version, \
                 message_count, last_message_preview, pinned, archived, content_bytes) \
                 VALUES (?1, ?2, ?3, ?4, ?4, 1, ?5, ?6, 0, 0, ?7)",
                params![
                    user.as_str(),
                    id,
                    conversation.title,
                    ms(at),
                    i64::try_from(conversation.message_count).unwrap_or(i64::MAX),
                    conversation.last_message_preview,
                    i64::try_from(bytes).unwrap_or(i64::MAX)
                ],
            )
            .map_err(internal)?;
            for m in &messages {
                insert_message(tx, &user, &id, m)?;
            }
            let mark = MessageMark::from_first(&messages);
            record_change(tx, &user, &id, device.as_ref(), mark)?;
            Ok(Created {
                value: ConversationDetail {
                    conversation,
                    messages,
                    next_cursor: None,
                },
                created: true,
            })
        })
        .await
    }

    async fn get_conversation(&self, user: &UserId, id: Id) -> Result<ConversationDetail> {
        let user = user.clone();
        self.run(move |conn| {
            let id = id.to_string();
            let conversation = load_live(conn, &user, &id)?;
            let messages = messages_of(conn, &user, &id)?;
            Ok(ConversationDetail {
                conversation,
                messages,
                next_cursor: None,
            })
        })
        .await
    }

    async fn get_conversation_newest(
        &self,
        user: &UserId,
        id: Id,
        limit: usize,
    ) -> Result<ConversationDetail> {
        let user = user.clone();
        let limit = limit.max(1);
        self.run(move |conn| {
            let key = id.to_string();
            let conversation = load_live(conn, &user, &key)?;
            let range = MessageRange::Before(None);
            let rows = message_rows(conn, &user, &key, range, limit + 1)?;
            let page = message_page(rows, range, limit);
            Ok(ConversationDetail {
                conversation,
                messages: page.items,
                next_cursor: page.next_cursor,
            })
        })
        .await
    }

    async fn messages(
        &self,
        user: &UserId,
        conversation: Id,
        range: MessageRange,
        limit: usize,
    ) -> Result<Page<Message>> {
        let user = user.clone();
        let limit = limit.max(1);
        self.run(move |conn| {
            let key = conversation.to_string();
            load_live(conn, &user, &key)?;
            let rows = message_rows(conn, &user, &key, range, limit + 1)?;
            Ok(message_page(rows, range, limit))
        })
        .await
    }

    async fn update_conversation(
        &self,
        user: &UserId,
        id: Id,
        patch: Patch,
        device: Option<&DeviceId>,
    ) -> Result<Conversation> {
        let user = user.clone();
        let device = device.cloned();
        let caps = self.caps;
        self.write(move |tx| {
            let id = id.to_string();
            let mut c = load_live(tx, &user, &id)?;
            let at = now();
            patch.apply(&mut c, at)?;
            let mut mark = MessageMark::Untouched;
            if let Some(messages) = patch.messages {
                mark = MessageMark::All;
                tx.execute(
                    "DELETE FROM messages WHERE user_id = ?1 AND conversation_id = ?2",
                    params![user.as_str(), id],
                )
                .map_err(internal)?;
                let messages = materialise(messages, at);
                let bytes = content_bytes(&messages);
                caps.check(0, 0, messages.len() as u64, bytes)?;
                for m in &messages {
                    insert_message(tx, &user, &id, m)?;
                }
                set_content_bytes(tx, &user, &id, bytes)?;
                c.message_count = messages.len() as u64;
                c.last_message_preview = messages.last().map(|m| preview(&m.content));
            }
            save(tx, &user, &c)?;
            record_change(tx, &user, &id, device.as_ref(), mark)?;
            Ok(c)
        })
        .await
    }

    async fn delete_conversation(
        &self,
        user: &UserId,
        id: Id,
        expected_version: Option<u64>,
        device: Option<&DeviceId>,
    ) -> Result<Deletion> {
        let user = user.clone();
        let device = device.cloned();
        self.write(move |tx| {
            let id = id.to_string();
            let mut c = load_live(tx, &user, &id)?;
            check_version(&c, expected_version)?;
            c.version += 1;
            c.updated_at = now();
            tx.execute(
                "UPDATE conversations SET version = ?3, updated_at = ?4, deleted_at = ?4 \
                 WHERE user_id = ?1 AND id = ?2",
                params![
                    user.as_str(),
                    id,
                    i64::try_from(c.version).unwrap_or(i64::MAX),
                    ms(c.updated_at)
                ],
            )
            .map_err(internal)?;
            record_change(tx, &user, &id, device.as_ref(), MessageMark::Untouched)?;
            Ok(Deletion {
                id,
                deleted: true,
                version: c.version,
                updated_at: c.updated_at,
            })
        })
        .await
    }

    async fn restore_conversation(
        &self,
        user: &UserId,
        id: Id,
        device: Option<&DeviceId>,
    ) -> Result<Conversation> {
        let user = user.clone();
        let device = device.cloned();
        self.write(move |tx| {
            let id = id.to_string();
            let Some(Row_ {
                conversation: mut c,
                deleted_at,
            }) = load(tx, &user, &id)?
            else {
                return Err(StoreError::NotFound);
            };
            let Some(deleted_at) = deleted_at else {
                // Restoring a live conversation is a harmless replay.
                return Ok(c);
            };
            if deleted_at + chrono::Duration::days(TOMBSTONE_TTL_DAYS) < now() {
                // Past the tombstone's life; the hourly purge just has not run.
                return Err(StoreError::NotFound);
            }
            c.version += 1;
            c.updated_at = now();
            save(tx, &user, &c)?;
            record_change(tx, &user, &id, device.as_ref(), MessageMark::Untouched)?;
            Ok(c)
        })
        .await
    }

    async fn append_message(
        &self,
        user: &UserId,
        conversation: Id,
        message: NewMessage,
        device: Option<&DeviceId>,
    ) -> Result<Created<(Message, Conversation)>> {
        let user = user.clone();
        let device = device.cloned();
        let caps = self.caps;
        self.write(move |tx| {
            let id = conversation.to_string();
            let mut c = load_live(tx, &user, &id)?;
            let message_id = message.id.to_string();
            if let Some(stored) = message_by_id(tx, &user, &id, &message_id)? {
                if stored.role != message.role || stored.content != message.content {
                    return Err(StoreError::IdTaken(
                        "this message id is already used for a different message",
                    ));
                }
                return Ok(Created {
                    value: (stored, c),
                    created: false,
                });
            }
            let bytes = stored_content_bytes(tx, &user, &id)?;
            let more = stored_len(&message.content);
            caps.check(c.message_count, bytes, 1, more)?;
            let at = now();
            let stored = Message {
                id: message_id,
                role: message.role,
                content: message.content,
                timestamp: at,
                reply: None,
            };
            insert_message(tx, &user, &id, &stored)?;
            set_content_bytes(tx, &user, &id, bytes + more)?;
            c.message_count += 1;
            c.last_message_preview = Some(preview(&stored.content));
            c.version += 1;
            c.updated_at = at;
            save(tx, &user, &c)?;
            let mark = MessageMark::From(stored.id.clone());
            record_change(tx, &user, &id, device.as_ref(), mark)?;
            Ok(Created {
                value: (stored, c),
                created: true,
            })
        })
        .await
    }

    async fn changes(&self, user: &UserId, since: u64, limit: usize) -> Result<Changes> {
        let user = user.clone();
        self.run(move |conn| {
            let since_i = i64::try_from(since).map_err(|_| StoreError::InvalidCursor)?;
            let current: i64 = conn
                .query_row(
                    "SELECT seq FROM sequences WHERE user_id = ?1",
                    params![user.as_str()],
                    |row| row.get(0),
                )
                .optional()
                .map_err(internal)?
                .unwrap_or(0);
            let first_after: Option<i64> = conn
                .query_row(
                    "SELECT MIN(seq) FROM changes WHERE user_id = ?1 AND seq > ?2",
                    params![user.as_str(), since_i],
                    |row| row.get(0),
                )
                .map_err(internal)?;
            check_cursor(
                since,
                first_after.and_then(|f| u64::try_from(f).ok()),
                u64::try_from(current).unwrap_or(0),
            )?;
            let mut walk = FeedWalk::new(since, limit);
            {
                let mut stmt = conn
                    .prepare_cached(
                        "SELECT seq, conversation_id, device, messages FROM changes \
                         WHERE user_id = ?1 AND seq > ?2 ORDER BY seq",
                    )
                    .map_err(internal)?;
                let mut rows = stmt
                    .query(params![user.as_str(), since_i])
                    .map_err(internal)?;
                while let Some(row) = rows.next().map_err(internal)? {
                    let seq: i64 = row.get(0).map_err(internal)?;
                    let device: Option<String> = row.get(2).map_err(internal)?;
                    let messages: Option<String> = row.get(3).map_err(internal)?;
                    let entry = LogEntry {
                        seq: u64::try_from(seq).unwrap_or_default(),
                        conversation: row.get(1).map_err(internal)?,
                        device: device.and_then(|d| DeviceId::parse(&d).ok()),
                        mark: MessageMark::from_stored(messages.as_deref()),
                    };
                    match walk.push(entry) {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(_) => {
                            return Err(StoreError::CursorExpired {
                                current: u64::try_from(current).unwrap_or(0),
                            });
                        }
                    }
                }
            }
            let mut items = Vec::with_capacity(walk.conversations().len());
            for id in walk.conversations().to_vec() {
                // A purged conversation has no row left; its change is moot.
                if let Some(row) = load(conn, &user, &id)? {
                    items.push(walk.change(row.conversation, row.deleted_at));
                }
            }
            Ok(Changes {
                items,
                cursor: walk.cursor().to_string(),
                has_more: walk.has_more,
            })
        })
        .await
    }

    async fn purge_expired(&self) -> Result<u64> {
        let cutoff = ms(now() - chrono::Duration::days(TOMBSTONE_TTL_DAYS));
        self.write(move |tx| {
            let mut removed = tx
                .execute(
                    "DELETE FROM messages WHERE (user_id, conversation_id) IN \
                     (SELECT user_id, id FROM conversations WHERE deleted_at < ?1)",
                    params![cutoff],
                )
                .map_err(internal)?;
            removed += tx
                .execute(
                    "DELETE FROM erased_users WHERE at < ?1",
                    params![ms(
                        now() - chrono::Duration::days(super::ERASURE_MEMORY_DAYS)
                    )],
                )
                .map_err(internal)?;
            removed += tx
                .execute(
                    "DELETE FROM conversations WHERE deleted_at < ?1",
                    params![cutoff],
                )
                .map_err(internal)?;
            removed += tx
                .execute("DELETE FROM changes WHERE at < ?1", params![cutoff])
                .map_err(internal)?;
            Ok(removed as u64)
        })
        .await
    }

    async fn delivery_seen(&self, delivery: &str) -> Result<bool> {
        let delivery = delivery.to_owned();
        let since = ms(now()) - DELIVERY_MEMORY_SECS * 1000;
        self.run(move |conn| {
            conn.query_row(
                "SELECT 1 FROM webhook_deliveries WHERE id = ?1 AND at >= ?2",
                params![delivery, since],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(internal)
        })
        .await
    }

    async fn record_delivery(&self, delivery: &str) -> Result<()> {
        let delivery = delivery.to_owned();
        let at = ms(now());
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM webhook_deliveries WHERE at < ?1",
                params![at - DELIVERY_MEMORY_SECS * 1000],
            )
            .map_err(internal)?;
            tx.execute(
                "INSERT INTO webhook_deliveries (id, at) VALUES (?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET at = ?2",
                params![delivery, at],
            )
            .map_err(internal)?;
            Ok(())
        })
        .await
    }

    async fn write_reply(
        &self,
        user: &UserId,
        conversation: Id,
        write: ReplyWrite,
        device: Option<&DeviceId>,
    ) -> Result<Created<(Message, Conversation)>> {
        let user = user.clone();
        let device = device.cloned();
        let caps = self.caps;
        self.write(move |tx| {
            let id = conversation.to_string();
            let mut c = load_live(tx, &user, &id)?;
            let reply_id = write.id();
            let existing = message_by_id(tx, &user, &id, &reply_id)?;
            let after = match write.after() {
                Some(after) => message_by_id(tx, &user, &id, after)?,
                None => None,
            };
            let at = now();
            let old_len = existing.as_ref().map(|m| stored_len(&m.content));
            let message = match plan_reply(write, existing, after.as_ref(), at)? {
                ReplyPlan::Keep(message) => {
                    return Ok(Created {
                        value: (message, c),
                        created: false,
                    });
                }
                ReplyPlan::Write(message) => message,
            };
            let bytes = stored_content_bytes(tx, &user, &id)?;
            let new_len = stored_len(&message.content);
            let kept = bytes.saturating_sub(old_len.unwrap_or(0));
            caps.check(c.message_count, kept, u64::from(old_len.is_none()), new_len)?;
            store_message(tx, &user, &id, &message, "INSERT OR REPLACE")?;
            set_content_bytes(tx, &user, &id, kept + new_len)?;
            let newest: Option<String> = tx
                .query_row(
                    "SELECT MAX(id) FROM messages WHERE user_id = ?1 AND conversation_id = ?2",
                    params![user.as_str(), id],
                    |row| row.get(0),
                )
                .map_err(internal)?;
            let is_newest = newest.as_deref() == Some(reply_id.as_str());
            count_reply(&mut c, &message, old_len, is_newest, at);
            save(tx, &user, &c)?;
            let mark = MessageMark::From(reply_id);
            record_change(tx, &user, &id, device.as_ref(), mark)?;
            Ok(Created {
                value: (message, c),
                created: true,
            })
        })
        .await
    }

    async fn charge_usage(
        &self,
        user: &UserId,
        day: &str,
        tokens: i64,
        budget: Option<u64>,
    ) -> Result<u64> {
        let user = user.clone();
        let day = day.to_owned();
        self.write(move |tx| {
            let used: i64 = tx
                .query_row(
                    "SELECT tokens FROM usage WHERE user_id = ?1 AND day = ?2",
                    params![user.as_str(), day],
                    |row| row.get(0),
                )
                .optional()
                .map_err(internal)?
                .unwrap_or(0);
            let used = u64::try_from(used).unwrap_or(0);
            if budget.is_some_and(|budget| used >= budget) {
                return Err(StoreError::OverBudget { used });
            }
            let next = i64::try_from(used)
                .unwrap_or(i64::MAX)
                .saturating_add(tokens)
                .max(0);
            tx.execute(
                "INSERT INTO usage (user_id, day, tokens) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (user_id, day) DO UPDATE SET tokens = ?3",
                params![user.as_str(), day, next],
            )
            .map_err(internal)?;
            // Days long past are of no use: keep a month.
            tx.execute(
                "DELETE FROM usage WHERE user_id = ?1 AND day < ?2",
                params![
                    user.as_str(),
                    super::usage_day(Utc::now() - chrono::Duration::days(31))
                ],
            )
            .map_err(internal)?;
            Ok(u64::try_from(next).unwrap_or(0))
        })
        .await
    }

    async fn erase_user(&self, user: &UserId) -> Result<()> {
        let user = user.clone();
        self.write(move |tx| {
            for table in [
                "profiles",
                "conversations",
                "messages",
                "sequences",
                "changes",
                "usage",
            ] {
                tx.execute(
                    &format!("DELETE FROM {table} WHERE user_id = ?1"),
                    params![user.as_str()],
                )
                .map_err(internal)?;
            }
            tx.execute(
                "INSERT INTO erased_users (user_id, at) VALUES (?1, ?2) \
                 ON CONFLICT (user_id) DO UPDATE SET at = ?2",
                params![user.as_str(), ms(now())],
            )
            .map_err(internal)?;
            Ok(())
        })
        .await
    }
}
