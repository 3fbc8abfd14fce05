//! The first screen a signed-out user sees.

use yew::prelude::*;

use crate::app::BuildState;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub build: BuildState,
}

#[function_component(SignIn)]
pub fn sign_in(props: &Props) -> Html {
    html! {
        <main class="sign-in" aria-labelledby="sign-in-title">
            <section class="card">
                <img class="logo" src="confab.svg" alt="" width="72" height="72" />
                <h1 id="sign-in-title">{ "Welcome to Confab" }</h1>
                <p class="tagline">
                    { "Your conversations on every device: instant, searchable, and there even when you are offline." }
                </p>
                <button
                    id="continue-in-browser"
                    class="primary"
                    type="button"
                    disabled=true
                    aria-describedby="sign-in-note"
                >
                    { "Continue in browser" }
                </button>
                <p id="sign-in-note" class="note">
                    { "You will sign in with your own browser, never inside the app. Sign-in is not configured in this build yet." }
                </p>
            </section>
            <BuildFooter build={props.build.clone()} />
        </main>
    }
}

#[derive(Properties, PartialEq)]
struct FooterProps {
    build: BuildState,
}

#[function_component(BuildFooter)]
fn build_footer(props: &FooterProps) -> Html {
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
