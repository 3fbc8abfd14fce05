//! The signed-in user's conversations in the app: opens that user's cache and
//! sync engine when someone signs in (also offline, from the keyring), closes
//! them on sign-out, and mirrors the engine to the UI as `library-changed` and
//! `sync-status` events.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use confab_cache::Cache;
use confab_session::Session;
use confab_sync::Engine;
use confab_wire::auth::AuthState;
use confab_wire::ipc::{Event, LibraryChangedEvent, ReplyLiveEvent, SyncStatusChanged};
use confab_wire::library::LibraryChanged;
use confab_wire::{ErrorBody, ErrorCode};
use tauri::{AppHandle, Emitter, Runtime};

struct Open {
    user_id: String,
    engine: Arc<Engine>,
    tasks: Vec<tauri::async_runtime::JoinHandle<()>>,
}

impl Drop for Open {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The open library, if someone is signed in.
pub struct Library {
    dir: PathBuf,
    open: Mutex<Option<Open>>,
    ids: Mutex<ulid::Generator>,
}

impl Library {
    /// Caches live in `dir`, one file per user.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            open: Mutex::new(None),
            ids: Mutex::new(ulid::Generator::new()),
        }
    }

    /// The engine (and through it the cache) of the signed-in user.
    pub fn engine(&self) -> Result<Arc<Engine>, ErrorBody> {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|o| o.engine.clone())
            .ok_or_else(|| {
                ErrorBody::new(
                    ErrorCode::Unauthenticated,
                    "Sign in to see your conversations.",
                )
            })
    }

    /// A new id, after every id this process made before: messages written
    /// within one millisecond keep their order.
    pub fn new_id(&self) -> String {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.generate()
            .unwrap_or_else(|_| ulid::Ulid::new())
            .to_string()
    }

    /// Opens `user_id`'s cache with an engine that is not started: the
    /// commands work on it, nothing syncs. For the mock-runtime tests.
    pub fn open_offline(&self, user_id: &str, session: &Session) -> Result<(), ErrorBody> {
        let cache = Cache::open(&self.path_for(user_id)).map_err(|e| ErrorBody::from(&e))?;
        *self.open.lock().unwrap_or_else(|p| p.into_inner()) = Some(Open {
            user_id: user_id.to_owned(),
            engine: Engine::new(Arc::new(cache), session.clone()),
            tasks: Vec::new(),
        });
        Ok(())
    }

    /// Writes not yet on the server (pending and refused).
    pub fn unsynced(&self) -> u64 {
        self.engine()
            .ok()
            .and_then(|e| e.cache().outbox_counts().ok())
            .map(|(pending, failed)| pending + failed)
            .unwrap_or(0)
    }

    fn path_for(&self, user_id: &str) -> PathBuf {
        // User ids are Clerk's `user_…`; anything else is hex-encoded so it
        // can never name a path outside the folder.
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

    fn open_for<R: Runtime>(&self, app: &AppHandle<R>, session: &Session, user_id: &str) {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.as_ref().is_some_and(|o| o.user_id == user_id) {
            return;
        }
        *open = None;
        let cache = match Cache::open(&self.path_for(user_id)) {
            Ok(cache) => Arc::new(cache),
            Err(err) => {
                log::error!("the local cache could not be opened: {err}");
                return;
            }
        };
        let engine = Engine::new(cache, session.clone());
        let mut tasks: Vec<_> = engine
            .spawn()
            .into_iter()
            .map(tauri::async_runtime::JoinHandle::Tokio)
            .collect();
        let mut changes = engine.subscribe_changes();
        let emitter = app.clone();
        tasks.push(tauri::async_runtime::spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(change) => {
                        let _ = emitter.emit(
                            LibraryChangedEvent::NAME,
                            LibraryChanged {
                                conversation_ids: change.conversation_ids,
                            },
                        );
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Missed some: everything may have changed.
                        let _ = emitter.emit(
                            LibraryChangedEvent::NAME,
                            LibraryChanged {
                                conversation_ids: Vec::new(),
                            },
                        );
                    }
                    Err(_) => return,
                }
            }
        }));
        // Replies as they grow, to the windows.
        let mut replies = engine.subscribe_replies();
        let emitter = app.clone();
        tasks.push(tauri::async_runtime::spawn(async move {
            loop {
                match replies.recv().await {
                    Ok(live) => {
                        let _ = emitter.emit(ReplyLiveEvent::NAME, live);
                    }
                    // Missed some text: the next checkpoint or the end
                    // brings the stored text.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                }
            }
        }));
        tasks.push(crate::events::mirror::<R, SyncStatusChanged>(
            app,
            engine.subscribe_status(),
        ));
        log::info!("library opened");
        *open = Some(Open {
            user_id: user_id.to_owned(),
            engine,
            tasks,
        });
        drop(open);
        // The list may have been read before the cache was open.
        let _ = app.emit(
            LibraryChangedEvent::NAME,
            LibraryChanged {
                conversation_ids: Vec::new(),
            },
        );
    }

    fn close(&self) {
        if self
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .is_some()
        {
            log::info!("library closed");
        }
    }

    /// After an explicit sign-out: the user's cache leaves this computer (the
    /// data is on the server). A session that merely ended keeps it, so
    /// writes not synced yet survive signing in again.
    pub fn forget_user(&self, user_id: &str) {
        self.close();
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
}

/// Follows the session: opens the library for whoever is signed in.
pub fn follow<R: Runtime>(app: &AppHandle<R>, session: &Session, library: Arc<Library>) {
    let mut states = session.subscribe();
    let session = session.clone();
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        loop {
            let state = states.borrow_and_update().clone();
            match state {
                AuthState::SignedIn { user, .. } if !user.id.is_empty() => {
                    library.open_for(&app, &session, &user.id)
                }
                AuthState::SignedIn { .. } | AuthState::Completing => {}
                _ => library.close(),
            }
            if states.changed().await.is_err() {
                return;
            }
        }
    });
}
