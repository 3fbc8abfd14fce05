//! The harness every cross-component and end-to-end suite uses.
//!
//! Real parts only: servers run as real processes, the desktop app runs in a real
//! window (Xvfb) with its own D-Bus session, driven over WebDriver through
//! tauri-driver and WebKitWebDriver. Each helper cleans up on drop, and a test
//! that panics leaves a screenshot and logs under `tests/artifacts/<test>/`.

pub mod browser;
pub mod data;
pub mod desktop;
pub mod keyring;
pub mod model;
pub mod moto;
pub mod net;
pub mod oidc;
pub mod paths;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod session;
pub mod stack;
pub mod updates;

pub use desktop::{App, AppHome, AppOptions, Desktop};
pub use process::Service;

/// The longest any end-to-end test may run: a stuck step (a WebDriver call, a
/// server that never answers) fails the test instead of stalling CI.
pub const TEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(180);

/// Runs a test body under a deadline.
pub async fn bounded<T>(
    limit: std::time::Duration,
    body: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, body)
        .await
        .map_err(|_| anyhow::anyhow!("the test did not finish within {limit:?}"))?
}
