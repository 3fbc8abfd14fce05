//! A blank Tauri window: Tauri 2 and the system webview showing
//! `about:blank`, with none of Confab's plugins, commands or UI. Built with
//! the app's toolchain and profile, it is what the desktop benchmark measures
//! the app's memory against:
//!
//!   cargo build --release -p confab-desktop --example blank

use tauri::utils::config::WebviewUrl;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut context = tauri::generate_context!();
    let config = context.config_mut();
    // Never mistaken for the app: its own name on the bus and its own folders.
    config.identifier = "app.confab.blank".into();
    for window in &mut config.app.windows {
        window.title = "Blank".into();
        window.url = WebviewUrl::External("about:blank".parse()?);
    }
    tauri::Builder::default().run(context)?;
    Ok(())
}
