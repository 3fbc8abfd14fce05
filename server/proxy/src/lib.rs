//! Confab's proxy: the only component that touches users' stored data.
//!
//! `router` builds the whole HTTP surface from an explicit [`AppState`]; `main.rs`
//! only parses configuration, binds the socket and shuts down gracefully. Tests
//! drive the router directly with `tower::ServiceExt::oneshot`.

pub mod assistant;
pub mod auth;
pub mod config;
pub mod error;
pub mod events;
pub mod identity;
pub mod ids;
pub mod limits;
pub mod openapi;
pub mod relay;
mod routes;
pub mod seed;
pub mod serve;
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
    /// Users whose profile was read from the provider lately.
    pub recent_profiles: Arc<identity::Recent>,
    pub http: reqwest::Client,
    pub events: events::Hub,
    /// Assistant replies: off (saying why) unless a model provider is set.
    pub assistant: Arc<assistant::Assistant>,
    /// Present when CLERK_WEBHOOK_SIGNING_SECRET is set.
    pub webhooks: Option<Arc<webhooks::WebhookVerifier>>,
    /// Per-user rate limit; `None` when disabled.
    pub limiter: Option<Arc<limits::UserLimiter>>,
    /// Becomes true when the server shuts down: event streams end so that
    /// in-flight requests can drain.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    /// A state with default events, the default rate limit, no webhooks, and
    /// no shutdown signal.
    pub fn new(
        store: Arc<dyn store::Store>,
        verifier: auth::Verifier,
        identity: identity::Identity,
        http: reqwest::Client,
    ) -> Self {
        Self {
            store,
            verifier: Arc::new(verifier),
            identity: Arc::new(identity),
            recent_profiles: Arc::default(),
            http,
            events: events::Hub::default(),
            assistant: Arc::new(assistant::Assistant::off(
                "no model provider is configured (ANTHROPIC_API_KEY or CONFAB_OPENAI_BASE_URL)",
            )),
            webhooks: None,
            limiter: limits::UserLimiter::new(limits::RateLimit::default()).map(Arc::new),
            shutdown: tokio::sync::watch::channel(false).1,
        }
    }
}
