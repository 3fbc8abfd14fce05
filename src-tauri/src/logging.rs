//! Logging: a rotating file in the app's log dir always, stdout in debug builds.
//!
//! Never log a token, a deep-link query string or message content: the log file is
//! attached to bug reports.

use tauri::Runtime;
use tauri::plugin::TauriPlugin;
use tauri_plugin_log::{RotationStrategy, Target, TargetKind};

/// 5 files of 2 MB keep a few days of history without growing unbounded.
const MAX_FILE_BYTES: u128 = 2 * 1024 * 1024;
const KEEP_FILES: usize = 5;

pub fn plugin<R: Runtime>() -> TauriPlugin<R> {
    let mut targets = vec![Target::new(TargetKind::LogDir {
        file_name: Some("confab".into()),
    })];
    if cfg!(debug_assertions) {
        targets.push(Target::new(TargetKind::Stdout));
    }
    tauri_plugin_log::Builder::new()
        .clear_targets()
        .targets(targets)
        .level(log::LevelFilter::Info)
        // D-Bus handshakes (single-instance, the keyring) are noise at info.
        .level_for("zbus", log::LevelFilter::Warn)
        .level_for("tracing", log::LevelFilter::Warn)
        .max_file_size(MAX_FILE_BYTES)
        .rotation_strategy(RotationStrategy::KeepSome(KEEP_FILES))
        .build()
}
