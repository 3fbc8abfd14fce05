//! Shell state mirrored to the UI: every value a watch channel takes, and
//! every event of a library feed, is emitted as one typed event.

use confab_wire::ipc::Event;
use tauri::async_runtime::JoinHandle;
use tauri::{AppHandle, Emitter, Runtime};
use tokio::sync::watch;

/// Emits `E` with each new value of `changes` until its sender is gone.
pub fn mirror<R: Runtime, E: Event + 'static>(
    app: &AppHandle<R>,
    mut changes: watch::Receiver<E::Payload>,
) -> JoinHandle<()>
where
    E::Payload: Send + Sync + 'static,
{
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        while changes.changed().await.is_ok() {
            let value = changes.borrow_and_update().clone();
            if let Err(err) = app.emit(E::NAME, value) {
                log::warn!("could not send {} to the UI: {err}", E::NAME);
            }
        }
    })
}

/// Emits `E` for each event of `feed` until the library is gone.
pub fn forward<R: Runtime, E: Event + 'static>(
    app: &AppHandle<R>,
    mut feed: confab_library::Feed<E::Payload>,
) -> JoinHandle<()>
where
    E::Payload: Clone + Send + Sync + 'static,
{
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        while let Some(value) = feed.next().await {
            if let Err(err) = app.emit(E::NAME, value) {
                log::warn!("could not send {} to the UI: {err}", E::NAME);
            }
        }
    })
}
