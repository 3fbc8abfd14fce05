//! The open conversation: its title (renamed in place), actions, messages as
//! Markdown, and the composer (Enter sends, Shift+Enter adds a line).
//!
//! Messages are windowed: opening reads the newest page, "Show earlier" pages
//! back, and a change to the open conversation reads its state and only the
//! messages from the first one that may have changed (the first not yet
//! synced or still streaming, or after the newest shown), so a new message
//! is one appended row, not a reload.

use confab_wire::ErrorBody;
use confab_wire::ipc::{
    AppendArgs, AppendMessage, ById, DiscardFailed, ExportArgs, ExportConversation,
    GetConversation, GetMessages, MessagesArgs, OpenArgs, RestoreConversation, RetryFailed,
    UpdateArgs, UpdateConversation,
};
use confab_wire::library::{ConversationView, ExportFormat};
use yew::prelude::*;

use super::assistant_settings::AssistantPanel;
use super::message::MessageRow;
use super::{Ctx, Toast, markdown};
use crate::ipc;

/// Messages read at first; "Show earlier" adds this many more. Long
/// conversations stay smooth because older messages are not in the page.
const WINDOW: usize = 200;

/// The conversation with its newest `limit` messages.
async fn open(id: &str, limit: usize) -> Result<Option<ConversationView>, ErrorBody> {
    ipc::invoke::<GetConversation>(&OpenArgs {
        id: id.to_owned(),
        limit: Some(limit as u32),
    })
    .await
}

/// `held` brought up to date: the conversation's state, and the messages
/// from the first shown one not yet synced (or after the newest shown). If
/// the result does not add up to the conversation's count (messages removed
/// elsewhere, or many new), the window is read again.
async fn refresh(id: &str, held: ConversationView) -> Result<Option<ConversationView>, ErrorBody> {
    let Some(mut state) = open(id, 0).await? else {
        return Ok(None);
    };
    // From the first message that may change in place: one not synced yet,
    // a reply still being written, or one a request for a reply waits on.
    let keep = held
        .messages
        .iter()
        .position(|m| {
            m.pending
                || m.asking
                || m.message
                    .reply
                    .as_ref()
                    .is_some_and(|r| r.status == confab_wire::assistant::ReplyStatus::Streaming)
        })
        .unwrap_or(held.messages.len());
    if keep == 0 && held.earlier > 0 {
        return open(id, WINDOW.max(held.messages.len())).await;
    }
    let after = keep
        .checked_sub(1)
        .map(|i| held.messages[i].message.id.clone());
    let fresh = ipc::invoke::<GetMessages>(&MessagesArgs {
        id: id.to_owned(),
        after,
        before: None,
        limit: None,
    })
    .await?;
    // Changed, yet nothing new after what is held: a message changed in
    // place (a reply regenerated, a stop elsewhere): read the window again.
    let in_place = fresh.messages.is_empty()
        && keep == held.messages.len()
        && state.conversation.version != held.conversation.version;
    if in_place {
        return open(id, WINDOW.max(held.messages.len())).await;
    }
    let mut messages = held.messages[..keep].to_vec();
    messages.extend(fresh.messages);
    // With no messages asked for, every message counts as earlier.
    let total = state.earlier;
    if fresh.more || held.earlier + messages.len() as u64 != total {
        return open(id, WINDOW.max(messages.len())).await;
    }
    state.earlier = held.earlier;
    state.messages = messages;
    Ok(Some(state))
}

#[derive(Properties, PartialEq)]
pub struct Props {
    pub ctx: Ctx,
}

#[function_component(Pane)]
pub fn pane(props: &Props) -> Html {
    let ctx = &props.ctx;
    let view = use_state(|| None::<ConversationView>);
    // What `view` holds now, for answers that build on it.
    let loaded = use_mut_ref(|| None::<ConversationView>);
    let renaming = use_state(|| false);
    let settings_open = use_state(|| false);
    let draft = use_state(String::new);
    // The box itself: a key press can arrive before the render that follows
    // the last input, when `draft` still holds the text before it.
    let composer = use_node_ref();
    let messages_ref = use_node_ref();
    // The selection now, for answers that arrive after it changed.
    let current = use_mut_ref(|| None::<String>);
    *current.borrow_mut() = ctx.selected.clone();

    {
        let view = view.clone();
        let loaded = loaded.clone();
        let renaming = renaming.clone();
        let draft = draft.clone();
        let settings_open = settings_open.clone();
        use_effect_with(ctx.selected.clone(), move |_| {
            renaming.set(false);
            settings_open.set(false);
            view.set(None);
            *loaded.borrow_mut() = None;
            // Text typed for one conversation is never sent to another.
            draft.set(String::new());
        });
    }
    // One read at a time (`OneAtATime`).
    let reading = use_mut_ref(super::OneAtATime::default);
    {
        let view = view.clone();
        let loaded = loaded.clone();
        let error = ctx.error.clone();
        let current = current.clone();
        let reading = reading.clone();
        use_effect_with((ctx.selected.clone(), ctx.open_tick), move |_| {
            if !reading.borrow().start() {
                return;
            }
            wasm_bindgen_futures::spawn_local(async move {
                loop {
                    let selected = current.borrow().clone();
                    if let Some(id) = selected {
                        let held = loaded.borrow().clone().filter(|v| v.conversation.id == id);
                        let answer = match held {
                            Some(held) => refresh(&id, held).await,
                            None => open(&id, WINDOW).await,
                        };
                        if current.borrow().as_deref() == Some(id.as_str()) {
                            match answer {
                                Ok(found) => {
                                    *loaded.borrow_mut() = found.clone();
                                    view.set(found);
                                }
                                Err(e) => error.emit(e),
                            }
                        }
                    }
                    if !reading.borrow().again() {
                        break;
                    }
                }
            });
        });
    }
    // A new (empty) conversation opens with the keyboard in the composer:
    // what the user types next goes there (Ctrl+N, New).
    {
        let composer = composer.clone();
        let empty = view
            .as_ref()
            .filter(|v| v.messages.is_empty() && v.earlier == 0)
            .map(|v| v.conversation.id.clone());
        use_effect_with(empty, move |empty| {
            if empty.is_some()
                && let Some(area) = composer.cast::<web_sys::HtmlElement>()
            {
                let _ = area.focus();
            }
        });
    }
    // Keep the newest message in view when a newer one arrives (not when
    // earlier ones are shown above).
    {
        let messages_ref = messages_ref.clone();
        let newest = view
            .as_ref()
            .and_then(|v| v.messages.last().map(|m| m.message.id.clone()));
        use_effect_with(newest, move |_| {
            if let Some(el) = messages_ref.cast::<web_sys::Element>() {
                el.set_scroll_top(el.scroll_height());
            }
        });
    }

    // A growing reply stays in view, unless the user scrolled up to read.
    {
        let messages_ref = messages_ref.clone();
        use_effect_with(ctx.live_tick, move |_| {
            if let Some(el) = messages_ref.cast::<web_sys::Element>() {
                let from_bottom = el.scroll_height() - el.scroll_top() - el.client_height();
                if from_bottom < 120 {
                    el.set_scroll_top(el.scroll_height());
                }
            }
        });
    }

    let Some(id) = ctx.selected.clone() else {
        return html! {
            <main class="pane empty" aria-labelledby="pane-empty">
                <p id="pane-empty" class="muted">
                    { "Select a conversation, or start a new one with Ctrl+N." }
                </p>
            </main>
        };
    };
    let Some(v) = (*view).clone().filter(|v| v.conversation.id == id) else {
        return html! { <main class="pane empty"><p class="muted">{ "Loading…" }</p></main> };
    };

    let update = |args: UpdateArgs| {
        let error = ctx.error.clone();
        Callback::from(move |_: MouseEvent| {
            let args = args.clone();
            let error = error.clone();
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(e) = ipc::invoke::<UpdateConversation>(&args).await {
                    error.emit(e);
                }
            });
        })
    };
    let c = &v.conversation;
    let pin = update(UpdateArgs {
        id: id.clone(),
        pinned: Some(!c.pinned),
        ..UpdateArgs::default()
    });
    let archive = update(UpdateArgs {
        id: id.clone(),
        archived: Some(!c.archived),
        ..UpdateArgs::default()
    });
    let delete = {
        let delete = ctx.delete.clone();
        let id = id.clone();
        Callback::from(move |_: MouseEvent| delete.emit(id.clone()))
    };
    let export = |format: ExportFormat| {
        let id = id.clone();
        let notify = ctx.notify.clone();
        let error = ctx.error.clone();
        Callback::from(move |_: MouseEvent| {
            let id = id.clone();
            let notify = notify.clone();
            let error = error.clone();
            wasm_bindgen_futures::spawn_local(async move {
                match ipc::invoke::<ExportConversation>(&ExportArgs { id, format }).await {
                    Ok(Some(path)) => notify.emit(Toast {
                        message: format!("Saved to {path}"),
                        undo: None,
                    }),
                    Ok(None) => {}
                    Err(e) => error.emit(e),
                }
            });
        })
    };
    let by_id = |run: fn(ById) -> super::Pending| {
        let id = id.clone();
        let error = ctx.error.clone();
        Callback::from(move |_: MouseEvent| {
            let error = error.clone();
            let future = run(ById { id: id.clone() });
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(e) = future.await {
                    error.emit(e);
                }
            });
        })
    };
    let retry = by_id(|args| Box::pin(async move { ipc::invoke::<RetryFailed>(&args).await }));
    let restore = by_id(|args| {
        Box::pin(async move { ipc::invoke::<RestoreConversation>(&args).await.map(|_| ()) })
    });
    let discard = by_id(|args| Box::pin(async move { ipc::invoke::<DiscardFailed>(&args).await }));

    let title = if *renaming {
        let renaming_done = renaming.clone();
        let error = ctx.error.clone();
        let id = id.clone();
        let original = c.title.clone();
        let onkeydown = Callback::from(move |e: KeyboardEvent| {
            let Some(input) = e.target_dyn_into::<web_sys::HtmlInputElement>() else {
                return;
            };
            match e.key().as_str() {
                "Enter" => {
                    e.prevent_default();
                    let title = input.value();
                    renaming_done.set(false);
                    if title.trim() != original {
                        let args = UpdateArgs {
                            id: id.clone(),
                            title: Some(title),
                            ..UpdateArgs::default()
                        };
                        let error = error.clone();
                        wasm_bindgen_futures::spawn_local(async move {
                            if let Err(e) = ipc::invoke::<UpdateConversation>(&args).await {
                                error.emit(e);
                            }
                        });
                    }
                }
                "Escape" => renaming_done.set(false),
                _ => {}
            }
        });
        let blur = {
            let renaming = renaming.clone();
            Callback::from(move |_: FocusEvent| renaming.set(false))
        };
        html! {
            <input id="rename-input" class="rename" aria-label="Conversation title"
                value={c.title.clone()} maxlength="500" {onkeydown} onblur={blur} autofocus=true />
        }
    } else {
        let renaming = renaming.clone();
        let onclick = Callback::from(move |_: MouseEvent| renaming.set(true));
        html! {
            <h1 class="conversation-title">
                <button id="conversation-title" class={classes!("title-button", v.opening.is_some().then_some("untitled"))} type="button"
                    title="Rename" {onclick}>{ v.opening.as_deref().unwrap_or(&c.title) }</button>
            </h1>
        }
    };

    let earlier = (v.earlier > 0).then(|| {
        let view = view.clone();
        let loaded = loaded.clone();
        let error = ctx.error.clone();
        let current = current.clone();
        let onclick = Callback::from(move |_: MouseEvent| {
            let Some(held) = loaded.borrow().clone() else {
                return;
            };
            let Some(first) = held.messages.first().map(|m| m.message.id.clone()) else {
                return;
            };
            let (view, loaded, error, current) =
                (view.clone(), loaded.clone(), error.clone(), current.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let id = held.conversation.id.clone();
                let older = ipc::invoke::<GetMessages>(&MessagesArgs {
                    id: id.clone(),
                    after: None,
                    before: Some(first),
                    limit: Some(WINDOW as u32),
                })
                .await;
                // Built on what is shown now, if it is still this conversation.
                let Some(mut now) = loaded.borrow().clone() else {
                    return;
                };
                if current.borrow().as_deref() != Some(id.as_str()) || now.conversation.id != id {
                    return;
                }
                match older {
                    Ok(older) => {
                        now.earlier = if older.more {
                            now.earlier.saturating_sub(older.messages.len() as u64)
                        } else {
                            0
                        };
                        let mut messages = older.messages;
                        messages.extend(now.messages);
                        now.messages = messages;
                        *loaded.borrow_mut() = Some(now.clone());
                        view.set(Some(now));
                    }
                    Err(e) => error.emit(e),
                }
            });
        });
        html! {
            <button id="show-earlier" class="link" type="button" {onclick}>
                { format!("Show earlier messages ({} more)", v.earlier) }
            </button>
        }
    });
    let messages = v.messages.iter().map(|m| {
        let streaming = m
            .message
            .reply
            .as_ref()
            .is_some_and(|r| r.status == confab_wire::assistant::ReplyStatus::Streaming);
        let live = streaming
            .then(|| {
                ctx.live.seed(&m.message.id, &m.message.content);
                ctx.live.get(&m.message.id)
            })
            .flatten();
        html! {
            <MessageRow key={m.message.id.clone()} conversation={id.clone()} message={m.clone()}
                {live} assistant={ctx.assistant.clone()} error={ctx.error.clone()} />
        }
    });

    // Enter asks the assistant too, when the server has one and it is on
    // here.
    let ask = ctx.assistant.as_ref().is_some_and(|a| a.available) && !c.assistant.off;
    let send = {
        let draft = draft.clone();
        let id = id.clone();
        let error = ctx.error.clone();
        let composer = composer.clone();
        move || {
            let area = composer.cast::<web_sys::HtmlTextAreaElement>();
            let content = area
                .as_ref()
                .map(|a| a.value())
                .unwrap_or_else(|| (*draft).clone());
            if content.trim().is_empty() {
                return;
            }
            if let Some(area) = &area {
                area.set_value("");
            }
            draft.set(String::new());
            let args = AppendArgs {
                conversation_id: id.clone(),
                content,
                ask,
                model: None,
            };
            let error = error.clone();
            let draft = draft.clone();
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(e) = ipc::invoke::<AppendMessage>(&args).await {
                    // Nothing typed is lost: the text goes back in the box.
                    draft.set(args.content);
                    error.emit(e);
                }
            });
        }
    };
    let on_input = {
        let draft = draft.clone();
        Callback::from(move |e: InputEvent| {
            if let Some(area) = e.target_dyn_into::<web_sys::HtmlTextAreaElement>() {
                draft.set(area.value());
            }
        })
    };
    let on_key = {
        let send = send.clone();
        Callback::from(move |e: KeyboardEvent| {
            if e.key() == "Enter" && !e.shift_key() && !e.is_composing() {
                e.prevent_default();
                send();
            }
        })
    };
    let on_send = Callback::from(move |_: MouseEvent| send());
    let toggle_settings = {
        let settings_open = settings_open.clone();
        Callback::from(move |_: MouseEvent| settings_open.set(!*settings_open))
    };
    let close_settings = {
        let settings_open = settings_open.clone();
        Callback::from(move |()| settings_open.set(false))
    };
    let placeholder = if ask || ctx.assistant.as_ref().is_none_or(|a| !a.available) {
        "Write a message… (Enter sends, Shift+Enter for a new line)"
    } else {
        "Write a message… (the assistant is off here; Enter sends)"
    };

    html! {
        <main class="pane" aria-label="Conversation">
            <header class="pane-header">
                { title }
                <div class="actions">
                    <button id="pin" class="secondary small" type="button" onclick={pin}
                        aria-pressed={c.pinned.to_string()}>{ if c.pinned { "Unpin" } else { "Pin" } }</button>
                    <button id="archive" class="secondary small" type="button" onclick={archive}>
                        { if c.archived { "Unarchive" } else { "Archive" } }</button>
                    <button id="export-markdown" class="secondary small" type="button"
                        onclick={export(ExportFormat::Markdown)}>{ "Export .md" }</button>
                    <button id="export-json" class="secondary small" type="button"
                        onclick={export(ExportFormat::Json)}>{ "Export .json" }</button>
                    <button id="assistant-settings" class="secondary small" type="button"
                        aria-expanded={settings_open.to_string()} onclick={toggle_settings}>{ "Assistant" }</button>
                    <button id="delete-conversation" class="danger small" type="button" onclick={delete}>
                        { "Delete" }</button>
                </div>
            </header>
            if *settings_open {
                <AssistantPanel conversation={c.clone()} assistant={ctx.assistant.clone()}
                    error={ctx.error.clone()} close={close_settings} />
            }
            if v.deleted {
                <div id="conversation-deleted" class="notice warning" role="status">
                    <span>{ "This conversation was deleted. Restore it to keep it, with every message not synced yet." }</span>
                    <button id="restore-conversation" class="secondary small" type="button" onclick={restore}>{ "Restore" }</button>
                </div>
            }
            if let Some(reason) = &v.failed {
                <div id="sync-failed" class="notice error" role="alert">
                    <span>{ format!("Not synced: {reason}") }</span>
                    <button id="retry-failed" class="secondary small" type="button" onclick={retry}>{ "Retry" }</button>
                    <button id="discard-failed" class="link" type="button" onclick={discard}>{ "Discard" }</button>
                </div>
            }
            <section id="messages" class="messages" ref={messages_ref} aria-label="Messages"
                onclick={markdown::on_link_click()}>
                { earlier.unwrap_or_default() }
                if v.messages.is_empty() {
                    <p class="muted empty-messages">{ "No messages yet. Write the first one below." }</p>
                }
                { for messages }
            </section>
            <div class="composer">
                <textarea id="composer" ref={composer} aria-label="Message" placeholder={placeholder}
                    value={(*draft).clone()} oninput={on_input} onkeydown={on_key} rows="3" />
                <button id="send" class="primary small" type="button" onclick={on_send}
                    disabled={draft.trim().is_empty()}>{ "Send" }</button>
            </div>
        </main>
    }
}
