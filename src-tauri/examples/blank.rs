//! A blank Tauri window: Tauri 2 and the system webview showing an empty
//! page, with none of Confab's plugins, commands or UI. Built with the app's
//! toolchain and profile, it is what the desktop benchmark measures the app's
//! memory against:
//!
//!   cargo build --release -p confab-desktop --example blank

use tauri::utils::config::WebviewUrl;

/// An empty document: not `about:blank`, which WebKit shows without the web
/// process every real page has.
const PAGE: &[u8] = b"<!doctype html><title>Blank</title>";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut context = tauri::generate_context!();
    let config = context.config_mut();
    // Never mistaken for the app: its own name on the bus and its own folders.
    config.identifier = "app.confab.blank".into();
    for window in &mut config.app.windows {
        window.title = "Blank".into();
        window.url = WebviewUrl::External("blank://localhost/".parse()?);
    }
    tauri::Builder::default()
        .register_uri_scheme_protocol("blank", |_, _| {
            tauri::http::Response::builder()
                .header("content-type", "text/html")
                .body(PAGE.to_vec())
                .unwrap_or_default()
        })
        .run(context)?;
    Ok(())
}
