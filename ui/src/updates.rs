//! Self-update in the UI: a banner when a new version is offered (with its
//! notes, progress while downloading, and what went wrong), and a "Check for
//! updates" control with its last result. The shell decides everything; this
//! only shows [`UpdateState`] and sends the user's choices.

use confab_wire::ipc::{
    CheckForUpdates, DismissUpdate, GetUpdateState, InstallUpdate, NoArgs, UpdateChanged,
};
use confab_wire::updates::{AvailableUpdate, UpdateState};
use yew::prelude::*;

use crate::ipc;

/// Follows the shell's update state: listen first, then read, like sign-in.
#[hook]
pub fn use_update_state() -> Option<UpdateState> {
    let state = use_state(|| None::<UpdateState>);
    {
        let state = state.clone();
        use_effect_with((), move |_| {
            let subscription = std::rc::Rc::new(std::cell::RefCell::new(None));
            let keep = subscription.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let heard = std::rc::Rc::new(std::cell::Cell::new(false));
                let on_change = state.clone();
                let heard_event = heard.clone();
                match ipc::listen::<UpdateChanged>(move |next| {
                    heard_event.set(true);
                    on_change.set(Some(next));
                })
                .await
                {
                    Ok(sub) => *keep.borrow_mut() = Some(sub),
                    Err(err) => web_sys::console::error_1(&err.message.into()),
                }
                if let Ok(first) = ipc::invoke::<GetUpdateState>(&NoArgs {}).await
                    && !heard.get()
                {
                    state.set(Some(first));
                }
            });
            move || drop(subscription)
        });
    }
    (*state).clone()
}

#[derive(Properties, PartialEq)]
pub struct Props {
    pub state: Option<UpdateState>,
}

/// A command call whose answer arrives as an event; only a refusal matters.
type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>>>>;

/// Runs a command whose answer arrives as an event; only a refusal is shown.
fn send(error: UseStateHandle<Option<String>>, run: fn() -> Pending) -> Callback<MouseEvent> {
    Callback::from(move |_| {
        let error = error.clone();
        error.set(None);
        wasm_bindgen_futures::spawn_local(async move {
            if let Err(message) = run().await {
                error.set(Some(message));
            }
        });
    })
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

/// The offer, the progress or the failure, above the rest of the window.
#[function_component(UpdateBanner)]
pub fn update_banner(props: &Props) -> Html {
    let error = use_state(|| None::<String>);
    let install = send(error.clone(), || {
        Box::pin(async {
            ipc::invoke::<InstallUpdate>(&NoArgs {})
                .await
                .map_err(|e| e.message)
        })
    });
    let dismiss = send(error.clone(), || {
        Box::pin(async {
            ipc::invoke::<DismissUpdate>(&NoArgs {})
                .await
                .map(|_| ())
                .map_err(|e| e.message)
        })
    });
    let refusal = (*error).as_ref().map(|message| {
        html! { <p id="update-error" class="error" role="alert">{ message }</p> }
    });
    let heading = |update: &AvailableUpdate| {
        html! {
            <p class="update-title">
                <strong id="update-version">{ format!("Confab {}", update.version) }</strong>
                { format!(" is available (you have {}).", update.current) }
            </p>
        }
    };
    let body = match &props.state {
        Some(UpdateState::Available(update)) => html! {
            <>
                { heading(update) }
                if let Some(notes) = &update.notes {
                    // Release notes are shown as text, never as markup.
                    <p id="update-notes" class="update-notes">{ notes }</p>
                }
                if let Some(why) = &update.failed_before {
                    <p id="update-failed-before" class="note">{ format!("Installing it failed before: {why}") }</p>
                }
                <div class="update-actions">
                    <button id="install-update" class="primary" type="button" onclick={install}>{ "Install and restart" }</button>
                    <button id="dismiss-update" class="secondary" type="button" onclick={dismiss}>{ "Later" }</button>
                </div>
            </>
        },
        Some(UpdateState::Downloading {
            update,
            received,
            total,
        }) => {
            let label = match total {
                Some(total) => format!(
                    "Downloading Confab {}: {} of {}",
                    update.version,
                    megabytes(*received),
                    megabytes(*total)
                ),
                None => format!(
                    "Downloading Confab {}: {}",
                    update.version,
                    megabytes(*received)
                ),
            };
            html! {
                <>
                    <p id="update-progress-label">{ &label }</p>
                    if let Some(total) = total {
                        <progress id="update-progress" aria-label={label.clone()} max={total.to_string()} value={received.to_string()}></progress>
                    } else {
                        <progress id="update-progress" aria-label={label.clone()}></progress>
                    }
                </>
            }
        }
        Some(UpdateState::Installing { update }) => html! {
            <p id="update-installing" class="waiting"><span class="spinner" aria-hidden="true"></span>
                { format!("Installing Confab {}… Your system may ask for your password.", update.version) }</p>
        },
        Some(UpdateState::Restarting { update }) => html! {
            <p id="update-restarting" class="waiting"><span class="spinner" aria-hidden="true"></span>
                { format!("Restarting into Confab {}…", update.version) }</p>
        },
        Some(UpdateState::InstallFailed { update, message }) => html! {
            <>
                <p id="update-failed" class="error" role="alert">{ message }</p>
                <p class="note">{ format!("Confab {} keeps running; your data is untouched.", update.current) }</p>
                <div class="update-actions">
                    <button id="dismiss-update" class="secondary" type="button" onclick={dismiss}>{ "Dismiss" }</button>
                </div>
            </>
        },
        Some(UpdateState::UpToDate {
            current,
            updated_from: Some(from),
        }) => html! {
            <p id="update-done">{ format!("Confab was updated to {current} (from {from}).") }</p>
        },
        _ => return html! {},
    };
    html! {
        <section id="update-banner" class="update-banner" aria-label="App update" aria-live="polite">
            { body }
            { for refusal }
        </section>
    }
}

/// "Check for updates" and what the last check said.
#[function_component(UpdateCheck)]
pub fn update_check(props: &Props) -> Html {
    let error = use_state(|| None::<String>);
    let check = send(error.clone(), || {
        Box::pin(async {
            ipc::invoke::<CheckForUpdates>(&NoArgs {})
                .await
                .map(|_| ())
                .map_err(|e| e.message)
        })
    });
    let (text, class) = match (&*error, &props.state) {
        (Some(message), _) => (message.clone(), "error"),
        (None, Some(UpdateState::Checking { .. })) => ("Checking for updates…".to_owned(), "muted"),
        (None, Some(UpdateState::UpToDate { .. })) => ("Confab is up to date.".to_owned(), "muted"),
        (None, Some(UpdateState::CheckFailed { message, .. })) => {
            (format!("Could not check for updates: {message}"), "error")
        }
        _ => (String::new(), "muted"),
    };
    // A build without updates says so quietly (the reason on hover).
    if let Some(UpdateState::Disabled { reason, .. }) = &props.state {
        return html! {
            <span class="update-check">
                <span id="update-status" class="muted" title={reason.clone()}>{ "Updates off" }</span>
            </span>
        };
    }
    let busy = props.state.as_ref().is_none_or(UpdateState::is_busy);
    html! {
        <span class="update-check">
            <button id="check-updates" class="link" type="button" onclick={check} disabled={busy}>
                { "Check for updates" }
            </button>
            <span id="update-status" class={class} role="status">{ text }</span>
        </span>
    }
}
