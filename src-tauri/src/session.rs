//! Wires the [`Session`] into the app: created at setup from the app's config
//! and data folders, fed deep links in order (after it has restored the
//! previous session, so a cold start's callback finds its attempt), and
//! mirrored to the UI as `auth-changed` events.

use confab_session::{AuthConfig, Session, Vault};
use confab_wire::ipc::{AuthChanged, LibraryChangedEvent, ReplyLiveEvent, SyncStatusChanged};
use tauri::{AppHandle, Manager, Runtime, Url};
use tokio::sync::mpsc;

/// Deep links waiting for the session, in arrival order.
#[derive(Clone)]
pub struct Links(mpsc::UnboundedSender<Url>);

impl Links {
    pub fn deliver(&self, url: Url) {
        if self.0.send(url).is_err() {
            log::warn!("a deep link arrived after the session stopped; ignored");
        }
    }
}

/// Opens the system browser (the `open` crate in the app; a recorder in
/// tests).
pub struct Browser(pub std::sync::Arc<OpenUrl>);

impl Browser {
    /// Opens `url`, or says why it could not. Off the async workers and the
    /// main thread: a launcher may take seconds to fail ([`LAUNCHER_WINDOW`]).
    pub async fn open(&self, url: String) -> Result<(), String> {
        let open = self.0.clone();
        tauri::async_runtime::spawn_blocking(move || open(&url))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    }
}

/// How long a browser launcher may take to fail before it counts as having
/// opened the link.
pub const LAUNCHER_WINDOW: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens one URL, or says why it could not.
pub type OpenUrl = dyn Fn(&str) -> Result<(), String> + Send + Sync;

/// Asks the user where to save a file (suggested name in, path out; `None`
/// when cancelled): the system's save dialog in the app, a fixed answer in
/// tests.
pub struct SaveDialog(pub Box<SaveFile>);

/// Suggested file name in, chosen path out.
pub type SaveFile = dyn Fn(
        String,
    )
        -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<std::path::PathBuf>> + Send>>
    + Send
    + Sync;

impl SaveDialog {
    pub fn system<R: Runtime>(app: &AppHandle<R>) -> Self {
        use tauri_plugin_dialog::DialogExt;
        let app = app.clone();
        Self(Box::new(move |name| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            app.dialog()
                .file()
                .set_title("Export conversation")
                .set_file_name(name)
                .save_file(move |path| {
                    let _ = tx.send(path.and_then(|p| p.into_path().ok()));
                });
            Box::pin(async move { rx.await.ok().flatten() })
        }))
    }
}

/// Creates the session, starts it, and returns where deep links go.
pub fn install<R: Runtime>(app: &AppHandle<R>, profile: &crate::profile::Profile) -> Links {
    let paths = app.path();
    let config = match paths.app_config_dir() {
        Ok(dir) => AuthConfig::from_environment(&dir),
        Err(err) => Err(confab_session::ConfigError::File {
            file: "the app's config folder".into(),
            reason: err.to_string(),
        }),
    };
    let config = config.map(|mut config| {
        if let Some(redirect) = profile.redirect_uri() {
            config.redirect_uri = redirect;
        }
        config
    });
    if let Err(err) = &config {
        log::warn!("{err}");
    }
    let data_dir = paths
        .app_data_dir()
        .unwrap_or_else(|_| std::env::temp_dir().join("app.confab.desktop"));
    let vault = Vault::system_named(&profile.identifier(confab_session::vault::SERVICE));
    let session = Session::new(config, vault, &data_dir);
    app.manage(session.clone());
    let library = std::sync::Arc::new(confab_library::Library::new(data_dir.join("cache")));
    app.manage(library.clone());
    crate::events::forward::<R, LibraryChangedEvent>(app, library.subscribe_changes());
    crate::events::forward::<R, ReplyLiveEvent>(app, library.subscribe_replies());
    crate::events::mirror::<R, SyncStatusChanged>(app, library.subscribe_status());
    tauri::async_runtime::spawn(library.follow(session.clone()));

    let (tx, mut rx) = mpsc::unbounded_channel::<Url>();
    crate::events::mirror::<R, AuthChanged>(app, session.subscribe());
    tauri::async_runtime::spawn(async move {
        session.start().await;
        while let Some(url) = rx.recv().await {
            session.handle_link(&url).await;
        }
    });
    Links(tx)
}
