//! Typed access to the desktop shell: invoke commands and listen to events.
//!
//! The command names and payload types come from `confab_wire::ipc`, shared with
//! the shell, so a call here cannot name a command that does not exist or expect
//! a shape the shell does not send. Failures arrive as [`ErrorBody`].

use confab_wire::ipc::{Command, Event};
use confab_wire::{ErrorBody, ErrorCode};
use serde::Serialize;
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_namespace = ["window", "__TAURI__", "core"], js_name = invoke)]
    async fn tauri_invoke(cmd: &str, args: JsValue) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(catch, js_namespace = ["window", "__TAURI__", "event"], js_name = listen)]
    async fn tauri_listen(
        event: &str,
        handler: &Closure<dyn FnMut(JsValue)>,
    ) -> Result<JsValue, JsValue>;
}

/// Invokes command `C` with `args` and decodes its answer.
pub async fn invoke<C: Command>(args: &C::Args) -> Result<C::Output, ErrorBody> {
    // Sent as one parameter, `args`, typed by `C::Args` on both sides
    // (unknown fields refused there); commands without arguments ignore it.
    let args = to_js(&Wrapped { args }).map_err(|e| {
        ErrorBody::new(
            ErrorCode::Internal,
            format!("could not encode the arguments of {}: {e}", C::NAME),
        )
    })?;
    match tauri_invoke(C::NAME, args).await {
        Ok(value) => {
            count(&value);
            serde_wasm_bindgen::from_value(value).map_err(|e| {
                ErrorBody::new(
                    ErrorCode::Internal,
                    format!("the app answered {} with an unexpected shape: {e}", C::NAME),
                )
            })
        }
        Err(value) => Err(error_from_js(C::NAME, value)),
    }
}

/// Counts what the shell sends the UI (answers and event payloads, as JSON
/// bytes) into `window.__confabIpcCount = {calls, bytes}`, only while
/// something (the desktop benchmark) has put that object there: off, it
/// costs one property lookup.
fn count(value: &JsValue) {
    let Some(window) = web_sys::window() else {
        return;
    };
    let key = JsValue::from_str("__confabIpcCount");
    let Ok(counter) = js_sys::Reflect::get(&window, &key) else {
        return;
    };
    if !counter.is_object() {
        return;
    }
    let bytes = js_sys::JSON::stringify(value)
        .ok()
        .and_then(|s| s.as_string())
        .map_or(0, |s| s.len());
    let add = |field: &str, by: f64| {
        let field = JsValue::from_str(field);
        let now = js_sys::Reflect::get(&counter, &field)
            .ok()
            .and_then(|v| v.as_f64())
            .unwrap_or(0.0);
        let _ = js_sys::Reflect::set(&counter, &field, &JsValue::from_f64(now + by));
    };
    add("calls", 1.0);
    add("bytes", bytes as f64);
}

/// A live event subscription; dropping it stops listening.
pub struct Subscription {
    unlisten: js_sys::Function,
    // Kept alive for as long as the shell may call it.
    _handler: Closure<dyn FnMut(JsValue)>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.unlisten.call0(&JsValue::NULL);
    }
}

/// Calls `on` with the payload of every `E` the shell emits, until the returned
/// [`Subscription`] is dropped. Payloads that do not decode are skipped (and
/// reported on the console) rather than crashing the UI.
pub async fn listen<E: Event + 'static>(
    mut on: impl FnMut(E::Payload) + 'static,
) -> Result<Subscription, ErrorBody> {
    let handler = Closure::<dyn FnMut(JsValue)>::new(move |event: JsValue| {
        let payload = js_sys::Reflect::get(&event, &JsValue::from_str("payload"))
            .unwrap_or(JsValue::UNDEFINED);
        count(&payload);
        match serde_wasm_bindgen::from_value::<E::Payload>(payload) {
            Ok(payload) => on(payload),
            Err(err) => web_sys::console::warn_1(
                &format!("ignored a malformed {} event: {err}", E::NAME).into(),
            ),
        }
    });
    let unlisten = tauri_listen(E::NAME, &handler)
        .await
        .map_err(|value| error_from_js(E::NAME, value))?;
    let unlisten = unlisten.dyn_into::<js_sys::Function>().map_err(|_| {
        ErrorBody::new(
            ErrorCode::Internal,
            format!(
                "listening to {} did not return an unlisten function",
                E::NAME
            ),
        )
    })?;
    Ok(Subscription {
        unlisten,
        _handler: handler,
    })
}

#[derive(Serialize)]
struct Wrapped<'a, T> {
    args: &'a T,
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, serde_wasm_bindgen::Error> {
    // Plain objects rather than JS Maps: the shell decodes JSON.
    value.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
}

/// Commands reject with an `ErrorBody`; Tauri itself rejects with a string (for
/// example when a command is not allowed). Both become an `ErrorBody`.
fn error_from_js(name: &str, value: JsValue) -> ErrorBody {
    if let Ok(body) = serde_wasm_bindgen::from_value::<ErrorBody>(value.clone()) {
        return body;
    }
    let detail = value.as_string().unwrap_or_else(|| "no details".to_owned());
    ErrorBody::new(
        ErrorCode::Internal,
        format!("the app could not run {name}: {detail}"),
    )
}
