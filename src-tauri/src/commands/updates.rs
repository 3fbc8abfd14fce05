//! Self-update commands: read, check, install (on the user's request only)
//! and restart, dismiss. The state follows as `update-changed` events.

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
    crate::updates::install_and_restart(&app, &updates)
        .await
        .map_err(|err| {
            let code = match err {
                UpdateError::NothingToInstall => ErrorCode::NotFound,
                UpdateError::Busy => ErrorCode::Conflict,
                UpdateError::Disabled(_) => ErrorCode::Unavailable,
            };
            ErrorBody::new(code, err.to_string())
        })
}

#[tauri::command]
pub fn dismiss_update(updates: State<'_, SharedUpdates>) -> Reply<UpdateState> {
    Ok(updates.dismiss())
}
