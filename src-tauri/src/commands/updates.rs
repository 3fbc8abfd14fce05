//! Self-update commands: read, check, install (on the user's request only),
//! dismiss. The state follows as `update-changed` events.

use std::time::Duration;

use confab_updates::{Trigger, UpdateError};
use confab_wire::updates::UpdateState;
use confab_wire::{ErrorBody, ErrorCode};
use tauri::{AppHandle, Runtime, State};

use crate::updates::SharedUpdates;

type Reply<T> = Result<T, ErrorBody>;

#[tauri::command]
pub fn update_state(updates: State<'_, SharedUpdates>) -> Reply<UpdateState> {
    Ok(updates.state())
}

#[tauri::command]
pub async fn check_for_updates(updates: State<'_, SharedUpdates>) -> Reply<UpdateState> {
    Ok(updates.check(Trigger::User).await)
}

#[tauri::command]
pub async fn install_update<R: Runtime>(
    app: AppHandle<R>,
    updates: State<'_, SharedUpdates>,
) -> Reply<()> {
    updates.install().await.map_err(|err| {
        let code = match err {
            UpdateError::NothingToInstall => ErrorCode::NotFound,
            UpdateError::Busy => ErrorCode::Conflict,
            UpdateError::Disabled(_) => ErrorCode::Unavailable,
        };
        ErrorBody::new(code, err.to_string())
    })?;
    if matches!(updates.state(), UpdateState::Restarting { .. }) {
        // Give the window a moment to show "Restarting…".
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.restart();
    }
    Ok(())
}

#[tauri::command]
pub fn dismiss_update(updates: State<'_, SharedUpdates>) -> Reply<UpdateState> {
    Ok(updates.dismiss())
}
