//! Conversation commands: argument mapping onto the signed-in user's cache
//! and sync engine (`crate::library`). Every write goes to the cache (with its
//! outbox entry) and then nudges the engine; nothing here waits for the
//! network.

use std::sync::Arc;

use confab_cache::local::Patch;
use confab_wire::conversations::Role;
use confab_wire::ipc::{
    AppendArgs, ById, CreateArgs, ExportArgs, ListArgs, ListItemsArgs, MAX_LIST_PAGE, MessagesArgs,
    OpenArgs, OpenLinkArgs, SearchArgs, UpdateArgs,
};
use confab_wire::library::{
    ConversationView, ExportFormat, ListItem, ListPage, MessageView, MessagesWindow, SearchHit,
    SyncStatus,
};
use confab_wire::{ErrorBody, ErrorCode};
use tauri::State;

use crate::session::{Browser, SaveDialog};
use confab_library::Library;

type Reply<T> = Result<T, ErrorBody>;

#[tauri::command]
pub fn list_conversations(library: State<'_, Arc<Library>>, args: ListArgs) -> Reply<ListPage> {
    let engine = library.engine()?;
    let cache = engine.cache();
    Ok(ListPage {
        items: cache.list(args.filter, args.offset, args.limit.min(MAX_LIST_PAGE))?,
        total: cache.count(args.filter)?,
    })
}

/// Most rows one `get_list_items` call names.
const MAX_IDS: usize = 500;

#[tauri::command]
pub fn get_list_items(library: State<'_, Arc<Library>>, args: ListItemsArgs) -> Reply<ListPage> {
    if args.ids.len() > MAX_IDS {
        return Err(ErrorBody::new(
            ErrorCode::InvalidInput,
            format!("ids: at most {MAX_IDS}"),
        ));
    }
    let engine = library.engine()?;
    let cache = engine.cache();
    Ok(ListPage {
        items: cache.list_items(args.filter, &args.ids)?,
        total: cache.count(args.filter)?,
    })
}

#[tauri::command]
pub fn get_conversation(
    library: State<'_, Arc<Library>>,
    args: OpenArgs,
) -> Reply<Option<ConversationView>> {
    let limit = args.limit.map(|n| n as usize);
    Ok(library.engine()?.cache().get_window(&args.id, limit)?)
}

/// Most messages one `get_messages` call answers.
const MAX_MESSAGES: u32 = 500;

#[tauri::command]
pub fn get_messages(library: State<'_, Arc<Library>>, args: MessagesArgs) -> Reply<MessagesWindow> {
    if args.after.is_some() && args.before.is_some() {
        return Err(ErrorBody::new(
            ErrorCode::InvalidInput,
            "before: give after or before, not both",
        ));
    }
    let limit = args.limit.unwrap_or(MAX_MESSAGES).clamp(1, MAX_MESSAGES) as usize;
    Ok(library.engine()?.cache().messages_window(
        &args.id,
        args.after.as_deref(),
        args.before.as_deref(),
        limit,
    )?)
}

#[tauri::command]
pub fn create_conversation(library: State<'_, Arc<Library>>, args: CreateArgs) -> Reply<ListItem> {
    let engine = library.engine()?;
    let item = engine.cache().create(
        &library.new_id(),
        args.title.as_deref(),
        confab_cache::now(),
    )?;
    engine.local_change(&item.conversation.id);
    Ok(item)
}

#[tauri::command]
pub fn update_conversation(library: State<'_, Arc<Library>>, args: UpdateArgs) -> Reply<ListItem> {
    let engine = library.engine()?;
    let patch = Patch {
        title: args.title,
        pinned: args.pinned,
        archived: args.archived,
        assistant: args.assistant,
    };
    let item = engine
        .cache()
        .update(&args.id, patch, confab_cache::now())?;
    engine.local_change(&args.id);
    Ok(item)
}

#[tauri::command]
pub fn delete_conversation(library: State<'_, Arc<Library>>, args: ById) -> Reply<()> {
    let engine = library.engine()?;
    engine.cache().delete(&args.id, confab_cache::now())?;
    engine.local_change(&args.id);
    Ok(())
}

#[tauri::command]
pub fn restore_conversation(library: State<'_, Arc<Library>>, args: ById) -> Reply<ListItem> {
    let engine = library.engine()?;
    let item = engine.cache().restore(&args.id, confab_cache::now())?;
    engine.local_change(&args.id);
    Ok(item)
}

#[tauri::command]
pub fn append_message(library: State<'_, Arc<Library>>, args: AppendArgs) -> Reply<MessageView> {
    let engine = library.engine()?;
    let message = engine.cache().append(
        &args.conversation_id,
        &library.new_id(),
        Role::User,
        &args.content,
        confab_cache::now(),
    )?;
    if args.ask {
        engine.cache().ask(
            &args.conversation_id,
            &message.message.id,
            args.model.as_deref(),
            false,
            confab_cache::now(),
        )?;
    }
    engine.local_change(&args.conversation_id);
    Ok(message)
}

#[tauri::command]
pub fn search_conversations(
    library: State<'_, Arc<Library>>,
    args: SearchArgs,
) -> Reply<Vec<SearchHit>> {
    if args.query.len() > 1024 {
        return Err(ErrorBody::new(
            ErrorCode::InvalidInput,
            "query: at most 1,024 characters",
        ));
    }
    Ok(library
        .engine()?
        .cache()
        .search(&args.query, args.limit.unwrap_or(50).min(200))?)
}

/// Asks where to save with the system's dialog, then writes the file here in
/// Rust: the webview gets no file system access.
#[tauri::command]
pub async fn export_conversation(
    library: State<'_, Arc<Library>>,
    dialog: State<'_, SaveDialog>,
    args: ExportArgs,
) -> Reply<Option<String>> {
    let view = library
        .engine()?
        .cache()
        .get(&args.id)?
        .ok_or_else(|| ErrorBody::new(ErrorCode::NotFound, "no such conversation"))?;
    let (contents, extension) = match args.format {
        ExportFormat::Markdown => (confab_cache::export::markdown(&view), "md"),
        ExportFormat::Json => (
            confab_cache::export::json(&view)
                .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?,
            "json",
        ),
    };
    let name = confab_cache::export::file_name(&view, extension);
    let Some(path) = (dialog.0)(name).await else {
        log::info!("export cancelled");
        return Ok(None);
    };
    std::fs::write(&path, contents).map_err(|e| {
        ErrorBody::new(
            ErrorCode::Unavailable,
            format!("Could not save {}: {e}", path.display()),
        )
    })?;
    Ok(Some(path.display().to_string()))
}

#[tauri::command]
pub fn sync_status(library: State<'_, Arc<Library>>) -> Reply<SyncStatus> {
    Ok(library.engine()?.status())
}

#[tauri::command]
pub fn sync_now(library: State<'_, Arc<Library>>) -> Reply<SyncStatus> {
    let engine = library.engine()?;
    // "Retry" in the status bar: refused writes go again too.
    engine.cache().retry_all()?;
    engine.local_change_all();
    Ok(engine.status())
}

#[tauri::command]
pub fn retry_failed(library: State<'_, Arc<Library>>, args: ById) -> Reply<()> {
    let engine = library.engine()?;
    for entry in engine.cache().outbox()? {
        if entry.conversation_id == args.id && entry.failed.is_some() {
            engine.cache().retry(entry.seq)?;
        }
    }
    engine.local_change(&args.id);
    Ok(())
}

#[tauri::command]
pub fn discard_failed(library: State<'_, Arc<Library>>, args: ById) -> Reply<()> {
    let engine = library.engine()?;
    for entry in engine.cache().outbox()? {
        if entry.conversation_id == args.id && entry.failed.is_some() {
            engine.cache().discard(entry.seq)?;
        }
    }
    engine.local_change(&args.id);
    Ok(())
}

/// Only http(s) and mailto links leave the app, in the system browser.
#[tauri::command]
pub async fn open_link(browser: State<'_, Browser>, args: OpenLinkArgs) -> Reply<()> {
    let mut url = url::Url::parse(&args.url)
        .map_err(|_| ErrorBody::new(ErrorCode::InvalidInput, "url: not a link"))?;
    if !matches!(url.scheme(), "http" | "https" | "mailto") {
        return Err(ErrorBody::new(
            ErrorCode::InvalidInput,
            "url: only web and mail links open",
        ));
    }
    if url.scheme() == "mailto" {
        // Only the address: a message's link must not fill in a mail (its
        // body, recipients, or `attach=` a file) behind the user's back.
        url.set_query(None);
        url.set_fragment(None);
    }
    browser
        .open(url.into())
        .await
        .map_err(|e| ErrorBody::new(ErrorCode::Unavailable, e))
}
