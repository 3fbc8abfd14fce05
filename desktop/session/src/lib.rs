//! The desktop's signed-in session, without a window: configuration
//! ([`config`]), the identity provider over OIDC ([`oidc`]), one sign-in
//! attempt and its callback ([`attempt`]), secrets in the OS keyring
//! ([`vault`]), the profile shown in the header ([`profile`]), and the state
//! machine tying them together ([`session`]).
//!
//! The Tauri shell owns one [`Session`], feeds it deep links, and forwards its
//! [`confab_wire::auth::AuthState`] to the UI. Everything here is tested
//! without a window, against a real OpenID provider (see `tests/`).

pub mod attempt;
pub mod config;
pub mod oidc;
pub mod profile;
pub mod session;
pub mod vault;

pub use config::{AuthConfig, ConfigError};
pub use session::{AuthError, Session};
pub use vault::{MemoryStore, SecretStore, UnavailableStore, Vault, VaultError};
