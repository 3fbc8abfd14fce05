//! What the UI reads: the list, one conversation, search, and the counts the
//! status indicator shows.

use std::collections::HashMap;

use confab_wire::conversations::{Conversation, Message};
use confab_wire::library::{
    ConversationView, ListFilter, ListItem, MessageView, MessagesWindow, SearchHit,
};
use rusqlite::{Connection, OptionalExtension, Row};

use crate::local::parse_role;
use crate::{Cache, Result, parse_ts};

/// The shown columns, and for a conversation still titled by default its
/// first message (what the UI shows as its title until it has one).
const SHOWN: &str = "id, title, created_at, updated_at, version, message_count,
    last_message_preview, pinned, archived, assistant,
    CASE WHEN title = 'New conversation' THEN
        (SELECT content FROM messages m WHERE m.conversation_id = conversations.id
         ORDER BY m.id LIMIT 1) END";

/// A row as read: the conversation, its two timestamps as text, the first
/// message of an untitled one.
type ShownRow = (Conversation, String, String, Option<String>);

fn conversation(row: &Row<'_>) -> rusqlite::Result<ShownRow> {
    Ok((
        Conversation {
            id: row.get(0)?,
            title: row.get(1)?,
            // Filled below from the text columns (parse errors are ours to report).
            created_at: chrono::DateTime::UNIX_EPOCH,
            updated_at: chrono::DateTime::UNIX_EPOCH,
            version: row.get::<_, i64>(4)?.max(0) as u64,
            message_count: row.get::<_, i64>(5)?.max(0) as u64,
            last_message_preview: row.get(6)?,
            pinned: row.get(7)?,
            archived: row.get(8)?,
            // Malformed settings (never written so) read as the defaults.
            assistant: row
                .get::<_, Option<String>>(9)?
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default(),
        },
        row.get(2)?,
        row.get(3)?,
        row.get(10)?,
    ))
}

fn finish((mut c, created, updated, opening): ShownRow) -> Result<(Conversation, Option<String>)> {
    c.created_at = parse_ts(&created)?;
    c.updated_at = parse_ts(&updated)?;
    Ok((c, opening.map(|text| untitled(&text))))
}

/// The first message as a stand-in title: one line, at most 60 characters.
fn untitled(text: &str) -> String {
    let line = confab_wire::conversations::preview(text);
    match line.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", line[..cut].trim_end()),
        None => line,
    }
}

/// Pending and refused outbox entries per conversation.
fn outbox_state(conn: &Connection) -> Result<HashMap<String, (u32, Option<String>)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT conversation_id, COUNT(*) FILTER (WHERE failed IS NULL), MAX(failed)
         FROM outbox GROUP BY conversation_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, (r.get::<_, u32>(1)?, r.get(2)?)))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

impl Cache {
    /// Conversations, pinned first, then most recently changed; `offset` and
    /// `limit` page through them.
    pub fn list(&self, filter: ListFilter, offset: u32, limit: u32) -> Result<Vec<ListItem>> {
        let conn = self.conn();
        let outbox = outbox_state(&conn)?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SHOWN} FROM conversations
             WHERE (deleted_at IS NULL OR id IN (SELECT conversation_id FROM outbox WHERE failed IS NOT NULL))
                AND archived = ?1
             ORDER BY pinned DESC, updated_ms DESC, id DESC
             LIMIT ?2 OFFSET ?3"
        ))?;
        let archived = matches!(filter, ListFilter::Archived);
        let rows = stmt
            .query_map(rusqlite::params![archived, limit, offset], conversation)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        list_items(rows, &outbox)
    }

    /// The rows of `ids` that `list` would show under `filter`, in its
    /// order (ids it would not show are left out).
    pub fn list_items(&self, filter: ListFilter, ids: &[String]) -> Result<Vec<ListItem>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let conn = self.conn();
        let outbox = outbox_state(&conn)?;
        let marks = vec!["?"; ids.len()].join(", ");
        let mut stmt = conn.prepare(&format!(
            "SELECT {SHOWN} FROM conversations
             WHERE (deleted_at IS NULL OR id IN (SELECT conversation_id FROM outbox WHERE failed IS NOT NULL))
                AND archived = ? AND id IN ({marks})
             ORDER BY pinned DESC, updated_ms DESC, id DESC"
        ))?;
        let archived = matches!(filter, ListFilter::Archived);
        let mut params: Vec<&dyn rusqlite::ToSql> = vec![&archived];
        params.extend(ids.iter().map(|id| id as &dyn rusqlite::ToSql));
        let rows = stmt
            .query_map(params.as_slice(), conversation)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        list_items(rows, &outbox)
    }

    /// How many conversations `list` can show.
    pub fn count(&self, filter: ListFilter) -> Result<u64> {
        let archived = matches!(filter, ListFilter::Archived);
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FROM conversations WHERE deleted_at IS NULL AND archived = ?1",
            [archived],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// One list row, deleted or not.
    pub fn item(&self, id: &str) -> Result<Option<ListItem>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                &format!("SELECT {SHOWN} FROM conversations WHERE id = ?1"),
                [id],
                conversation,
            )
            .optional()?;
        let Some(row) = row else { return Ok(None) };
        let (pending, failed) = conn.query_row(
            "SELECT COUNT(*) FILTER (WHERE failed IS NULL), MAX(failed)
                 FROM outbox WHERE conversation_id = ?1",
            [id],
            |r| Ok((r.get::<_, u32>(0)?, r.get(1)?)),
        )?;
        let (conversation, opening) = finish(row)?;
        Ok(Some(ListItem {
            conversation,
            pending,
            failed,
            opening,
        }))
    }

    /// One conversation with all its messages, oldest first.
    pub fn get(&self, id: &str) -> Result<Option<ConversationView>> {
        self.get_window(id, None)
    }

    /// One conversation with its newest `limit` messages, oldest first (all
    /// of them without a limit), and how many come before those.
    pub fn get_window(&self, id: &str, limit: Option<usize>) -> Result<Option<ConversationView>> {
        let Some(item) = self.item(id)? else {
            return Ok(None);
        };
        let conn = self.conn();
        let (deleted, total): (bool, u64) = conn.query_row(
            "SELECT deleted_at IS NOT NULL,
                (SELECT COUNT(*) FROM messages WHERE conversation_id = ?1)
             FROM conversations WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let messages = match limit {
            None => message_rows(
                &conn,
                "SELECT id, role, content, timestamp, pending, reply FROM messages
                 WHERE conversation_id = ?1 ORDER BY id",
                rusqlite::params![id],
            )?,
            Some(limit) => {
                let mut newest = message_rows(
                    &conn,
                    "SELECT id, role, content, timestamp, pending, reply FROM messages
                     WHERE conversation_id = ?1 ORDER BY id DESC LIMIT ?2",
                    rusqlite::params![id, limit as i64],
                )?;
                newest.reverse();
                newest
            }
        };
        let mut messages = messages;
        mark_asking(&conn, id, &mut messages)?;
        Ok(Some(ConversationView {
            opening: item.opening,
            conversation: item.conversation,
            earlier: total.saturating_sub(messages.len() as u64),
            messages,
            pending: item.pending,
            failed: item.failed,
            deleted,
        }))
    }

    /// At most `limit` messages of a conversation, oldest first: those after
    /// `after` (from the first without it), or with `before`, the newest
    /// before it. `more`: others lie beyond, in that direction.
    pub fn messages_window(
        &self,
        id: &str,
        after: Option<&str>,
        before: Option<&str>,
        limit: usize,
    ) -> Result<MessagesWindow> {
        let conn = self.conn();
        let fetch = (limit + 1) as i64;
        let mut messages = match before {
            Some(before) => {
                let mut rows = message_rows(
                    &conn,
                    "SELECT id, role, content, timestamp, pending, reply FROM messages
                     WHERE conversation_id = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
                    rusqlite::params![id, before, fetch],
                )?;
                let more = rows.len() > limit;
                rows.truncate(limit);
                rows.reverse();
                mark_asking(&conn, id, &mut rows)?;
                return Ok(MessagesWindow {
                    messages: rows,
                    more,
                });
            }
            None => message_rows(
                &conn,
                "SELECT id, role, content, timestamp, pending, reply FROM messages
                 WHERE conversation_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
                rusqlite::params![id, after.unwrap_or(""), fetch],
            )?,
        };
        let more = messages.len() > limit;
        messages.truncate(limit);
        mark_asking(&conn, id, &mut messages)?;
        Ok(MessagesWindow { messages, more })
    }

    /// Full-text search over titles and messages of conversations not deleted,
    /// best matches first. Every word must match (as a prefix); FTS syntax in
    /// the query is taken literally.
    pub fn search(&self, query: &str, limit: u32) -> Result<Vec<SearchHit>> {
        let Some(fts) = fts_query(query) else {
            return Ok(Vec::new());
        };
        let conn = self.conn();
        let mut hits = Vec::new();
        let mut stmt = conn.prepare_cached(
            "SELECT c.id, c.title, snippet(titles_fts, 0, char(1), char(2), '…', 12)
             FROM titles_fts JOIN conversations c ON c.rn = titles_fts.rowid
             WHERE titles_fts MATCH ?1 AND c.deleted_at IS NULL
             ORDER BY rank LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![fts, limit], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        for row in rows {
            let (conversation_id, title, marked) = row?;
            let (snippet, highlights) = unmark(&marked);
            hits.push(SearchHit {
                conversation_id,
                title,
                message_id: None,
                snippet,
                highlights,
            });
        }
        let mut stmt = conn.prepare_cached(
            "SELECT m.conversation_id, c.title, m.id,
                    snippet(messages_fts, 0, char(1), char(2), '…', 16)
             FROM messages_fts
             JOIN messages m ON m.rn = messages_fts.rowid
             JOIN conversations c ON c.id = m.conversation_id
             WHERE messages_fts MATCH ?1 AND c.deleted_at IS NULL
             ORDER BY rank LIMIT ?2",
        )?;
        let rows = stmt.query_map(rusqlite::params![fts, limit], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        for row in rows {
            let (conversation_id, title, message_id, marked) = row?;
            let (snippet, highlights) = unmark(&marked);
            hits.push(SearchHit {
                conversation_id,
                title,
                message_id: Some(message_id),
                snippet,
                highlights,
            });
        }
        hits.truncate(limit as usize);
        Ok(hits)
    }

    /// Writes waiting to be sent, and writes the server refused.
    pub fn outbox_counts(&self) -> Result<(u64, u64)> {
        Ok(self.conn().query_row(
            "SELECT COUNT(*) FILTER (WHERE failed IS NULL), COUNT(*) FILTER (WHERE failed IS NOT NULL)
             FROM outbox",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
        )?)
    }
}

/// Each word of the query, quoted (so `"`, `*`, `NEAR`, `-` and column
/// filters are text, not syntax) and matched as a prefix; at most 16 words.
pub(crate) fn fts_query(query: &str) -> Option<String> {
    let words: Vec<String> = query
        .split_whitespace()
        .filter_map(|w| {
            let clean: String = w.chars().filter(|c| !c.is_control()).collect();
            let clean = clean.replace('"', "\"\"");
            (!clean.is_empty()).then(|| format!("\"{clean}\"*"))
        })
        .take(16)
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// Turns FTS markers (`\x01` … `\x02`) into plain text and character ranges.
fn unmark(marked: &str) -> (String, Vec<(u32, u32)>) {
    let mut text = String::with_capacity(marked.len());
    let mut highlights = Vec::new();
    let mut start = None;
    let mut chars = 0u32;
    for c in marked.chars() {
        match c {
            '\u{1}' => start = Some(chars),
            '\u{2}' => {
                if let Some(s) = start.take() {
                    highlights.push((s, chars));
                }
            }
            c => {
                text.push(c);
                chars += 1;
            }
        }
    }
    (text, highlights)
}

/// List rows with their outbox state.
fn list_items(
    rows: Vec<ShownRow>,
    outbox: &HashMap<String, (u32, Option<String>)>,
) -> Result<Vec<ListItem>> {
    rows.into_iter()
        .map(|row| {
            let (conversation, opening) = finish(row)?;
            let (pending, failed) = outbox.get(&conversation.id).cloned().unwrap_or_default();
            Ok(ListItem {
                conversation,
                pending,
                failed,
                opening,
            })
        })
        .collect()
}

/// Marks the messages a reply is asked for and not yet requested.
fn mark_asking(conn: &Connection, conversation: &str, messages: &mut [MessageView]) -> Result<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT json_extract(op, '$.after') FROM outbox
         WHERE conversation_id = ?1 AND op LIKE ?2 AND failed IS NULL",
    )?;
    let asked: std::collections::HashSet<String> = stmt
        .query_map(
            rusqlite::params![conversation, format!("{}%", crate::Op::ASK_PREFIX)],
            |r| r.get::<_, Option<String>>(0),
        )?
        .filter_map(|r| r.ok().flatten())
        .collect();
    for m in messages {
        m.asking = asked.contains(&m.message.id);
    }
    Ok(())
}

/// Messages as the UI shows them, from a query whose columns are id, role,
/// content, timestamp, pending, reply.
fn message_rows(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<MessageView>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt
        .query_map(params, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, bool>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(id, role, content, timestamp, pending, reply)| {
            Ok(MessageView {
                message: Message {
                    id,
                    role: parse_role(&role)?,
                    content,
                    timestamp: parse_ts(&timestamp)?,
                    reply: reply
                        .map(|json| serde_json::from_str(&json))
                        .transpose()
                        .map_err(|e| crate::CacheError::Corrupt(format!("a reply: {e}")))?,
                },
                pending,
                asking: false,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_literal_prefix_words() {
        assert_eq!(fts_query("  "), None);
        assert_eq!(
            fts_query("rust async").as_deref(),
            Some("\"rust\"* \"async\"*")
        );
        assert_eq!(
            fts_query("a\"b OR title:x NEAR(").as_deref(),
            Some("\"a\"\"b\"* \"OR\"* \"title:x\"* \"NEAR(\"*")
        );
        assert_eq!(
            fts_query(&"w ".repeat(40)).map(|q| q.matches('*').count()),
            Some(16)
        );
    }

    #[test]
    fn markers_become_ranges() {
        let (text, ranges) = unmark("say \u{1}hello\u{2} to \u{1}é\u{2}");
        assert_eq!(text, "say hello to é");
        assert_eq!(ranges, vec![(4, 9), (13, 14)]);
    }
}
