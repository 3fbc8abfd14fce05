//! The file's schema and the steps that upgrade an older file to it.

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS profiles (
    user_id TEXT PRIMARY KEY,
    email TEXT, first_name TEXT, last_name TEXT, image_url TEXT,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS conversations (
    user_id TEXT NOT NULL,
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL,
    message_count INTEGER NOT NULL,
    last_message_preview TEXT,
    pinned INTEGER NOT NULL,
    archived INTEGER NOT NULL,
    deleted_at INTEGER,
    -- bytes of message content, for the per-conversation cap
    content_bytes INTEGER NOT NULL DEFAULT 0,
    -- the assistant's settings here (JSON), NULL for the defaults
    assistant TEXT,
    PRIMARY KEY (user_id, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS conversations_recent
    ON conversations (user_id, updated_at DESC, id DESC);
CREATE TABLE IF NOT EXISTS messages (
    user_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    id TEXT NOT NULL,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    -- an assistant reply's status, model and usage (JSON), else NULL
    reply TEXT,
    PRIMARY KEY (user_id, conversation_id, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS erased_users (
    user_id TEXT PRIMARY KEY,
    at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage (
    user_id TEXT NOT NULL,
    day TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    PRIMARY KEY (user_id, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sequences (
    user_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changes (
    user_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    conversation_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    device TEXT,
    -- MessageMark: NULL untouched, '*' all, else the oldest message id written
    messages TEXT,
    PRIMARY KEY (user_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS changes_at ON changes (at);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id TEXT PRIMARY KEY,
    at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS conversations_deleted ON conversations (deleted_at)
    WHERE deleted_at IS NOT NULL;
"#;

/// The schema version this build writes (`PRAGMA user_version`). A later
/// version adds a migration step to [`MIGRATIONS`]; a file from a newer build
/// is refused.
pub(super) const SCHEMA_VERSION: i64 = 3;

/// `MIGRATIONS[n]` brings a file of version `n + 1` to `n + 2`. Released steps
/// are never edited.
pub(super) const MIGRATIONS: &[&str] = &[
    // 2: change entries record the device and the messages a write touched;
    // conversations count their content bytes (for the caps).
    "ALTER TABLE changes ADD COLUMN device TEXT;
     ALTER TABLE changes ADD COLUMN messages TEXT;
     ALTER TABLE conversations ADD COLUMN content_bytes INTEGER NOT NULL DEFAULT 0;
     UPDATE conversations SET content_bytes = (
        SELECT COALESCE(SUM(LENGTH(CAST(m.content AS BLOB))), 0) FROM messages m
        WHERE m.user_id = conversations.user_id AND m.conversation_id = conversations.id);",
    // 3: assistant replies and per-conversation assistant settings (the
    // usage table is new: SCHEMA creates it).
    "ALTER TABLE messages ADD COLUMN reply TEXT;
     ALTER TABLE conversations ADD COLUMN assistant TEXT;",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_applies_twice_and_every_version_has_a_step() {
        let conn = rusqlite::Connection::open_in_memory().unwrap_or_else(|e| panic!("{e}"));
        conn.execute_batch(SCHEMA).unwrap_or_else(|e| panic!("{e}"));
        conn.execute_batch(SCHEMA)
            .unwrap_or_else(|e| panic!("not idempotent: {e}"));
        assert_eq!(MIGRATIONS.len() as i64, SCHEMA_VERSION - 1);
    }
}
