//! What build is running: version, commit, platform, runtime versions.

use confab_wire::app::AppInfo;

pub const NAME: &str = "Confab";
/// Set by build.rs from `git rev-parse`.
pub const COMMIT: &str = env!("CONFAB_COMMIT");

/// `version` is the app's package version (`tauri.conf.json`, which a release
/// build may override), the one the updater compares against.
pub fn current(version: &str) -> AppInfo {
    AppInfo {
        name: NAME.to_owned(),
        version: version.to_owned(),
        commit: COMMIT.to_owned(),
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .to_owned(),
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        tauri_version: tauri::VERSION.to_owned(),
        // Asking the system webview for its version can fail on a broken install;
        // the app still runs, so this is informative only.
        webview_version: tauri::webview_version().ok(),
    }
}
