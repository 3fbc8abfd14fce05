//! Facts about the running build, shown in the UI and in bug reports.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    /// Product name, "Confab".
    pub name: String,
    /// Semantic version of the desktop app.
    pub version: String,
    /// Short git commit the app was built from, or "unknown" outside a checkout.
    pub commit: String,
    /// "debug" or "release".
    pub profile: String,
    /// Operating system family, as Rust names it ("linux", "macos", "windows").
    pub os: String,
    /// CPU architecture ("x86_64", "aarch64").
    pub arch: String,
    /// Version of the Tauri runtime.
    pub tauri_version: String,
    /// Version of the system webview (WebKitGTK, WKWebView, WebView2), when known.
    pub webview_version: Option<String>,
}
