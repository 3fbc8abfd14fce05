//! One message row: who wrote it (You, or the model's name), its text as
//! safe Markdown, the time on hover, Copy, and for an assistant reply its
//! state: growing (with Stop), stopped, failed (with its reason and Retry),
//! or done (Regenerate). A row renders again only when what it shows
//! changed, so a reply growing re-renders one row, not the conversation.

use confab_wire::assistant::{AssistantInfo, Reply, ReplyStatus};
use confab_wire::conversations::Role;
use confab_wire::ipc::{AskArgs, AskReply, StopArgs, StopReply};
use confab_wire::library::MessageView;
use yew::prelude::*;

use super::markdown;
use crate::ipc;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub conversation: String,
    pub message: MessageView,
    /// The reply's text as it streams, when longer than the stored text.
    pub live: Option<String>,
    pub assistant: Option<AssistantInfo>,
    pub error: Callback<confab_wire::ErrorBody>,
}

/// The model's display name (its id when the server no longer lists it).
fn model_name(assistant: Option<&AssistantInfo>, model: &str) -> String {
    assistant
        .and_then(|a| a.models.iter().find(|m| m.id == model))
        .map_or_else(|| model.to_owned(), |m| m.name.clone())
}

/// Whether a streaming reply is still being written (by the browser's clock).
fn is_live(reply: &Reply) -> bool {
    reply.is_live_at(js_sys::Date::now() as i64)
}

/// The time in the user's locale and time zone.
fn local_time(ms: i64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
    String::from(date.to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED))
}

fn copy_to_clipboard(text: String) {
    if let Some(window) = web_sys::window() {
        let _ = window.navigator().clipboard().write_text(&text);
    }
}

#[function_component(MessageRow)]
pub fn message_row(props: &Props) -> Html {
    let m = &props.message.message;
    let reply = m.reply.as_ref();
    // A streaming reply silent for long lost its writer (the server stopped).
    let interrupted = reply.is_some_and(|r| r.status == ReplyStatus::Streaming && !is_live(r));
    let streaming = reply.is_some_and(is_live);
    let text = match &props.live {
        Some(live) if streaming && live.len() > m.content.len() => live.clone(),
        _ => m.content.clone(),
    };
    let author = match (m.role, reply) {
        (Role::User, _) => "You".to_owned(),
        (Role::Assistant, Some(r)) => model_name(props.assistant.as_ref(), &r.model),
        (Role::Assistant, None) => "Assistant".to_owned(),
        (Role::System, _) => "System".to_owned(),
    };
    let time = local_time(m.timestamp.timestamp_millis());

    let ask = |regenerate: bool| {
        let args = AskArgs {
            conversation_id: props.conversation.clone(),
            after: reply.map(|r| r.after.clone()).unwrap_or_default(),
            model: reply.map(|r| r.model.clone()),
            regenerate,
        };
        let error = props.error.clone();
        Callback::from(move |_: MouseEvent| {
            let args = args.clone();
            let error = error.clone();
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(e) = ipc::invoke::<AskReply>(&args).await {
                    error.emit(e);
                }
            });
        })
    };
    let stop = {
        let args = StopArgs {
            conversation_id: props.conversation.clone(),
            message_id: m.id.clone(),
        };
        let error = props.error.clone();
        Callback::from(move |_: MouseEvent| {
            let args = args.clone();
            let error = error.clone();
            wasm_bindgen_futures::spawn_local(async move {
                if let Err(e) = ipc::invoke::<StopReply>(&args).await {
                    error.emit(e);
                }
            });
        })
    };
    let copy = {
        let text = text.clone();
        Callback::from(move |_: MouseEvent| copy_to_clipboard(text.clone()))
    };

    let state = reply.map(|r| match r.status {
        _ if streaming => html! {
            <div class="reply-state streaming" role="status">
                <span class="writing">{ if text.is_empty() { "Thinking…" } else { "Writing…" } }</span>
                <button class="secondary small stop-reply" type="button" onclick={stop}>{ "Stop" }</button>
            </div>
        },
        _ if interrupted => html! {
            <div class="reply-state failed" role="alert">
                <span>{ "This reply was interrupted before it finished." }</span>
                <button class="secondary small retry-reply" type="button" onclick={ask(true)}>{ "Retry" }</button>
            </div>
        },
        ReplyStatus::Failed => html! {
            <div class="reply-state failed" role="alert">
                <span class="reply-error">{ r.error.clone().unwrap_or_else(|| "The reply failed.".into()) }</span>
                <button class="secondary small retry-reply" type="button" onclick={ask(true)}>{ "Retry" }</button>
            </div>
        },
        ReplyStatus::Stopped => html! {
            <div class="reply-state stopped">
                <span class="muted">{ "Stopped" }</span>
                <button class="link regenerate-reply" type="button" onclick={ask(true)}>{ "Regenerate" }</button>
            </div>
        },
        _ => html! {
            <div class="reply-state">
                <button class="link regenerate-reply" type="button" onclick={ask(true)}>{ "Regenerate" }</button>
            </div>
        },
    });

    let role = m.role.as_str();
    html! {
        <article class={classes!("message", role, props.message.pending.then_some("pending"), streaming.then_some("streaming"))}
            data-id={m.id.clone()} data-status={reply.map(|r| r.status.as_str())}
            aria-label={format!("{author}, {time}")} aria-busy={streaming.to_string()}>
            <header class="message-meta">
                <span class="author">{ &author }</span>
                <time class="time" datetime={m.timestamp.to_rfc3339()} title={time.clone()}>{ &time }</time>
                <button class="link copy-message" type="button" title="Copy the text" onclick={copy}>{ "Copy" }</button>
            </header>
            <div class="message-body">{ markdown::render(&text) }</div>
            if props.message.pending {
                <span class="pending-mark" title="Waiting to sync">{ "Not synced yet" }</span>
            }
            if props.message.asking {
                <span class="asking-mark">{ if props.message.pending { "Will ask the assistant when back online" } else { "Asking the assistant…" } }</span>
            }
            { state.unwrap_or_default() }
        </article>
    }
}
