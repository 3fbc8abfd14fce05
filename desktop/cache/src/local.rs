//! Writes made on this device: each validated as the server would, then saved
//! with its outbox entry in one transaction, then shown.

use chrono::{DateTime, Utc};
use confab_wire::conversations::{Message, Role};
use confab_wire::library::{ListItem, MessageView};
use rusqlite::{Connection, OptionalExtension, params};

use crate::overlay::overlay;
use confab_wire::limits;

use crate::{Cache, CacheError, DEFAULT_TITLE, Op, Result, ts};

/// Fields to change; absent ones stay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patch {
    pub title: Option<String>,
    pub pinned: Option<bool>,
    pub archived: Option<bool>,
    /// The assistant's settings here, replaced whole.
    pub assistant: Option<confab_wire::conversations::AssistantSettings>,
}

pub use confab_wire::limits::is_ulid;

fn check_id(field: &'static str, id: &str) -> Result<()> {
    if is_ulid(id) {
        Ok(())
    } else {
        Err(CacheError::invalid(field, limits::Refusal::NotUlid))
    }
}

fn clean_title(title: &str) -> Result<String> {
    limits::title(title).map_err(|why| CacheError::invalid("title", why))
}

fn queue(conn: &Connection, id: &str, op: &Op, at: &DateTime<Utc>) -> Result<()> {
    let json =
        serde_json::to_string(op).map_err(|e| CacheError::Corrupt(format!("outbox entry: {e}")))?;
    conn.execute(
        "INSERT INTO outbox (conversation_id, op, created_at) VALUES (?1, ?2, ?3)",
        params![id, json, ts(at)],
    )?;
    Ok(())
}

/// `Some(deleted)` when the conversation is shown here.
fn shown_state(conn: &Connection, id: &str) -> Result<Option<bool>> {
    Ok(conn
        .query_row(
            "SELECT deleted_at IS NOT NULL FROM conversations WHERE id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?)
}

impl Cache {
    /// Creates a conversation with a client id (so replaying its create is
    /// harmless). Creating an id that exists answers the existing one.
    pub fn create(&self, id: &str, title: Option<&str>, at: DateTime<Utc>) -> Result<ListItem> {
        check_id("id", id)?;
        let title = match title {
            Some(t) => clean_title(t)?,
            None => DEFAULT_TITLE.to_owned(),
        };
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if shown_state(&tx, id)?.is_none() {
            queue(&tx, id, &Op::Create { title }, &at)?;
            overlay(&tx, id)?;
        }
        tx.commit()?;
        drop(conn);
        self.item(id)?
            .ok_or_else(|| CacheError::NotFound(id.to_owned()))
    }

    /// Renames, pins or archives.
    pub fn update(&self, id: &str, patch: Patch, at: DateTime<Utc>) -> Result<ListItem> {
        let title = patch.title.as_deref().map(clean_title).transpose()?;
        let assistant = patch
            .assistant
            .map(|a| {
                a.checked()
                    .map_err(|(field, why)| CacheError::invalid(field, why))
            })
            .transpose()?;
        if title.is_none()
            && patch.pinned.is_none()
            && patch.archived.is_none()
            && assistant.is_none()
        {
            return Err(CacheError::invalid("patch", "nothing to change"));
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        match shown_state(&tx, id)? {
            Some(false) => {}
            _ => return Err(CacheError::NotFound(id.to_owned())),
        }
        let op = Op::Update {
            title,
            pinned: patch.pinned,
            archived: patch.archived,
            assistant,
        };
        queue(&tx, id, &op, &at)?;
        overlay(&tx, id)?;
        tx.commit()?;
        drop(conn);
        self.item(id)?
            .ok_or_else(|| CacheError::NotFound(id.to_owned()))
    }

    /// Deletes (a tombstone: Undo restores it, messages included).
    pub fn delete(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        match shown_state(&tx, id)? {
            None => return Err(CacheError::NotFound(id.to_owned())),
            Some(true) => return Ok(()),
            Some(false) => {}
        }
        queue(&tx, id, &Op::Delete, &at)?;
        overlay(&tx, id)?;
        tx.commit()?;
        Ok(())
    }

    /// Undoes a delete.
    pub fn restore(&self, id: &str, at: DateTime<Utc>) -> Result<ListItem> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        match shown_state(&tx, id)? {
            None => return Err(CacheError::NotFound(id.to_owned())),
            Some(false) => {}
            Some(true) => {
                queue(&tx, id, &Op::Restore, &at)?;
                // Writes refused because the conversation was deleted go
                // again, after the restore: that is what restoring is for.
                let refused: Vec<i64> = tx
                    .prepare_cached(
                        "SELECT seq FROM outbox WHERE conversation_id = ?1 AND failed IS NOT NULL
                         ORDER BY seq",
                    )?
                    .query_map([id], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                for seq in refused {
                    tx.execute(
                        "INSERT INTO outbox (conversation_id, op, created_at)
                         SELECT conversation_id, op, created_at FROM outbox WHERE seq = ?1",
                        [seq],
                    )?;
                    tx.execute("DELETE FROM outbox WHERE seq = ?1", [seq])?;
                }
                overlay(&tx, id)?;
            }
        }
        tx.commit()?;
        drop(conn);
        self.item(id)?
            .ok_or_else(|| CacheError::NotFound(id.to_owned()))
    }

    /// Appends a message with a client id.
    pub fn append(
        &self,
        conversation_id: &str,
        message_id: &str,
        role: Role,
        content: &str,
        at: DateTime<Utc>,
    ) -> Result<MessageView> {
        check_id("id", message_id)?;
        limits::content(content).map_err(|why| CacheError::invalid("content", why))?;
        let message = Message {
            id: message_id.to_owned(),
            role,
            content: content.to_owned(),
            timestamp: at,
            reply: None,
        };
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        match shown_state(&tx, conversation_id)? {
            Some(false) => {}
            _ => return Err(CacheError::NotFound(conversation_id.to_owned())),
        }
        let inserted = tx.execute(
            "INSERT INTO messages (conversation_id, id, role, content, timestamp, pending)
             VALUES (?1, ?2, ?3, ?4, ?5, 1)
             ON CONFLICT (conversation_id, id) DO NOTHING",
            params![
                conversation_id,
                message.id,
                role_name(role),
                message.content,
                ts(&message.timestamp)
            ],
        )?;
        if inserted == 0 {
            return Err(CacheError::invalid("id", "a message with this id exists"));
        }
        queue(
            &tx,
            conversation_id,
            &Op::Append {
                message: message.clone(),
            },
            &at,
        )?;
        overlay(&tx, conversation_id)?;
        tx.commit()?;
        Ok(MessageView {
            message,
            pending: true,
            asking: false,
        })
    }

    /// Queues a request for the assistant's reply to the user message
    /// `after` (regenerating the one it has, with `regenerate`).
    pub fn ask(
        &self,
        conversation_id: &str,
        after: &str,
        model: Option<&str>,
        regenerate: bool,
        at: DateTime<Utc>,
    ) -> Result<()> {
        check_id("after", after)?;
        if let Some(model) = model
            && (model.is_empty() || model.len() > 128)
        {
            return Err(CacheError::invalid("model", "is 1 to 128 characters"));
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        match shown_state(&tx, conversation_id)? {
            Some(false) => {}
            _ => return Err(CacheError::NotFound(conversation_id.to_owned())),
        }
        let role: Option<String> = tx
            .query_row(
                "SELECT role FROM messages WHERE conversation_id = ?1 AND id = ?2",
                params![conversation_id, after],
                |r| r.get(0),
            )
            .optional()?;
        if role.as_deref() != Some("user") {
            return Err(CacheError::invalid(
                "after",
                "names no message of yours in this conversation",
            ));
        }
        // One request per message at a time: asking again while one waits
        // would only repeat it.
        let waiting: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM outbox WHERE conversation_id = ?1
                AND op LIKE ?2 AND json_extract(op, '$.after') = ?3 AND failed IS NULL)",
            params![conversation_id, format!("{}%", Op::ASK_PREFIX), after],
            |r| r.get(0),
        )?;
        if !waiting {
            queue(
                &tx,
                conversation_id,
                &Op::Ask {
                    after: after.to_owned(),
                    model: model.map(str::to_owned),
                    regenerate,
                },
                &at,
            )?;
        }
        tx.commit()?;
        Ok(())
    }
}

pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::System => "system",
    }
}

pub(crate) fn parse_role(name: &str) -> Result<Role> {
    match name {
        "user" => Ok(Role::User),
        "assistant" => Ok(Role::Assistant),
        "system" => Ok(Role::System),
        other => Err(CacheError::Corrupt(format!("role {other:?}"))),
    }
}
