//! The root component: loads what the shell knows and picks the screen.

use confab_wire::ErrorBody;
use confab_wire::app::AppInfo;
use confab_wire::ipc::{GetAppInfo, NoArgs};
use yew::prelude::*;

use crate::ipc;
use crate::sign_in::SignIn;

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
    {
        let build = build.clone();
        use_effect_with((), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                build.set(match ipc::invoke::<GetAppInfo>(&NoArgs {}).await {
                    Ok(info) => BuildState::Ready(info),
                    Err(err) => BuildState::Failed(err),
                });
            });
        });
    }
    html! { <SignIn build={(*build).clone()} /> }
}
