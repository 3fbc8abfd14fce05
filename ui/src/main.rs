//! Confab's UI, running in the system webview.
//!
//! It knows nothing about tokens or the network: everything it shows comes from
//! the desktop shell through the typed IPC module, [`ipc`].

mod app;
mod home;
mod ipc;
mod library;
mod notice;
mod sign_in;
mod updates;

fn main() {
    yew::Renderer::<app::App>::new().render();
}
