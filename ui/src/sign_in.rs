//! The signed-out screen: "Continue in browser", then a waiting state with
//! cancel while the user signs in in their own browser.

use confab_wire::ErrorBody;
use confab_wire::ErrorCode;
use confab_wire::auth::{AuthState, Notice};
use confab_wire::ipc::{CancelSignIn, NoArgs, SignIn as SignInCommand, SignInLink};
use yew::prelude::*;

use crate::app::BuildState;
use crate::ipc;
use crate::notice::NoticeView;
use crate::updates::{UpdateBanner, UpdateCheck};
use confab_wire::updates::UpdateState;

/// A command that answers the new state.
type StateFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<AuthState, ErrorBody>>>>;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub build: BuildState,
    /// `None` while the shell has not answered yet.
    pub state: Option<AuthState>,
    pub update: Option<UpdateState>,
}

#[function_component(SignIn)]
pub fn sign_in(props: &Props) -> Html {
    // An error from the last button press (the shell's state has its own notice).
    let error = use_state(|| None::<ErrorBody>);
    let busy = use_state(|| false);
    // No browser could be opened: the link to paste into one, and whether
    // it was copied.
    let manual = use_state(|| None::<String>);
    let copied = use_state(|| false);
    {
        // A new state from the shell replaces an older button error; the
        // manual link lasts while the attempt waits.
        let error = error.clone();
        let manual = manual.clone();
        let waiting = matches!(props.state, Some(AuthState::Waiting { .. }));
        use_effect_with(props.state.clone(), move |_| {
            if !(waiting
                && error
                    .as_ref()
                    .is_some_and(|e| e.code == ErrorCode::BrowserUnavailable))
            {
                error.set(None);
            }
            if !waiting {
                manual.set(None);
            }
        });
    }

    let run = |command: fn() -> StateFuture| {
        let error = error.clone();
        let busy = busy.clone();
        let manual = manual.clone();
        Callback::from(move |_: MouseEvent| {
            let error = error.clone();
            let busy = busy.clone();
            let manual = manual.clone();
            busy.set(true);
            wasm_bindgen_futures::spawn_local(async move {
                // The new state arrives as an event; only a failure is ours to show.
                if let Err(err) = command().await {
                    if err.code == ErrorCode::BrowserUnavailable
                        && let Ok(Some(link)) = ipc::invoke::<SignInLink>(&NoArgs {}).await
                    {
                        manual.set(Some(link));
                    }
                    error.set(Some(err));
                }
                busy.set(false);
            });
        })
    };
    let start = run(|| Box::pin(ipc::invoke::<SignInCommand>(&NoArgs {})));
    let cancel = run(|| Box::pin(ipc::invoke::<CancelSignIn>(&NoArgs {})));

    let error_notice = (*error).as_ref().map(|e| Notice::error(e.message.clone()));

    let body = match &props.state {
        None => html! { <p class="note muted">{ "Loading…" }</p> },
        Some(AuthState::NotConfigured { message }) => html! {
            <>
                <button id="continue-in-browser" class="primary" type="button" disabled=true>
                    { "Continue in browser" }
                </button>
                <p id="setup-message" class="notice warning" role="status">{ message }</p>
            </>
        },
        Some(AuthState::SignedOut { notice }) => html! {
            <>
                <NoticeView notice={error_notice.or_else(|| notice.clone())} />
                <button
                    id="continue-in-browser"
                    class="primary"
                    type="button"
                    disabled={*busy}
                    onclick={start}
                    aria-describedby="sign-in-note"
                >
                    { if *busy { "Opening your browser…" } else { "Continue in browser" } }
                </button>
                <p id="sign-in-note" class="note">
                    { "You will sign in with your own browser, never inside the app." }
                </p>
            </>
        },
        Some(AuthState::Waiting { notice, .. }) => html! {
            <div id="waiting" aria-live="polite">
                if let Some(link) = (*manual).clone() {
                    <div id="manual-sign-in" class="manual-sign-in">
                        <p>{ "Your browser could not be opened. Copy this sign-in link into any browser; once you have signed in there, Confab continues by itself." }</p>
                        <p id="sign-in-link" class="sign-in-link">{ link.clone() }</p>
                        <button id="copy-sign-in-link" class="primary" type="button" onclick={{
                            let copied = copied.clone();
                            move |_: MouseEvent| {
                                if let Some(window) = web_sys::window() {
                                    let _ = window.navigator().clipboard().write_text(&link);
                                }
                                copied.set(true);
                            }
                        }}>{ if *copied { "Copied" } else { "Copy sign-in link" } }</button>
                    </div>
                } else {
                    <NoticeView notice={error_notice.or_else(|| notice.clone())} />
                }
                <p class="waiting"><span class="spinner" aria-hidden="true"></span>
                    { "Finish signing in in your browser, then come back here." }</p>
                <button id="reopen-browser" class="secondary" type="button" onclick={start} disabled={*busy}>
                    { "Open the browser again" }
                </button>
                <button id="cancel-sign-in" class="link" type="button" onclick={cancel} disabled={*busy}>
                    { "Cancel" }
                </button>
            </div>
        },
        Some(AuthState::Completing) | Some(AuthState::SignedIn { .. }) => html! {
            <p id="completing" class="waiting" aria-live="polite">
                <span class="spinner" aria-hidden="true"></span>{ "Signing you in…" }
            </p>
        },
    };

    html! {
        <main class="sign-in" aria-labelledby="sign-in-title">
            <UpdateBanner state={props.update.clone()} />
            <section class="card">
                <img class="logo" src="confab.svg" alt="" width="72" height="72" />
                <h1 id="sign-in-title">{ "Welcome to Confab" }</h1>
                <p class="tagline">
                    { "Your conversations on every device: instant, searchable, and there even when you are offline." }
                </p>
                { body }
            </section>
            <BuildFooter build={props.build.clone()} />
            <UpdateCheck state={props.update.clone()} />
        </main>
    }
}

#[derive(Properties, PartialEq)]
pub struct FooterProps {
    pub build: BuildState,
}

#[function_component(BuildFooter)]
pub fn build_footer(props: &FooterProps) -> Html {
    let content = match &props.build {
        BuildState::Loading => html! { <span class="muted">{ "Loading…" }</span> },
        BuildState::Ready(info) => html! {
            <>
                <span id="app-version">{ format!("{} {}", info.name, info.version) }</span>
                <span class="sep" aria-hidden="true">{ "·" }</span>
                <span id="app-commit" title="Build commit">{ &info.commit }</span>
                <span class="sep" aria-hidden="true">{ "·" }</span>
                <span id="app-platform">{ format!("{}/{}", info.os, info.arch) }</span>
                <span class="sep" aria-hidden="true">{ "·" }</span>
                <span id="app-runtime">{ format!("Tauri {}", info.tauri_version) }</span>
            </>
        },
        BuildState::Failed(err) => html! {
            <span id="app-info-error" role="alert" class="error">
                { format!("Could not read the app's build information: {}", err.message) }
            </span>
        },
    };
    html! { <footer class="build-info" aria-label="About this build">{ content }</footer> }
}
