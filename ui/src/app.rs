//! The root component: loads what the shell knows and picks the screen.

use confab_wire::ErrorBody;
use confab_wire::app::AppInfo;
use confab_wire::auth::AuthState;
use confab_wire::ipc::{AuthChanged, GetAppInfo, GetAuthState, NoArgs};
use yew::prelude::*;

use crate::home::Home;
use crate::ipc;
use crate::sign_in::SignIn;
use crate::updates::use_update_state;

/// What the shell told us about the running build, once it answered.
#[derive(Clone, PartialEq)]
pub enum BuildState {
    Loading,
    Ready(AppInfo),
    Failed(ErrorBody),
}

#[function_component(App)]
pub fn app() -> Html {
    let build = use_state(|| BuildState::Loading);
    // `None` until the shell answers: nothing flashes a wrong screen.
    let auth = use_state(|| None::<AuthState>);
    let update = use_update_state();
    {
        let build = build.clone();
        let auth = auth.clone();
        use_effect_with((), move |_| {
            let subscription = std::rc::Rc::new(std::cell::RefCell::new(None));
            let keep = subscription.clone();
            wasm_bindgen_futures::spawn_local(async move {
                // Listen first, then read: a change between the two is not lost.
                let on_change = auth.clone();
                let heard = std::rc::Rc::new(std::cell::Cell::new(false));
                let heard_event = heard.clone();
                match ipc::listen::<AuthChanged>(move |state| {
                    heard_event.set(true);
                    on_change.set(Some(state))
                })
                .await
                {
                    Ok(sub) => *keep.borrow_mut() = Some(sub),
                    Err(err) => web_sys::console::error_1(&err.message.into()),
                }
                // Events are newer than this answer: it only fills the gap
                // until the first one.
                let first = match ipc::invoke::<GetAuthState>(&NoArgs {}).await {
                    Ok(state) => state,
                    Err(err) => AuthState::NotConfigured {
                        message: err.message,
                    },
                };
                if !heard.get() {
                    auth.set(Some(first));
                }
                build.set(match ipc::invoke::<GetAppInfo>(&NoArgs {}).await {
                    Ok(info) => BuildState::Ready(info),
                    Err(err) => BuildState::Failed(err),
                });
            });
            move || drop(subscription)
        });
    }
    // The screen follows the shell's `auth-changed` events only: a command's
    // answer could be older than an event that overtook it.
    match (*auth).clone() {
        Some(AuthState::SignedIn { user, notice }) => html! {
            <Home {user} {notice} {update} />
        },
        state => html! {
            <SignIn build={(*build).clone()} {state} {update} />
        },
    }
}
