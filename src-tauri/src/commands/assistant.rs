//! Assistant commands: ask for a reply (queued like every write), stop one
//! (needs the server), and what the server's assistant offers.

use std::sync::Arc;

use confab_sync::SyncError;
use confab_wire::assistant::AssistantInfo;
use confab_wire::ipc::{AskArgs, StopArgs};
use confab_wire::{ErrorBody, ErrorCode};
use tauri::State;

use confab_library::Library;

type Reply<T> = Result<T, ErrorBody>;

/// Where the cache keeps the last answer of `GET /api/assistant`, for
/// offline starts.
const LAST_INFO: &str = "assistant_info";

#[tauri::command]
pub fn ask_reply(library: State<'_, Arc<Library>>, args: AskArgs) -> Reply<()> {
    let engine = library.engine()?;
    engine.cache().ask(
        &args.conversation_id,
        &args.after,
        args.model.as_deref(),
        args.regenerate,
        confab_cache::now(),
    )?;
    engine.local_change(&args.conversation_id);
    Ok(())
}

#[tauri::command]
pub async fn stop_reply(library: State<'_, Arc<Library>>, args: StopArgs) -> Reply<()> {
    let engine = library.engine()?;
    engine
        .stop_reply(&args.conversation_id, &args.message_id)
        .await
        .map_err(|err| match err {
            SyncError::Retry { message, .. } => ErrorBody::new(
                ErrorCode::Unavailable,
                format!("The reply could not be stopped: {message}"),
            ),
            other => other.into(),
        })
}

#[tauri::command]
pub async fn assistant_info(library: State<'_, Arc<Library>>) -> Reply<AssistantInfo> {
    let engine = library.engine()?;
    match engine.assistant().await {
        Ok(info) => {
            if let Ok(json) = serde_json::to_string(&info) {
                let _ = engine.cache().set_sync_value(LAST_INFO, &json);
            }
            Ok(info)
        }
        Err(SyncError::Retry { message, .. }) => engine
            .cache()
            .sync_value(LAST_INFO)
            .ok()
            .flatten()
            .and_then(|json| serde_json::from_str(&json).ok())
            .ok_or_else(|| ErrorBody::new(ErrorCode::Unavailable, message)),
        Err(other) => Err(other.into()),
    }
}
