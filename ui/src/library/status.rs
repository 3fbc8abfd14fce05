//! The sync status in the header: online / syncing / offline / N pending /
//! failed with retry, and when the cache last caught up.

use std::cell::RefCell;
use std::rc::Rc;

use confab_wire::ipc::{GetSyncStatus, NoArgs, SyncNow, SyncStatusChanged};
use confab_wire::library::{Connection, SyncStatus};
use yew::prelude::*;

use crate::ipc;

#[function_component(StatusBadge)]
pub fn status_badge() -> Html {
    let status = use_state(|| None::<SyncStatus>);
    {
        let status = status.clone();
        use_effect_with((), move |_| {
            let keep = Rc::new(RefCell::new(None));
            let slot = keep.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let on_change = status.clone();
                // An event is newer than the first read: it wins.
                let heard = Rc::new(std::cell::Cell::new(false));
                let heard_event = heard.clone();
                if let Ok(sub) = ipc::listen::<SyncStatusChanged>(move |s| {
                    heard_event.set(true);
                    on_change.set(Some(s))
                })
                .await
                {
                    *slot.borrow_mut() = Some(sub);
                }
                if let Ok(now) = ipc::invoke::<GetSyncStatus>(&NoArgs {}).await
                    && !heard.get()
                {
                    status.set(Some(now));
                }
            });
            move || drop(keep)
        });
    }
    let Some(s) = (*status).clone() else {
        return html! {};
    };
    let sync_now = Callback::from(|_: MouseEvent| {
        wasm_bindgen_futures::spawn_local(async {
            let _ = ipc::invoke::<SyncNow>(&NoArgs {}).await;
        });
    });
    let (class, label) = match s.connection {
        Connection::Syncing => ("syncing", "Syncing…".to_owned()),
        Connection::Offline => ("offline", "Offline".to_owned()),
        Connection::SignedOut => ("offline", "Signed out".to_owned()),
        Connection::Online => ("online", "Online".to_owned()),
    };
    let mut detail = Vec::new();
    if s.pending > 0 {
        detail.push(format!("{} pending", s.pending));
    }
    if s.failed > 0 {
        detail.push(format!("{} failed", s.failed));
    }
    if detail.is_empty()
        && let Some(at) = &s.last_synced_at
    {
        detail.push(format!("synced {}", short_time(at.timestamp_millis())));
    }
    let title = match (&s.last_synced_at, &s.last_error) {
        (_, Some(error)) => error.clone(),
        (Some(at), None) => format!("Last synced {}", local_time(at.timestamp_millis())),
        (None, None) => "Not synced yet".to_owned(),
    };
    let retry = s.failed > 0 || s.connection == Connection::Offline;
    html! {
        <div id="sync-status" class={classes!("sync-status", class)} title={title.clone()} role="status">
            <span class="dot" aria-hidden="true"></span>
            <span id="sync-label">{ label }</span>
            if !detail.is_empty() {
                <span id="sync-detail" class="muted">{ format!(" · {}", detail.join(", ")) }</span>
            }
            if retry {
                <button id="sync-retry" class="link" type="button" onclick={sync_now} aria-label="Retry sync now">{ "Retry" }</button>
            }
        </div>
    }
}

/// "14:05" in the user's locale.
fn short_time(millis: i64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(millis as f64));
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&options, &"hour".into(), &"2-digit".into());
    let _ = js_sys::Reflect::set(&options, &"minute".into(), &"2-digit".into());
    date.to_locale_time_string_with_options("default", &options)
        .into()
}

fn local_time(millis: i64) -> String {
    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(millis as f64));
    date.to_locale_time_string("default").into()
}
