//! Deep links (`app.confab.desktop://...`): received while running (forwarded by
//! single-instance) and at launch (a cold start by the link itself, which fires
//! before any listener exists, so it is read with `get_current`).
//!
//! The sign-in flow consumes `oauth/callback` links; until then they are only
//! logged, by path: a query string may carry an authorization code.

use tauri::{AppHandle, Runtime, Url};
use tauri_plugin_deep_link::DeepLinkExt;

pub fn install<R: Runtime>(app: &AppHandle<R>) {
    let deep_link = app.deep_link();

    // In development the app is not installed from a package, so nothing has told
    // the desktop about the scheme yet: register it for this user.
    #[cfg(all(debug_assertions, any(target_os = "linux", windows)))]
    if let Err(err) = deep_link.register_all() {
        log::warn!("could not register the app.confab.desktop:// handler: {err}");
    }

    deep_link.on_open_url(|event| {
        for url in event.urls() {
            received(&url);
        }
    });
    match deep_link.get_current() {
        Ok(Some(urls)) => urls.iter().for_each(received),
        Ok(None) => {}
        Err(err) => log::warn!("could not read the launch deep link: {err}"),
    }
}

fn received(url: &Url) {
    log::info!(
        "deep link received: {}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.path()
    );
}
