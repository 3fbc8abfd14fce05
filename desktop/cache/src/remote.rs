//! The sync engine's side: the outbox in order, and what the server says.
//!
//! The server is authoritative: its state replaces the stored server state
//! (never an older version over a newer one), and what is shown is recomputed
//! with the pending operations on top.

use std::collections::HashSet;

use confab_wire::conversations::{Change, Conversation, ConversationDetail, Deletion, Message};
use rusqlite::{Connection, OptionalExtension, params};

use crate::local::role_name;
use crate::overlay::overlay;
use crate::{Cache, CacheError, Op, OutboxEntry, Result, parse_ts, ts};

fn entry(conn: &Connection, sql: &str, seq: Option<i64>) -> Result<Option<OutboxEntry>> {
    let row = conn
        .query_row(sql, rusqlite::params_from_iter(seq), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, Option<i64>>(6)?,
            ))
        })
        .optional()?;
    let Some((seq, conversation_id, op, created_at, attempts, failed, version)) = row else {
        return Ok(None);
    };
    Ok(Some(OutboxEntry {
        seq,
        conversation_id,
        op: serde_json::from_str(&op)
            .map_err(|e| CacheError::Corrupt(format!("outbox entry {seq}: {e}")))?,
        created_at: parse_ts(&created_at)?,
        attempts,
        failed,
        server_version: version.unwrap_or(0).max(0) as u64,
    }))
}

/// A message from the server: inserted, or replacing a pending or different
/// copy (an unchanged one is left alone, so nothing is re-indexed).
const UPSERT_MESSAGE: &str =
    "INSERT INTO messages (conversation_id, id, role, content, timestamp, pending, reply)
     VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)
     ON CONFLICT (conversation_id, id) DO UPDATE SET
        role = excluded.role, content = excluded.content,
        timestamp = excluded.timestamp, pending = 0, reply = excluded.reply
     WHERE messages.pending = 1 OR messages.content != excluded.content
        OR messages.role != excluded.role OR messages.reply IS NOT excluded.reply";

/// A reply's status and model as the cache keeps them (`None` for a
/// message someone wrote).
pub(crate) fn reply_json(m: &Message) -> Option<String> {
    m.reply.as_ref().and_then(|r| serde_json::to_string(r).ok())
}

/// What applying a page of the change feed did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Conversations whose stored state changed.
    pub touched: Vec<String>,
    /// Of those, the ones whose messages must be fetched.
    pub stale: Vec<String>,
}

const ENTRY: &str = "SELECT o.seq, o.conversation_id, o.op, o.created_at, o.attempts, o.failed,
    c.version FROM outbox o LEFT JOIN conversations c ON c.id = o.conversation_id";

/// Stores the server's state of a conversation unless the cache holds that
/// version or a newer one. Returns whether it was stored.
fn store_server(conn: &Connection, c: &Conversation) -> Result<bool> {
    let known: Option<i64> = conn
        .query_row(
            "SELECT version FROM conversations WHERE id = ?1",
            [&c.id],
            |r| r.get(0),
        )
        .optional()?;
    if known.is_some_and(|v| v >= c.version as i64) {
        // The same version is the same state: nothing to store, nothing for
        // the UI to read again (a device's own change coming back).
        return Ok(false);
    }
    let settings = (!c.assistant.is_default())
        .then(|| serde_json::to_string(&c.assistant).ok())
        .flatten();
    let server = params![
        c.id,
        c.version as i64,
        c.title,
        ts(&c.created_at),
        ts(&c.updated_at),
        c.message_count as i64,
        c.last_message_preview,
        c.pinned,
        c.archived,
        settings,
    ];
    if known.is_some() {
        conn.execute(
            "UPDATE conversations SET version = ?2, server_title = ?3, server_created_at = ?4,
                server_updated_at = ?5, server_message_count = ?6, server_preview = ?7,
                server_pinned = ?8, server_archived = ?9, server_deleted_at = NULL,
                server_assistant = ?10
             WHERE id = ?1",
            server,
        )?;
    } else {
        // Shown columns are placeholders until the overlay right after.
        conn.execute(
            "INSERT INTO conversations (id, version, server_title, server_created_at,
                server_updated_at, server_message_count, server_preview, server_pinned,
                server_archived, server_assistant, title, created_at, updated_at, updated_ms,
                message_count, pinned, archived)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?3, ?4, ?5, 0, 0, 0, 0)",
            server,
        )?;
    }
    Ok(true)
}

fn store_deletion(conn: &Connection, d: &Deletion) -> Result<bool> {
    let changed = conn.execute(
        "UPDATE conversations SET version = ?2, server_deleted_at = ?3, server_updated_at = ?3
         WHERE id = ?1 AND version <= ?2 AND version > 0",
        params![d.id, d.version as i64, ts(&d.updated_at)],
    )?;
    Ok(changed > 0)
}

/// Whether the cache lacks messages the server has for `id`.
fn needs_messages(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT c.messages_version < c.version AND c.server_deleted_at IS NULL
                AND c.server_message_count !=
                    (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = c.id AND m.pending = 0)
             FROM conversations c WHERE c.id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(false))
}

impl Cache {
    /// The oldest entry not refused: what to send next.
    pub fn next_outbox(&self) -> Result<Option<OutboxEntry>> {
        entry(
            &self.conn(),
            // Not past a refused entry of the same conversation: what follows
            // it (a rename after a refused create) would be misapplied.
            &format!(
                "{ENTRY} WHERE o.failed IS NULL AND NOT EXISTS (
                    SELECT 1 FROM outbox f WHERE f.conversation_id = o.conversation_id
                        AND f.failed IS NOT NULL AND f.seq < o.seq
                        AND f.op NOT LIKE '{}%')
                 ORDER BY o.seq LIMIT 1",
                Op::ASK_PREFIX
            ),
            None,
        )
    }

    /// Every entry, oldest first.
    pub fn outbox(&self) -> Result<Vec<OutboxEntry>> {
        let conn = self.conn();
        let seqs: Vec<i64> = conn
            .prepare_cached("SELECT seq FROM outbox ORDER BY seq")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        seqs.into_iter()
            .filter_map(|seq| {
                entry(&conn, &format!("{ENTRY} WHERE o.seq = ?1"), Some(seq)).transpose()
            })
            .collect()
    }

    /// Counts a try at sending an entry (before sending it).
    pub fn note_attempt(&self, seq: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?1",
            [seq],
        )?;
        Ok(())
    }

    /// The server applied entry `seq`; `server` is the conversation as it
    /// answered (none for a delete), `stored` the message it stored (for an
    /// append). One transaction: the entry goes, the answer is kept.
    pub fn acknowledge(
        &self,
        seq: i64,
        server: Option<&Conversation>,
        stored: Option<&Message>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let row: Option<(String, String, String)> = tx
            .query_row(
                "SELECT conversation_id, op, created_at FROM outbox WHERE seq = ?1",
                [seq],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((id, op, at)) = row else {
            // Already acknowledged (a replay after a crash): nothing to do.
            return Ok(());
        };
        tx.execute("DELETE FROM outbox WHERE seq = ?1", [seq])?;
        if matches!(serde_json::from_str::<Op>(&op), Ok(Op::Delete)) {
            // The server holds the tombstone now: it must not show again
            // before the feed says so (and Undo must see it deleted).
            tx.execute(
                "UPDATE conversations SET server_deleted_at = ?2 WHERE id = ?1 AND version > 0",
                [&id, &at],
            )?;
        }
        if let Some(message) = stored {
            tx.execute(
                "INSERT INTO messages (conversation_id, id, role, content, timestamp, pending, reply)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)
                 ON CONFLICT (conversation_id, id) DO UPDATE SET
                    role = excluded.role, content = excluded.content,
                    timestamp = excluded.timestamp, pending = 0, reply = excluded.reply",
                params![
                    id,
                    message.id,
                    role_name(message.role),
                    message.content,
                    ts(&message.timestamp),
                    reply_json(message)
                ],
            )?;
        }
        if let Some(server) = server {
            store_server(&tx, server)?;
            if stored.is_some() && !needs_messages(&tx, &id)? {
                // The append was the only change: the cache holds every message.
                tx.execute(
                    "UPDATE conversations SET messages_version = version WHERE id = ?1",
                    [&id],
                )?;
            }
        }
        overlay(&tx, &id)?;
        tx.commit()?;
        Ok(())
    }

    /// The server refused entry `seq` for good (a 4xx): it stays, marked, for
    /// the user to retry or discard.
    pub fn reject(&self, seq: i64, reason: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE outbox SET failed = ?2 WHERE seq = ?1",
            params![seq, reason],
        )?;
        Ok(())
    }

    /// Sends every refused entry again (the status bar's Retry).
    pub fn retry_all(&self) -> Result<()> {
        self.conn().execute(
            "UPDATE outbox SET failed = NULL WHERE failed IS NOT NULL",
            [],
        )?;
        Ok(())
    }

    /// Sends a refused entry again.
    pub fn retry(&self, seq: i64) -> Result<()> {
        self.conn()
            .execute("UPDATE outbox SET failed = NULL WHERE seq = ?1", [seq])?;
        Ok(())
    }

    /// Drops an entry (refused, or moot): what is shown falls back to the
    /// server's state, with the other pending entries on top.
    pub fn discard(&self, seq: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let row: Option<(String, String)> = tx
            .query_row(
                "SELECT conversation_id, op FROM outbox WHERE seq = ?1",
                [seq],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((id, op)) = row else {
            return Ok(());
        };
        tx.execute("DELETE FROM outbox WHERE seq = ?1", [seq])?;
        if let Ok(Op::Append { message }) = serde_json::from_str::<Op>(&op) {
            tx.execute(
                "DELETE FROM messages WHERE conversation_id = ?1 AND id = ?2 AND pending = 1",
                [&id, &message.id],
            )?;
        }
        overlay(&tx, &id)?;
        tx.commit()?;
        Ok(())
    }

    /// Applies a page of the change feed: which conversations it changed in
    /// the cache, and which of those lack messages the server has.
    pub fn apply_changes(&self, changes: &[Change]) -> Result<Applied> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut touched = Vec::new();
        let mut seen = HashSet::new();
        for change in changes {
            let stored = match change {
                Change::Updated(c) => store_server(&tx, &c.conversation)?,
                Change::Deleted(d) => store_deletion(&tx, d)?,
            };
            if stored && seen.insert(change.id().to_owned()) {
                touched.push(change.id().to_owned());
            }
        }
        let mut stale = Vec::new();
        for id in &touched {
            overlay(&tx, id)?;
            if needs_messages(&tx, id)? {
                stale.push(id.clone());
            } else {
                tx.execute(
                    "UPDATE conversations SET messages_version = version WHERE id = ?1",
                    [id],
                )?;
            }
        }
        tx.commit()?;
        Ok(Applied { touched, stale })
    }

    /// The newest message the server confirmed before `id`: a delta of the
    /// messages from `id` on is asked for after it.
    pub fn last_message_before(&self, conversation: &str, id: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row(
                "SELECT MAX(id) FROM messages WHERE conversation_id = ?1 AND pending = 0 AND id < ?2",
                [conversation, id],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Stores one page of a conversation's messages from the server, fetched
    /// after `after` (from the start when `None`): the page is the truth for
    /// the ids it spans, so confirmed messages in that span that it lacks are
    /// gone; with `to_end` (the last page) the span runs to the end. Returns
    /// whether the cache changed. Once the cache holds as many messages as
    /// the server counts, the conversation is no longer stale.
    pub fn apply_messages(
        &self,
        conversation: &str,
        after: Option<&str>,
        page: &[Message],
        to_end: bool,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let known: Option<i64> = tx
            .query_row(
                "SELECT version FROM conversations WHERE id = ?1",
                [conversation],
                |r| r.get(0),
            )
            .optional()?;
        if known.is_none_or(|v| v == 0) {
            // Not (or no longer) known from the server: the feed decides.
            return Ok(false);
        }
        let lo = after.unwrap_or("");
        let hi = match (to_end, page.last()) {
            (false, Some(last)) => last.id.as_str(),
            _ => "~",
        };
        let ids: HashSet<&str> = page.iter().map(|m| m.id.as_str()).collect();
        let held: Vec<String> = tx
            .prepare_cached(
                "SELECT id FROM messages WHERE conversation_id = ?1 AND pending = 0
                    AND id > ?2 AND id <= ?3",
            )?
            .query_map(params![conversation, lo, hi], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut changed = 0;
        for gone in held.iter().filter(|id| !ids.contains(id.as_str())) {
            changed += tx.execute(
                "DELETE FROM messages WHERE conversation_id = ?1 AND id = ?2",
                [conversation, gone],
            )?;
        }
        {
            let mut upsert = tx.prepare_cached(UPSERT_MESSAGE)?;
            for m in page {
                changed += upsert.execute(params![
                    conversation,
                    m.id,
                    role_name(m.role),
                    m.content,
                    ts(&m.timestamp),
                    reply_json(m)
                ])?;
            }
        }
        if !needs_messages(&tx, conversation)? {
            tx.execute(
                "UPDATE conversations SET messages_version = version WHERE id = ?1",
                [conversation],
            )?;
        }
        if changed > 0 {
            overlay(&tx, conversation)?;
        }
        tx.commit()?;
        Ok(changed > 0)
    }

    /// Stores a whole conversation from the server: its state and its
    /// messages (pending ones stay until acknowledged).
    pub fn apply_detail(&self, detail: &ConversationDetail) -> Result<()> {
        let c = &detail.conversation;
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let messages_version: Option<i64> = tx
            .query_row(
                "SELECT messages_version FROM conversations WHERE id = ?1",
                [&c.id],
                |r| r.get(0),
            )
            .optional()?;
        let known: Option<i64> = tx
            .query_row(
                "SELECT version FROM conversations WHERE id = ?1",
                [&c.id],
                |r| r.get(0),
            )
            .optional()?;
        if messages_version.is_some_and(|v| v > c.version as i64)
            || known.is_some_and(|v| v > c.version as i64)
        {
            // An answer older than what the cache holds.
            return Ok(());
        }
        store_server(&tx, c)?;
        let ids: HashSet<&str> = detail.messages.iter().map(|m| m.id.as_str()).collect();
        let held: Vec<String> = tx
            .prepare_cached("SELECT id FROM messages WHERE conversation_id = ?1 AND pending = 0")?
            .query_map([&c.id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for gone in held.iter().filter(|id| !ids.contains(id.as_str())) {
            tx.execute(
                "DELETE FROM messages WHERE conversation_id = ?1 AND id = ?2",
                [&c.id, gone],
            )?;
        }
        {
            let mut upsert = tx.prepare_cached(UPSERT_MESSAGE)?;
            for m in &detail.messages {
                upsert.execute(params![
                    c.id,
                    m.id,
                    role_name(m.role),
                    m.content,
                    ts(&m.timestamp),
                    reply_json(m)
                ])?;
            }
        }
        tx.execute(
            "UPDATE conversations SET messages_version = ?2 WHERE id = ?1",
            params![c.id, c.version as i64],
        )?;
        overlay(&tx, &c.id)?;
        tx.commit()?;
        Ok(())
    }

    /// The server does not know `id` (404): unless a create for it is still
    /// pending, it goes from the cache.
    pub fn forget_unknown(&self, id: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE conversations SET version = 0, server_title = NULL, server_deleted_at = NULL
             WHERE id = ?1",
            [id],
        )?;
        tx.execute(
            "DELETE FROM messages WHERE conversation_id = ?1 AND pending = 0",
            [id],
        )?;
        overlay(&tx, id)?;
        tx.commit()?;
        Ok(())
    }

    /// After a full listing (the change history was too old): conversations
    /// the server no longer lists are dropped, unless they have pending
    /// writes. Returns how many were dropped.
    pub fn keep_only(&self, listed: &HashSet<String>) -> Result<usize> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let known: Vec<String> = tx
            .prepare_cached(
                "SELECT id FROM conversations c WHERE version > 0
                 AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.conversation_id = c.id)",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut dropped = 0;
        for id in known.iter().filter(|id| !listed.contains(*id)) {
            tx.execute("UPDATE conversations SET version = 0 WHERE id = ?1", [id])?;
            tx.execute(
                "DELETE FROM messages WHERE conversation_id = ?1 AND pending = 0",
                [id],
            )?;
            overlay(&tx, id)?;
            dropped += 1;
        }
        tx.commit()?;
        Ok(dropped)
    }

    /// Whether the cache lacks messages the server has for `id`.
    pub fn lacks_messages(&self, id: &str) -> Result<bool> {
        needs_messages(&self.conn(), id)
    }

    /// Ids of conversations whose messages the cache lacks (to fetch after a
    /// crash interrupted an earlier fetch).
    pub fn stale_conversations(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let ids: Vec<String> = conn
            .prepare_cached(
                "SELECT id FROM conversations WHERE version > 0 AND messages_version < version",
            )?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let mut stale = Vec::new();
        for id in ids {
            if needs_messages(&conn, &id)? {
                stale.push(id);
            }
        }
        Ok(stale)
    }
}
