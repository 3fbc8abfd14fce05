//! The cache's schema and its migrations. `PRAGMA user_version` records the
//! version; each migration runs in the transaction that bumps it, so a crash
//! leaves the old schema or the new one. A migration is never edited once
//! released: add the next one (and a fixture of the old schema to
//! `tests/fixtures/`, which the upgrade test opens).

use rusqlite::Connection;

use crate::CacheError;

/// Every migration, in order; `MIGRATIONS[n]` brings version `n` to `n + 1`.
pub const MIGRATIONS: &[&str] = &[V1, V2];

pub const CURRENT: u32 = MIGRATIONS.len() as u32;

const V1: &str = r#"
-- Each conversation keeps the server's last known state (server_*) and the
-- state shown, which is the server's with the pending outbox operations
-- applied (see overlay.rs). rn keeps full-text rowids stable.
CREATE TABLE conversations (
    rn INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    -- shown
    title TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    message_count INTEGER NOT NULL,
    last_message_preview TEXT,
    pinned INTEGER NOT NULL,
    archived INTEGER NOT NULL,
    deleted_at TEXT,
    -- the server's (version 0: never seen there)
    version INTEGER NOT NULL DEFAULT 0,
    server_title TEXT,
    server_created_at TEXT,
    server_updated_at TEXT,
    server_message_count INTEGER NOT NULL DEFAULT 0,
    server_preview TEXT,
    server_pinned INTEGER NOT NULL DEFAULT 0,
    server_archived INTEGER NOT NULL DEFAULT 0,
    server_deleted_at TEXT,
    -- the server version whose messages this cache holds
    messages_version INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX conversations_by_recency
    ON conversations (archived, pinned DESC, updated_ms DESC)
    WHERE deleted_at IS NULL;

CREATE TABLE messages (
    rn INTEGER PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    -- written here, not yet acknowledged by the server
    pending INTEGER NOT NULL DEFAULT 0,
    UNIQUE (conversation_id, id)
);

CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT NOT NULL,
    op TEXT NOT NULL,
    created_at TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    failed TEXT
);
CREATE INDEX outbox_by_conversation ON outbox (conversation_id, seq);

CREATE TABLE sync_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE VIRTUAL TABLE messages_fts USING fts5(
    content, content = 'messages', content_rowid = 'rn',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts (rowid, content) VALUES (new.rn, new.content);
END;
CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.rn, old.content);
END;
CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts (messages_fts, rowid, content) VALUES ('delete', old.rn, old.content);
    INSERT INTO messages_fts (rowid, content) VALUES (new.rn, new.content);
END;

CREATE VIRTUAL TABLE titles_fts USING fts5(
    title, content = 'conversations', content_rowid = 'rn',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TRIGGER titles_ai AFTER INSERT ON conversations BEGIN
    INSERT INTO titles_fts (rowid, title) VALUES (new.rn, new.title);
END;
CREATE TRIGGER titles_ad AFTER DELETE ON conversations BEGIN
    INSERT INTO titles_fts (titles_fts, rowid, title) VALUES ('delete', old.rn, old.title);
END;
CREATE TRIGGER titles_au AFTER UPDATE OF title ON conversations BEGIN
    INSERT INTO titles_fts (titles_fts, rowid, title) VALUES ('delete', old.rn, old.title);
    INSERT INTO titles_fts (rowid, title) VALUES (new.rn, new.title);
END;
"#;

/// Assistant replies: a generated message's status, model and usage, as the
/// server sends them (JSON of `confab_wire::assistant::Reply`); a
/// conversation's assistant settings, shown and the server's (JSON of
/// `AssistantSettings`, NULL for the defaults).
const V2: &str = r#"
ALTER TABLE messages ADD COLUMN reply TEXT;
ALTER TABLE conversations ADD COLUMN assistant TEXT;
ALTER TABLE conversations ADD COLUMN server_assistant TEXT;
"#;

/// Brings the database to [`CURRENT`]. A database from a newer app is refused
/// rather than misread.
pub fn migrate(conn: &mut Connection) -> Result<(), CacheError> {
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > CURRENT {
        return Err(CacheError::TooNew {
            found: version,
            supported: CURRENT,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as u32 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
