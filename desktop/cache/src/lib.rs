//! The desktop's local cache of one user's conversations.
//!
//! One SQLite file per signed-in user. The UI reads only from here, so
//! everything shows at once and offline. Every local write stores the change
//! and its outbox entry in one transaction ([`local`]); the sync engine sends
//! the outbox in order and feeds what the server says back in ([`remote`]).
//!
//! Each conversation row keeps the server's last known state next to the
//! state shown, which is always "server state + pending operations"
//! ([`overlay`]): a server change never hides a local write that has not
//! synced yet, and discarding a refused write needs no network.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use confab_wire::conversations::Message;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

pub mod export;
pub mod local;
mod overlay;
pub mod read;
pub mod remote;
pub mod schema;

/// Limits shared with the proxy: a write the server would refuse is refused
/// here, before it is queued.
pub use confab_wire::limits::{DEFAULT_TITLE, MAX_MESSAGE_BYTES, MAX_TITLE_CHARS};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("no conversation {0} here")]
    NotFound(String),
    #[error(
        "this cache was written by a newer Confab (schema {found}, this one knows {supported})"
    )]
    TooNew { found: u32, supported: u32 },
    #[error("the local cache failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the local cache holds unreadable data: {0}")]
    Corrupt(String),
}

impl CacheError {
    pub(crate) fn invalid(field: &'static str, reason: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field,
            reason: reason.to_string(),
        }
    }
}

impl From<&CacheError> for confab_wire::ErrorBody {
    fn from(err: &CacheError) -> Self {
        use confab_wire::ErrorCode;
        let code = match err {
            CacheError::Invalid { .. } => ErrorCode::InvalidInput,
            CacheError::NotFound(_) => ErrorCode::NotFound,
            CacheError::TooNew { .. } | CacheError::Sqlite(_) | CacheError::Corrupt(_) => {
                ErrorCode::Internal
            }
        };
        confab_wire::ErrorBody::new(code, err.to_string())
    }
}

/// Owned, so that callers answering with an `ErrorBody` can use `?`.
impl From<CacheError> for confab_wire::ErrorBody {
    fn from(err: CacheError) -> Self {
        Self::from(&err)
    }
}

pub type Result<T, E = CacheError> = std::result::Result<T, E>;

/// A write waiting in the outbox. The conversation it concerns is its own
/// column; the time it was made is the entry's `created_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Op {
    Create {
        title: String,
    },
    Update {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        title: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pinned: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        archived: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        assistant: Option<confab_wire::conversations::AssistantSettings>,
    },
    Delete,
    Restore,
    Append {
        message: Message,
    },
    /// Ask the assistant to answer the user message `after` (sent once that
    /// message is on the server; the server makes it exactly once per
    /// `after`). `regenerate` replaces an answer that ended.
    Ask {
        after: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        regenerate: bool,
    },
}

impl Op {
    /// How an `Ask` entry's JSON starts: a refused ask never holds up the
    /// entries after it (they do not depend on it).
    pub const ASK_PREFIX: &'static str = r#"{"op":"ask""#;
}

/// An outbox entry as the sync engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub seq: i64,
    pub conversation_id: String,
    pub op: Op,
    pub created_at: DateTime<Utc>,
    pub attempts: u32,
    /// Why the server refused it; refused entries wait for retry or discard.
    pub failed: Option<String>,
    /// The server version of the conversation the entry applies to (0 when
    /// the server has not seen it yet): what an update sends for concurrency.
    pub server_version: u64,
}

/// The cache of one user. Calls are short and synchronous; async callers run
/// them on a blocking thread.
pub struct Cache {
    conn: Mutex<Connection>,
}

impl Cache {
    /// Opens (creating if needed) and migrates the cache at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                CacheError::Corrupt(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        Self::with_connection(Connection::open(path)?)
    }

    /// A cache that lives in memory only (tests, benchmarks).
    pub fn in_memory() -> Result<Self> {
        Self::with_connection(Connection::open_in_memory()?)
    }

    fn with_connection(mut conn: Connection) -> Result<Self> {
        // WAL: readers never wait for the sync engine's writes. NORMAL is
        // durable across app crashes (not power loss mid-checkpoint), which is
        // the trade every desktop app with SQLite makes.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        schema::migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (its
        // transactions roll back), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A value of the sync engine's own (cursor, last sync time).
    pub fn sync_value(&self, key: &str) -> Result<Option<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT value FROM sync_state WHERE key = ?1")?;
        let mut rows = stmt.query([key])?;
        Ok(match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    }

    pub fn set_sync_value(&self, key: &str, value: &str) -> Result<()> {
        self.conn().execute(
            "INSERT INTO sync_state (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }
}

/// Timestamps are stored as RFC 3339 in UTC with milliseconds, as the proxy
/// sends them, so text order is time order.
pub(crate) fn ts(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn parse_ts(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| CacheError::Corrupt(format!("timestamp {text:?}: {e}")))
}

/// Now, to the millisecond (what the server keeps).
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}
