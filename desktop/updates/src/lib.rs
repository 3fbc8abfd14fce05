//! Self-update without the window: the policy the desktop shell applies around
//! `tauri-plugin-updater`.
//!
//! - [`config`] decides where to look and which key to trust, and says plainly
//!   why updating is off when it cannot work.
//! - [`memory`] remembers, across restarts, which version is being installed and
//!   which ones failed, so a broken release is never offered in a loop.
//! - [`flow`] is the state machine the UI follows: check, offer, download on
//!   the user's request, install, restart.
//!
//! The shell implements [`flow::Source`] with the plugin (network, signature
//! check, `dpkg`/`rpm`/MSI/app bundle install); everything else lives here.

pub mod config;
pub mod flow;
pub mod memory;

pub use config::{ConfigError, Configured, UpdateConfig};
pub use flow::{InstallFailure, InstallOutcome, Release, Source, Trigger, UpdateError, Updates};
pub use memory::Memory;
