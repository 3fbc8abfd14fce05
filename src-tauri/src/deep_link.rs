//! Deep links (`app.confab.desktop://...`): received while running (forwarded by
//! single-instance) and at launch (a cold start by the link itself, which fires
//! before any listener exists, so it is read with `get_current`). Every link
//! goes to the session, which decides what it is; nothing here logs a query
//! string (it may carry an authorization code).

use tauri::{AppHandle, Runtime};
use tauri_plugin_deep_link::DeepLinkExt;

use crate::session::Links;

pub fn install<R: Runtime>(app: &AppHandle<R>, links: Links) {
    let deep_link = app.deep_link();

    // In development the app is not installed from a package, so nothing has told
    // the desktop about the scheme yet: register it for this user.
    #[cfg(all(debug_assertions, any(target_os = "linux", windows)))]
    if let Err(err) = deep_link.register_all() {
        log::warn!("could not register the app.confab.desktop:// handler: {err}");
    }

    let forward = links.clone();
    deep_link.on_open_url(move |event| {
        for url in event.urls() {
            log::info!("deep link received while running");
            forward.deliver(url);
        }
    });
    match deep_link.get_current() {
        Ok(Some(urls)) => {
            for url in urls {
                log::info!("deep link received at launch");
                links.deliver(url);
            }
        }
        Ok(None) => {}
        Err(err) => log::warn!("could not read the launch deep link: {err}"),
    }
}
