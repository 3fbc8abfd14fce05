//! Confab's proxy: the only component that touches users' stored data.
//!
//! `router` builds the whole HTTP surface from an explicit [`AppState`]; `main.rs`
//! only parses configuration, binds the socket and shuts down gracefully. Tests
//! drive the router directly with `tower::ServiceExt::oneshot`.

pub mod auth;
pub mod config;
pub mod error;
pub mod events;
pub mod identity;
pub mod ids;
pub mod limits;
mod routes;
pub mod store;
mod validate;
pub mod webhooks;

use std::sync::Arc;

pub use routes::router;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn store::Store>,
    pub verifier: Arc<auth::Verifier>,
    pub identity: Arc<identity::Identity>,
    pub http: reqwest::Client,
    pub events: events::Hub,
    /// Present when CLERK_WEBHOOK_SIGNING_SECRET is set.
    pub webhooks: Option<Arc<webhooks::WebhookVerifier>>,
}
