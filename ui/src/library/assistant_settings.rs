//! The assistant's settings for one conversation: whether it answers here,
//! with which model, and the instructions it is given (its system prompt).
//! Saved like every change: to the cache at once, then synced.

use confab_wire::assistant::AssistantInfo;
use confab_wire::conversations::{AssistantSettings, Conversation};
use confab_wire::ipc::{UpdateArgs, UpdateConversation};
use confab_wire::limits::MAX_INSTRUCTIONS_CHARS;
use yew::prelude::*;

use crate::ipc;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub conversation: Conversation,
    pub assistant: Option<AssistantInfo>,
    pub error: Callback<confab_wire::ErrorBody>,
    pub close: Callback<()>,
}

#[function_component(AssistantPanel)]
pub fn assistant_panel(props: &Props) -> Html {
    let saved = props.conversation.assistant.clone();
    let on = use_state(|| !saved.off);
    let model = use_state(|| saved.model.clone().unwrap_or_default());
    let instructions = use_state(|| saved.instructions.clone().unwrap_or_default());

    let Some(info) = props.assistant.clone() else {
        return html! {
            <section id="assistant-panel" class="assistant-panel" aria-label="Assistant">
                <p class="muted">{ "Asking the server what its assistant offers…" }</p>
            </section>
        };
    };
    if !info.available {
        let close = props.close.clone();
        return html! {
            <section id="assistant-panel" class="assistant-panel" aria-label="Assistant">
                <p class="muted">{ format!("The server has no assistant: {}", info.reason.clone().unwrap_or_default()) }</p>
                <button class="secondary small" type="button" onclick={move |_| close.emit(())}>{ "Close" }</button>
            </section>
        };
    }

    let default_name = info
        .default_model
        .as_ref()
        .and_then(|id| info.models.iter().find(|m| &m.id == id))
        .map(|m| m.name.clone())
        .unwrap_or_default();
    let on_toggle = {
        let on = on.clone();
        Callback::from(move |e: Event| {
            if let Some(input) = e.target_dyn_into::<web_sys::HtmlInputElement>() {
                on.set(input.checked());
            }
        })
    };
    let on_model = {
        let model = model.clone();
        Callback::from(move |e: Event| {
            if let Some(select) = e.target_dyn_into::<web_sys::HtmlSelectElement>() {
                model.set(select.value());
            }
        })
    };
    let on_instructions = {
        let instructions = instructions.clone();
        Callback::from(move |e: InputEvent| {
            if let Some(area) = e.target_dyn_into::<web_sys::HtmlTextAreaElement>() {
                instructions.set(area.value());
            }
        })
    };
    let save = {
        let id = props.conversation.id.clone();
        let error = props.error.clone();
        let close = props.close.clone();
        let (on, model, instructions) = (on.clone(), model.clone(), instructions.clone());
        Callback::from(move |_: MouseEvent| {
            let settings = AssistantSettings {
                off: !*on,
                model: Some((*model).clone()).filter(|m| !m.is_empty()),
                instructions: Some((*instructions).clone()).filter(|i| !i.trim().is_empty()),
            };
            let args = UpdateArgs {
                id: id.clone(),
                assistant: Some(settings),
                ..UpdateArgs::default()
            };
            let (error, close) = (error.clone(), close.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match ipc::invoke::<UpdateConversation>(&args).await {
                    Ok(_) => close.emit(()),
                    Err(e) => error.emit(e),
                }
            });
        })
    };
    let cancel = {
        let close = props.close.clone();
        Callback::from(move |_: MouseEvent| close.emit(()))
    };
    let too_long = instructions.chars().count() > MAX_INSTRUCTIONS_CHARS;

    html! {
        <section id="assistant-panel" class="assistant-panel" aria-label="Assistant settings for this conversation">
            <label class="check">
                <input id="assistant-on" type="checkbox" checked={*on} onchange={on_toggle} />
                { " The assistant answers in this conversation" }
            </label>
            <label class="field">
                <span>{ "Model" }</span>
                <select id="assistant-model" onchange={on_model} disabled={!*on}>
                    <option value="" selected={model.is_empty()}>{ format!("Server default ({default_name})") }</option>
                    { for info.models.iter().map(|m| html! {
                        <option value={m.id.clone()} selected={*model == m.id}>{ &m.name }</option>
                    }) }
                </select>
            </label>
            <label class="field">
                <span>{ "Instructions (sent to the model before the conversation)" }</span>
                <textarea id="assistant-instructions" rows="4" disabled={!*on}
                    placeholder="For example: answer briefly, in French."
                    value={(*instructions).clone()} oninput={on_instructions} />
            </label>
            if too_long {
                <p class="error" role="alert">{ format!("At most {MAX_INSTRUCTIONS_CHARS} characters.") }</p>
            }
            <div class="panel-actions">
                <button id="assistant-save" class="primary small" type="button" onclick={save} disabled={too_long}>{ "Save" }</button>
                <button class="secondary small" type="button" onclick={cancel}>{ "Cancel" }</button>
            </div>
        </section>
    }
}
