//! The signed-in user's library on the desktop.
//!
//! A [`Library`] owns at most one open user at a time: that user's cache (one
//! SQLite file per user in the library's folder) and sync engine, with the
//! engine's tasks. It follows the session ([`Library::follow`]): signing in
//! opens the user (also offline, from the keyring), signing out or the
//! session ending closes them, and an explicit sign-out removes their cache
//! ([`Library::forget_user`]). Closing aborts the user's tasks, so nothing of
//! a previous user keeps running.
//!
//! Whoever shows the library (the Tauri shell) subscribes once to the
//! library's own channels; they outlive every user's engine, so a window
//! never has to resubscribe when the user changes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use confab_cache::{Cache, CacheError};
use confab_session::Session;
use confab_sync::Engine;
use confab_wire::auth::AuthState;
use confab_wire::library::{Connection, LibraryChanged, ReplyLive, SyncStatus};
use confab_wire::{ErrorBody, ErrorCode};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Why the library could not answer.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("Sign in to see your conversations.")]
    SignedOut,
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl From<LibraryError> for ErrorBody {
    fn from(err: LibraryError) -> Self {
        match err {
            LibraryError::SignedOut => ErrorBody::new(ErrorCode::Unauthenticated, err.to_string()),
            LibraryError::Cache(err) => err.into(),
        }
    }
}

/// The open user: dropping it stops everything it started.
struct Open {
    user_id: String,
    engine: Arc<Engine>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Open {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// How many changes and reply fragments wait for a slow reader before it
/// is told it lagged.
const EVENT_BACKLOG: usize = 256;

/// The signed-in user's conversations, if someone is signed in.
pub struct Library {
    dir: PathBuf,
    open: Mutex<Option<Open>>,
    ids: Mutex<ulid::Generator>,
    changes: broadcast::Sender<LibraryChanged>,
    replies: broadcast::Sender<ReplyLive>,
    status: watch::Sender<SyncStatus>,
    /// Bumped whenever a user closes, so a carrying task that is being
    /// aborted cannot write its user's status after the close.
    generation: Arc<AtomicU64>,
}

impl Library {
    /// Caches live in `dir`, one file per user.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            open: Mutex::new(None),
            ids: Mutex::new(ulid::Generator::new()),
            changes: broadcast::channel(EVENT_BACKLOG).0,
            replies: broadcast::channel(EVENT_BACKLOG).0,
            status: watch::channel(signed_out()).0,
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Open>> {
        // A panic elsewhere while holding the lock leaves a usable state:
        // the value is replaced whole or not at all.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The engine (and through it the cache) of the signed-in user.
    pub fn engine(&self) -> Result<Arc<Engine>, LibraryError> {
        self.lock()
            .as_ref()
            .map(|o| o.engine.clone())
            .ok_or(LibraryError::SignedOut)
    }

    /// Who is open, if anyone.
    pub fn user_id(&self) -> Option<String> {
        self.lock().as_ref().map(|o| o.user_id.clone())
    }

    /// A new id, after every id this library made before: messages written
    /// within one millisecond keep their order.
    pub fn new_id(&self) -> String {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.generate()
            .unwrap_or_else(|_| ulid::Ulid::new())
            .to_string()
    }

    /// Writes not yet on the server (pending and refused); 0 when nobody is
    /// open.
    pub fn unsynced(&self) -> u64 {
        self.engine()
            .ok()
            .and_then(|e| e.cache().outbox_counts().ok())
            .map(|(pending, failed)| pending + failed)
            .unwrap_or(0)
    }

    /// Conversations whose cached state changed. An empty list means "read
    /// everything again": after a user opens, and after a reader lagged.
    pub fn subscribe_changes(&self) -> Feed<LibraryChanged> {
        Feed {
            events: self.changes.subscribe(),
            after_lag: Some(LibraryChanged {
                conversation_ids: Vec::new(),
            }),
        }
    }

    /// Replies as they grow. A reader that lagged skips what it missed: the
    /// next checkpoint or the end brings the stored text.
    pub fn subscribe_replies(&self) -> Feed<ReplyLive> {
        Feed {
            events: self.replies.subscribe(),
            after_lag: None,
        }
    }

    /// The open user's sync status (signed out while nobody is open).
    pub fn subscribe_status(&self) -> watch::Receiver<SyncStatus> {
        self.status.subscribe()
    }

    /// Opens `user_id` and starts syncing; nothing happens if they are open
    /// already. Any other user is closed first. Call it inside a Tokio
    /// runtime: the engine's tasks are spawned on it.
    pub fn open(&self, user_id: &str, session: &Session) -> Result<(), LibraryError> {
        let mut open = self.lock();
        if open.as_ref().is_some_and(|o| o.user_id == user_id) {
            return Ok(());
        }
        if open.take().is_some() {
            self.generation.fetch_add(1, Ordering::SeqCst);
        }
        let cache = Arc::new(Cache::open(&self.path_for(user_id))?);
        let engine = Engine::new(cache, session.clone());
        let mut tasks = engine.spawn();
        tasks.extend(self.carry(&engine));
        log::info!("library opened");
        *open = Some(Open {
            user_id: user_id.to_owned(),
            engine,
            tasks,
        });
        drop(open);
        // The windows may have read the list before the cache was open.
        let _ = self.changes.send(LibraryChanged {
            conversation_ids: Vec::new(),
        });
        Ok(())
    }

    /// Opens `user_id`'s cache with an engine that is not started: reads and
    /// writes work on it, nothing syncs. For tests of what sits on top.
    pub fn open_offline(&self, user_id: &str, session: &Session) -> Result<(), LibraryError> {
        let cache = Cache::open(&self.path_for(user_id))?;
        *self.lock() = Some(Open {
            user_id: user_id.to_owned(),
            engine: Engine::new(Arc::new(cache), session.clone()),
            tasks: Vec::new(),
        });
        Ok(())
    }

    /// Closes whoever is open: their engine stops, their cache stays.
    pub fn close(&self) {
        if self.lock().take().is_some() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            self.status.send_replace(signed_out());
            log::info!("library closed");
        }
    }

    /// After an explicit sign-out: the user's cache leaves this computer (the
    /// data is on the server). A session that merely ended keeps it, so
    /// writes not synced yet survive signing in again.
    pub fn forget_user(&self, user_id: &str) {
        if self.user_id().as_deref() == Some(user_id) {
            self.close();
        }
        let path = self.path_for(user_id);
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            if let Err(err) = std::fs::remove_file(&file)
                && err.kind() != std::io::ErrorKind::NotFound
            {
                log::warn!("could not remove the cache: {err}");
            }
        }
    }

    /// Follows the session until it is gone: opens the library for whoever
    /// is signed in, closes it otherwise. Spawn it on the app's runtime.
    pub async fn follow(self: Arc<Self>, session: Session) {
        let mut states = session.subscribe();
        loop {
            let state = states.borrow_and_update().clone();
            match state {
                AuthState::SignedIn { user, .. } if !user.id.is_empty() => {
                    if let Err(err) = self.open(&user.id, &session) {
                        log::error!("the local cache could not be opened: {err}");
                    }
                }
                AuthState::SignedIn { .. } | AuthState::Completing => {}
                _ => self.close(),
            }
            if states.changed().await.is_err() {
                return;
            }
        }
    }

    /// Where `user_id`'s cache lives. User ids are Clerk's `user_…`;
    /// anything else is hex-encoded so it can never name a path outside the
    /// folder.
    fn path_for(&self, user_id: &str) -> PathBuf {
        let safe = if !user_id.is_empty()
            && user_id.len() <= 128
            && user_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            user_id.to_owned()
        } else {
            user_id.bytes().map(|b| format!("{b:02x}")).collect()
        };
        self.dir.join(format!("{safe}.db"))
    }

    /// Carries one engine's events into the library's own channels, until
    /// the tasks are aborted with the user.
    fn carry(&self, engine: &Engine) -> Vec<JoinHandle<()>> {
        let mut changes = engine.subscribe_changes();
        let to_changes = self.changes.clone();
        let mut replies = engine.subscribe_replies();
        let to_replies = self.replies.clone();
        let mut status = engine.subscribe_status();
        let to_status = self.status.clone();
        let generation = self.generation.clone();
        let mine = generation.load(Ordering::SeqCst);
        vec![
            tokio::spawn(async move {
                loop {
                    let conversation_ids = match changes.recv().await {
                        Ok(change) => change.conversation_ids,
                        // Missed some: everything may have changed.
                        Err(broadcast::error::RecvError::Lagged(_)) => Vec::new(),
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    let _ = to_changes.send(LibraryChanged { conversation_ids });
                }
            }),
            tokio::spawn(async move {
                loop {
                    match replies.recv().await {
                        Ok(live) => {
                            let _ = to_replies.send(live);
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }),
            tokio::spawn(async move {
                loop {
                    let now = status.borrow_and_update().clone();
                    // Checked under the channel's lock, which `close` also
                    // takes after bumping the generation.
                    to_status.send_if_modified(|shown| {
                        let current = generation.load(Ordering::SeqCst) == mine;
                        if current {
                            *shown = now;
                        }
                        current
                    });
                    if status.changed().await.is_err() {
                        return;
                    }
                }
            }),
        ]
    }
}

fn signed_out() -> SyncStatus {
    SyncStatus {
        connection: Connection::SignedOut,
        pending: 0,
        failed: 0,
        last_synced_at: None,
        last_error: None,
    }
}

/// One reader's view of a library channel.
pub struct Feed<T> {
    events: broadcast::Receiver<T>,
    /// What a reader that lagged receives in place of what it missed.
    after_lag: Option<T>,
}

impl<T: Clone> Feed<T> {
    /// The next event; `None` once the library is gone.
    pub async fn next(&mut self) -> Option<T> {
        loop {
            match self.events.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if let Some(event) = &self.after_lag {
                        return Some(event.clone());
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests;
