//! The harness every cross-component and end-to-end suite uses.
//!
//! Real parts only: servers run as real processes, the desktop app runs in a real
//! window (Xvfb) with its own D-Bus session, driven over WebDriver through
//! tauri-driver and WebKitWebDriver. Each helper cleans up on drop, and a test
//! that panics leaves a screenshot and logs under `tests/artifacts/<test>/`.

pub mod desktop;
pub mod moto;
pub mod net;
pub mod oidc;
pub mod paths;
pub mod process;

pub use desktop::{App, AppHome, AppOptions, Desktop};
pub use process::Service;
