//! The signed-in window: a header with who is signed in and sign-out. The
//! conversations fill the rest (they arrive with the local cache).

use confab_wire::ErrorBody;
use confab_wire::auth::{Notice, SignOutArgs, SignOutOutcome, User};
use confab_wire::ipc::SignOut;
use confab_wire::updates::UpdateState;
use yew::prelude::*;

use crate::ipc;
use crate::library::{Library, StatusBadge};
use crate::notice::NoticeView;
use crate::updates::{UpdateBanner, UpdateCheck};

#[derive(Properties, PartialEq)]
pub struct Props {
    pub user: User,
    pub notice: Option<Notice>,
    pub update: Option<UpdateState>,
}

#[function_component(Home)]
pub fn home(props: &Props) -> Html {
    // Writes waiting to sync, when sign-out needs confirming.
    let confirm = use_state(|| None::<u64>);
    let error = use_state(|| None::<ErrorBody>);
    let busy = use_state(|| false);

    let sign_out = {
        let confirm = confirm.clone();
        let error = error.clone();
        let busy = busy.clone();
        move |discard_pending: bool| {
            let confirm = confirm.clone();
            let error = error.clone();
            let busy = busy.clone();
            Callback::from(move |_: MouseEvent| {
                let confirm = confirm.clone();
                let error = error.clone();
                let busy = busy.clone();
                busy.set(true);
                wasm_bindgen_futures::spawn_local(async move {
                    match ipc::invoke::<SignOut>(&SignOutArgs { discard_pending }).await {
                        Ok(SignOutOutcome::NeedsConfirmation { pending }) => {
                            confirm.set(Some(pending))
                        }
                        // The signed-out screen follows from the shell's event.
                        Ok(SignOutOutcome::SignedOut) => confirm.set(None),
                        Err(err) => error.set(Some(err)),
                    }
                    busy.set(false);
                });
            })
        }
    };
    let keep = {
        let confirm = confirm.clone();
        Callback::from(move |_: MouseEvent| confirm.set(None))
    };

    let user = &props.user;
    let avatar = match &user.avatar {
        Some(src) => {
            html! { <img id="user-avatar" class="avatar" src={src.clone()} alt="" width="36" height="36" /> }
        }
        None => {
            html! { <span id="user-avatar" class="avatar initials" aria-hidden="true">{ user.initials() }</span> }
        }
    };
    let notice = (*error)
        .as_ref()
        .map(|e| Notice::error(e.message.clone()))
        .or_else(|| props.notice.clone());

    html! {
        <div class="home">
            <header class="app-header">
                <div class="brand">
                    <img src="confab.svg" alt="" width="28" height="28" />
                    <span>{ "Confab" }</span>
                </div>
                <UpdateCheck state={props.update.clone()} />
                <StatusBadge />
                <div class="account" aria-label="Signed in as">
                    { avatar }
                    <div class="who">
                        <span id="user-name" class="name">{ &user.name }</span>
                        if let Some(email) = &user.email {
                            <span id="user-email" class="email">{ email }</span>
                        }
                    </div>
                    <button id="sign-out" class="secondary" type="button" onclick={sign_out(false)} disabled={*busy}>
                        { "Sign out" }
                    </button>
                </div>
            </header>
            if let Some(pending) = *confirm {
                <div id="confirm-sign-out" class="confirm" role="alertdialog" aria-labelledby="confirm-text">
                    <p id="confirm-text">{ format!(
                        "{pending} change{} not synced yet. Signing out now discards {}.",
                        if pending == 1 { " is" } else { "s are" },
                        if pending == 1 { "it" } else { "them" }
                    ) }</p>
                    <button id="keep-signed-in" class="secondary" type="button" onclick={keep}>{ "Stay signed in" }</button>
                    <button id="discard-and-sign-out" class="danger" type="button" onclick={sign_out(true)}>{ "Discard and sign out" }</button>
                </div>
            }
            <UpdateBanner state={props.update.clone()} />
            <NoticeView {notice} />
            <Library />
        </div>
    }
}
