//! What a conversation row shows: the server's last known state with the
//! outbox's pending operations applied in order. Recomputed after every local
//! write and every server change, inside the same transaction.

use chrono::{DateTime, Utc};
use confab_wire::conversations::preview;
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Op, Result, parse_ts, ts};

struct Shown {
    title: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    message_count: u64,
    preview: Option<String>,
    pinned: bool,
    archived: bool,
    deleted_at: Option<DateTime<Utc>>,
    /// The assistant's settings (JSON), `None` for the defaults.
    assistant: Option<String>,
}

impl Shown {
    fn touch(&mut self, at: DateTime<Utc>) {
        if at > self.updated_at {
            self.updated_at = at;
        }
    }
}

pub(crate) fn overlay(conn: &Connection, id: &str) -> Result<()> {
    type ServerRow = (
        String,
        String,
        String,
        i64,
        Option<String>,
        bool,
        bool,
        Option<String>,
        Option<String>,
    );
    let server: Option<ServerRow> = conn
        .query_row(
            "SELECT server_title, server_created_at, server_updated_at, server_message_count,
                    server_preview, server_pinned, server_archived, server_deleted_at,
                    server_assistant
             FROM conversations WHERE id = ?1 AND version > 0",
            [id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                ))
            },
        )
        .optional()?;
    let mut shown = match server {
        Some((title, created, updated, count, preview, pinned, archived, deleted, assistant)) => {
            Some(Shown {
                title,
                created_at: parse_ts(&created)?,
                updated_at: parse_ts(&updated)?,
                message_count: count.max(0) as u64,
                preview,
                pinned,
                archived,
                deleted_at: deleted.as_deref().map(parse_ts).transpose()?,
                assistant,
            })
        }
        None => None,
    };

    let mut stmt = conn.prepare_cached(
        "SELECT op, created_at FROM outbox WHERE conversation_id = ?1 ORDER BY seq",
    )?;
    let ops = stmt
        .query_map([id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    for (op, at) in ops {
        let op: Op = serde_json::from_str(&op)
            .map_err(|e| crate::CacheError::Corrupt(format!("outbox entry: {e}")))?;
        let at = parse_ts(&at)?;
        match (op, shown.as_mut()) {
            (Op::Create { title }, None) => {
                shown = Some(Shown {
                    title,
                    created_at: at,
                    updated_at: at,
                    message_count: 0,
                    preview: None,
                    pinned: false,
                    archived: false,
                    deleted_at: None,
                    assistant: None,
                });
            }
            // The server has it already (the create was sent, not yet acknowledged).
            (Op::Create { .. }, Some(_)) => {}
            (
                Op::Update {
                    title,
                    pinned,
                    archived,
                    assistant,
                },
                Some(s),
            ) => {
                if let Some(assistant) = assistant {
                    s.assistant = (!assistant.is_default())
                        .then(|| serde_json::to_string(&assistant).ok())
                        .flatten();
                }
                if let Some(title) = title {
                    s.title = title;
                }
                if let Some(pinned) = pinned {
                    s.pinned = pinned;
                }
                if let Some(archived) = archived {
                    s.archived = archived;
                }
                s.touch(at);
            }
            (Op::Delete, Some(s)) => s.deleted_at = Some(at),
            (Op::Restore, Some(s)) => {
                s.deleted_at = None;
                s.touch(at);
            }
            (Op::Append { message }, Some(s)) => {
                // Counted only while the server does not have it yet.
                let pending: bool = conn
                    .query_row(
                        "SELECT pending FROM messages WHERE conversation_id = ?1 AND id = ?2",
                        [id, &message.id],
                        |r| r.get(0),
                    )
                    .optional()?
                    .unwrap_or(false);
                if pending {
                    s.message_count += 1;
                    s.preview = Some(preview(&message.content));
                    s.touch(message.timestamp);
                }
            }
            // Changes nothing shown until the server answers.
            (Op::Ask { .. }, _) => {}
            // An operation on something neither the server nor a create knows:
            // nothing to show (the sync engine will have it refused).
            (_, None) => {}
        }
    }

    match shown {
        None => {
            conn.execute("DELETE FROM messages WHERE conversation_id = ?1", [id])?;
            conn.execute("DELETE FROM conversations WHERE id = ?1", [id])?;
        }
        Some(s) => {
            conn.execute(
                "INSERT INTO conversations (id, title, created_at, updated_at, updated_ms,
                    message_count, last_message_preview, pinned, archived, deleted_at,
                    assistant)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (id) DO UPDATE SET
                    title = excluded.title, created_at = excluded.created_at,
                    updated_at = excluded.updated_at, updated_ms = excluded.updated_ms,
                    message_count = excluded.message_count,
                    last_message_preview = excluded.last_message_preview,
                    pinned = excluded.pinned, archived = excluded.archived,
                    deleted_at = excluded.deleted_at, assistant = excluded.assistant",
                params![
                    id,
                    s.title,
                    ts(&s.created_at),
                    ts(&s.updated_at),
                    s.updated_at.timestamp_millis(),
                    s.message_count as i64,
                    s.preview,
                    s.pinned,
                    s.archived,
                    s.deleted_at.as_ref().map(ts),
                    s.assistant,
                ],
            )?;
        }
    }
    Ok(())
}
