//! A notice from the shell: what happened and what to do next.

use confab_wire::auth::{Notice, NoticeLevel};
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub notice: Option<Notice>,
}

#[function_component(NoticeView)]
pub fn notice_view(props: &Props) -> Html {
    let Some(notice) = &props.notice else {
        return html! {};
    };
    let (class, role) = match notice.level {
        NoticeLevel::Info => ("notice info", "status"),
        NoticeLevel::Warning => ("notice warning", "status"),
        NoticeLevel::Error => ("notice error", "alert"),
    };
    html! {
        <p id="auth-notice" {class} {role} data-level={format!("{:?}", notice.level).to_lowercase()}>
            { &notice.message }
        </p>
    }
}
