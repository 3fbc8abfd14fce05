//! Confab's desktop shell.
//!
//! This crate wires Tauri: the window, the official plugins, and the commands the
//! UI may call. It stays thin: a command maps its arguments onto a module that can
//! be tested without a window, and maps the result back. See ARCHITECTURE.md.

pub mod build_info;
pub mod commands;
mod deep_link;
mod events;
mod logging;
mod private;
pub mod profile;
pub mod session;
pub mod updates;

use tauri::{Manager, Runtime};

/// Registers every command of the IPC contract ([`confab_wire::ipc::COMMANDS`]).
/// Shared by the real app and the mock-runtime tests, so both see the same handler.
pub fn with_commands<R: Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    builder.invoke_handler(tauri::generate_handler![
        commands::app_info,
        commands::auth_state,
        commands::sign_in,
        commands::sign_in_link,
        commands::cancel_sign_in,
        commands::sign_out,
        commands::conversations::list_conversations,
        commands::conversations::get_conversation,
        commands::conversations::get_messages,
        commands::conversations::get_list_items,
        commands::conversations::create_conversation,
        commands::conversations::update_conversation,
        commands::conversations::delete_conversation,
        commands::conversations::restore_conversation,
        commands::conversations::append_message,
        commands::assistant::ask_reply,
        commands::assistant::stop_reply,
        commands::assistant::assistant_info,
        commands::conversations::search_conversations,
        commands::conversations::export_conversation,
        commands::conversations::sync_status,
        commands::conversations::sync_now,
        commands::conversations::retry_failed,
        commands::conversations::discard_failed,
        commands::conversations::open_link,
        commands::updates::update_state,
        commands::updates::check_for_updates,
        commands::updates::install_update,
        commands::updates::dismiss_update,
    ])
}

/// Builds and runs the app until its last window closes.
///
/// Must not run inside a Tokio runtime: the single-instance plugin starts its own
/// D-Bus machinery and panics when nested.
pub fn run(profile: profile::Profile) -> Result<(), tauri::Error> {
    // Before any plugin or the webview creates a file.
    private::restrict_new_files();
    let mut context = tauri::generate_context!();
    if let Some(name) = profile.name() {
        // Its own identifier: its own single-instance name, folders and
        // window title, so it runs next to the default one as another device.
        let config = context.config_mut();
        config.identifier = profile.identifier(&config.identifier);
        for window in &mut config.app.windows {
            window.title = format!("{} ({name})", window.title);
        }
    }
    // Single-instance must be the first plugin: a second launch (for example the
    // OS opening a deep link) hands its arguments to us and exits before anything
    // else starts. With its deep-link feature it forwards the URL to the
    // deep-link plugin's listeners.
    let builder = tauri::Builder::default()
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            log::info!(
                "another launch was forwarded to this instance ({} arguments)",
                argv.len()
            );
            if let Some(window) = app.get_webview_window("main") {
                let _ = window.unminimize();
                let _ = window.show();
                let _ = window.set_focus();
            }
        }))
        .plugin(tauri_plugin_deep_link::init())
        .plugin(tauri_plugin_opener::init())
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_updater::Builder::new().build())
        .plugin(logging::plugin())
        .setup(move |app| {
            let info = build_info::current(&app.package_info().version.to_string());
            log::info!(
                "Confab {} ({}, {}) on {}/{} starting",
                info.version,
                info.commit,
                info.profile,
                info.os,
                info.arch
            );
            for dir in [app.path().app_data_dir(), app.path().app_log_dir()]
                .into_iter()
                .flatten()
            {
                private::tighten(&dir);
            }
            // The system browser, never a webview (RFC 8252).
            // `open`'s default waits 250 ms for a launcher to fail; a busy
            // machine's xdg-open takes longer to find no browser, and would
            // pass for one that opened. A launcher still running after
            // LAUNCHER_WINDOW has handed the link on.
            app.manage(session::Browser(std::sync::Arc::new(|url| {
                open::that_detached_with_timeout(url, session::LAUNCHER_WINDOW)
                    .map_err(|e| e.to_string())
            })));
            app.manage(session::SaveDialog::system(app.handle()));
            let links = session::install(app.handle(), &profile);
            deep_link::install(app.handle(), links);
            updates::install(app.handle());
            Ok(())
        });
    with_commands(builder).run(context)
}
