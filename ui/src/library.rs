//! The signed-in workspace: the sidebar (search, new, list), the open
//! conversation, the sync status and the Undo toast. Everything shown comes
//! from the shell's cache; `library-changed` events say when to read again.

mod assistant_settings;
mod markdown;
mod message;
mod pane;
mod sidebar;
mod status;

use std::cell::RefCell;
use std::rc::Rc;

use confab_wire::ErrorBody;
use confab_wire::assistant::AssistantInfo;
use confab_wire::ipc::{
    ById, CreateArgs, CreateConversation, DeleteConversation, GetAssistant, LibraryChangedEvent,
    NoArgs, ReplyLiveEvent, RestoreConversation,
};
use confab_wire::library::ReplyLive;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use yew::prelude::*;

use crate::ipc;
pub use status::StatusBadge;

/// A command's answer with nothing in it but success or an error.
pub type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), ErrorBody>>>>;

/// A short message at the bottom, with Undo for a delete.
#[derive(Clone, PartialEq)]
pub struct Toast {
    pub message: String,
    pub undo: Option<String>,
}

/// The conversations `library-changed` named since the list last looked:
/// events can come faster than renders, so they are gathered, not replaced.
#[derive(Clone, Default)]
pub struct Changes(Rc<RefCell<Changed>>);

#[derive(Default)]
pub struct Changed {
    /// Everything may have changed (an event that named no ids).
    pub all: bool,
    pub ids: Vec<String>,
}

impl Changes {
    fn record(&self, ids: &[String]) {
        let mut changed = self.0.borrow_mut();
        if ids.is_empty() {
            changed.all = true;
        }
        for id in ids {
            if !changed.ids.contains(id) {
                changed.ids.push(id.clone());
            }
        }
    }

    /// What changed since the last call.
    pub fn take(&self) -> Changed {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}

impl PartialEq for Changes {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

/// Replies' text as it streams, by message id: ahead of the cache, which
/// holds the text as of the last checkpoint.
#[derive(Clone, Default)]
pub struct LiveTexts(Rc<RefCell<std::collections::HashMap<String, String>>>);

impl LiveTexts {
    /// Applies a delta; `false` when it does not follow the text held (a
    /// gap: the stored text catches up at the next checkpoint).
    fn apply(&self, id: &str, offset: usize, delta: &str) -> bool {
        let mut texts = self.0.borrow_mut();
        let text = texts.entry(id.to_owned()).or_default();
        if offset > text.len() {
            return false;
        }
        // Overlap (a repeat, or text the checkpoint had): only what is new.
        let end = offset + delta.len();
        if end > text.len() {
            let skip = text.len() - offset;
            if let Some(rest) = delta.get(skip..) {
                text.push_str(rest);
            }
        }
        true
    }

    /// Starts following `id` from the stored text (when no delta came yet).
    pub fn seed(&self, id: &str, stored: &str) {
        let mut texts = self.0.borrow_mut();
        let text = texts.entry(id.to_owned()).or_default();
        if stored.len() > text.len() && stored.starts_with(text.as_str()) {
            *text = stored.to_owned();
        }
    }

    fn end(&self, id: &str) {
        self.0.borrow_mut().remove(id);
    }

    pub fn get(&self, id: &str) -> Option<String> {
        self.0.borrow().get(id).cloned()
    }
}

impl PartialEq for LiveTexts {
    fn eq(&self, other: &Self) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }
}

/// One read at a time: a change during a read is handled right after it, so
/// an older answer never lands over a newer one and no change is lost.
#[derive(Default)]
pub struct OneAtATime {
    busy: std::cell::Cell<bool>,
    again: std::cell::Cell<bool>,
}

impl OneAtATime {
    /// Whether the caller reads now; otherwise the read under way reads again.
    pub fn start(&self) -> bool {
        if self.busy.get() {
            self.again.set(true);
            return false;
        }
        self.busy.set(true);
        true
    }

    /// After a read: whether to read again (a change came meanwhile).
    pub fn again(&self) -> bool {
        if self.again.replace(false) {
            return true;
        }
        self.busy.set(false);
        false
    }
}

/// Shared by the parts of the workspace.
#[derive(Clone, PartialEq)]
pub struct Ctx {
    /// Bumped on every `library-changed`: the list looks at `changes`.
    pub tick: u32,
    pub changes: Changes,
    /// Bumped when the open conversation changed.
    pub open_tick: u32,
    pub selected: Option<String>,
    pub select: Callback<Option<String>>,
    pub notify: Callback<Toast>,
    pub error: Callback<ErrorBody>,
    pub delete: Callback<String>,
    /// What the server's assistant offers (none until known).
    pub assistant: Option<AssistantInfo>,
    pub live: LiveTexts,
    /// Bumped when a reply of the open conversation grew.
    pub live_tick: u32,
}

#[function_component(Library)]
pub fn library() -> Html {
    let tick = use_state(|| 0u32);
    let open_tick = use_state(|| 0u32);
    let selected = use_state(|| None::<String>);
    let toast = use_state(|| None::<Toast>);
    let selected_now = use_mut_ref(|| None::<String>);
    *selected_now.borrow_mut() = (*selected).clone();
    // Counters behind the ticks: an event handler registered once must not
    // count from the value it saw at registration.
    let counters = use_mut_ref(|| (0u32, 0u32));
    let changes = use_mut_ref(Changes::default).borrow().clone();
    let assistant = use_state(|| None::<AssistantInfo>);
    let live = use_mut_ref(LiveTexts::default).borrow().clone();
    let live_tick = use_state(|| 0u32);
    let live_count = use_mut_ref(|| 0u32);
    // A render of the growing text is scheduled.
    let live_pending = use_mut_ref(|| Rc::new(std::cell::Cell::new(false)))
        .borrow()
        .clone();

    // What the assistant offers: asked at start, and again until known.
    {
        let assistant = assistant.clone();
        use_effect_with((), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                for _ in 0..60 {
                    if let Ok(info) = ipc::invoke::<GetAssistant>(&NoArgs {}).await {
                        assistant.set(Some(info));
                        return;
                    }
                    sleep_ms(20_000).await;
                }
            });
        });
    }
    // Replies as they grow: the open conversation's rows follow them.
    {
        let live = live.clone();
        let live_tick = live_tick.clone();
        let live_count = live_count.clone();
        let live_pending = live_pending.clone();
        let selected_now = selected_now.clone();
        use_effect_with((), move |_| {
            let keep = Rc::new(RefCell::new(None));
            let slot = keep.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let sub = ipc::listen::<ReplyLiveEvent>(move |event| {
                    let open = selected_now.borrow().clone();
                    match event {
                        ReplyLive::Delta(d) => {
                            live.apply(&d.message_id, d.offset as usize, &d.delta);
                            // The text is kept at once; the window shows it at
                            // most every 50 ms, however fast the words come
                            // (a render per word would fall behind).
                            if open.as_deref() == Some(d.conversation_id.as_str())
                                && !live_pending.replace(true)
                            {
                                let (live_tick, live_count, live_pending) =
                                    (live_tick.clone(), live_count.clone(), live_pending.clone());
                                wasm_bindgen_futures::spawn_local(async move {
                                    sleep_ms(50).await;
                                    live_pending.set(false);
                                    *live_count.borrow_mut() += 1;
                                    live_tick.set(*live_count.borrow());
                                });
                            }
                        }
                        // The cache has the final text; library-changed follows.
                        ReplyLive::Done(d) => live.end(&d.message_id),
                    }
                })
                .await;
                if let Ok(sub) = sub {
                    *slot.borrow_mut() = Some(sub);
                }
            });
            move || drop(keep)
        });
    }

    {
        let tick = tick.clone();
        let open_tick = open_tick.clone();
        let selected_now = selected_now.clone();
        let counters = counters.clone();
        let changes = changes.clone();
        use_effect_with((), move |_| {
            let keep = Rc::new(RefCell::new(None));
            let slot = keep.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let sub = ipc::listen::<LibraryChangedEvent>(move |change| {
                    changes.record(&change.conversation_ids);
                    let mut counters = counters.borrow_mut();
                    counters.0 += 1;
                    tick.set(counters.0);
                    let open = selected_now.borrow().clone();
                    let touches_open = change.conversation_ids.is_empty()
                        || open.is_some_and(|id| change.conversation_ids.contains(&id));
                    if touches_open {
                        counters.1 += 1;
                        open_tick.set(counters.1);
                    }
                })
                .await;
                if let Ok(sub) = sub {
                    *slot.borrow_mut() = Some(sub);
                }
            });
            move || drop(keep)
        });
    }

    let notify = {
        let toast = toast.clone();
        Callback::from(move |t: Toast| toast.set(Some(t)))
    };
    let error = {
        let toast = toast.clone();
        Callback::from(move |e: ErrorBody| {
            toast.set(Some(Toast {
                message: e.message,
                undo: None,
            }))
        })
    };
    let select = {
        let selected = selected.clone();
        Callback::from(move |id: Option<String>| selected.set(id))
    };
    let delete = {
        let notify = notify.clone();
        let error = error.clone();
        let selected = selected.clone();
        Callback::from(move |id: String| {
            let notify = notify.clone();
            let error = error.clone();
            let selected = selected.clone();
            wasm_bindgen_futures::spawn_local(async move {
                match ipc::invoke::<DeleteConversation>(&ById { id: id.clone() }).await {
                    Ok(()) => {
                        if selected.as_deref() == Some(id.as_str()) {
                            selected.set(None);
                        }
                        notify.emit(Toast {
                            message: "Conversation deleted.".into(),
                            undo: Some(id),
                        });
                    }
                    Err(e) => error.emit(e),
                }
            });
        })
    };

    // Keyboard: Ctrl/Cmd+N new, Ctrl/Cmd+K or / search, Alt+Up/Down move
    // through the list (handled by the sidebar through a custom event).
    {
        let select = select.clone();
        let error = error.clone();
        use_effect_with((), move |_| {
            listen_keys(move |e: KeyboardEvent| {
                let modifier = e.ctrl_key() || e.meta_key();
                let key = e.key();
                if modifier && key.eq_ignore_ascii_case("n") {
                    e.prevent_default();
                    new_conversation(select.clone(), error.clone());
                } else if (modifier && key.eq_ignore_ascii_case("k")) || (key == "/" && !typing(&e))
                {
                    e.prevent_default();
                    focus("#search");
                }
            })
        });
    }

    let ctx = Ctx {
        tick: *tick,
        changes,
        open_tick: *open_tick,
        selected: (*selected).clone(),
        select,
        notify,
        error,
        delete,
        assistant: (*assistant).clone(),
        live,
        live_tick: *live_tick,
    };

    // A toast goes by itself after 10 s (Undo with it), unless another one
    // replaced it meanwhile.
    {
        let toast = toast.clone();
        use_effect_with((*toast).clone(), move |shown| {
            let mut timer = None;
            if let Some(shown) = shown.clone() {
                let current = toast.clone();
                let close = Closure::once(move || {
                    if current.as_ref() == Some(&shown) {
                        current.set(None);
                    }
                });
                timer = web_sys::window().and_then(|w| {
                    w.set_timeout_with_callback_and_timeout_and_arguments_0(
                        close.as_ref().unchecked_ref(),
                        10_000,
                    )
                    .ok()
                    .map(|id| (id, close))
                });
            }
            move || {
                if let (Some((id, _close)), Some(window)) = (timer, web_sys::window()) {
                    window.clear_timeout_with_handle(id);
                }
            }
        });
    }

    let toast_view = (*toast).clone().map(|t| {
        let close = {
            let toast = toast.clone();
            Callback::from(move |_: MouseEvent| toast.set(None))
        };
        let undo = t.undo.clone().map(|id| {
            let toast = toast.clone();
            let select = ctx.select.clone();
            let error = ctx.error.clone();
            Callback::from(move |_: MouseEvent| {
                let toast = toast.clone();
                let select = select.clone();
                let error = error.clone();
                let id = id.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    match ipc::invoke::<RestoreConversation>(&ById { id: id.clone() }).await {
                        Ok(_) => {
                            toast.set(None);
                            select.emit(Some(id));
                        }
                        Err(e) => error.emit(e),
                    }
                });
            })
        });
        html! {
            <div id="toast" class="toast" role="status">
                <span>{ t.message }</span>
                if let Some(undo) = undo {
                    <button id="undo" class="link" type="button" onclick={undo}>{ "Undo" }</button>
                }
                <button class="link" type="button" aria-label="Dismiss" onclick={close}>{ "✕" }</button>
            </div>
        }
    });

    html! {
        <div class="workspace">
            <sidebar::Sidebar ctx={ctx.clone()} />
            <pane::Pane ctx={ctx} />
            { toast_view.unwrap_or_default() }
        </div>
    }
}

/// Waits `ms` milliseconds.
pub async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        if let Some(window) = web_sys::window() {
            let _ = window.set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}

/// Creates a conversation and opens it (the New button and Ctrl+N).
pub fn new_conversation(select: Callback<Option<String>>, error: Callback<ErrorBody>) {
    wasm_bindgen_futures::spawn_local(async move {
        match ipc::invoke::<CreateConversation>(&CreateArgs::default()).await {
            Ok(item) => select.emit(Some(item.conversation.id)),
            Err(e) => error.emit(e),
        }
    });
}

/// Calls `handler` for every key press in the window; the returned function
/// (an effect's cleanup) stops listening.
pub fn listen_keys(handler: impl FnMut(KeyboardEvent) + 'static) -> impl FnOnce() {
    let handler = Closure::<dyn FnMut(KeyboardEvent)>::new(handler);
    let document = web_sys::window().and_then(|w| w.document());
    if let Some(doc) = &document {
        let _ = doc.add_event_listener_with_callback("keydown", handler.as_ref().unchecked_ref());
    }
    move || {
        if let Some(doc) = &document {
            let _ = doc
                .remove_event_listener_with_callback("keydown", handler.as_ref().unchecked_ref());
        }
    }
}

/// Whether a key press is typing into a field.
fn typing(e: &KeyboardEvent) -> bool {
    e.target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .map(|el| matches!(el.tag_name().as_str(), "INPUT" | "TEXTAREA"))
        .unwrap_or(false)
}

pub fn focus(selector: &str) {
    if let Some(el) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.query_selector(selector).ok().flatten())
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
    {
        let _ = el.focus();
    }
}
