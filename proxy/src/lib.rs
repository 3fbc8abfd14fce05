//! Confab's proxy: the only component that touches users' stored data.
//!
//! `router` builds the whole HTTP surface from an explicit [`AppState`]; `main.rs`
//! only parses configuration, binds the socket and shuts down gracefully. Tests
//! drive the router directly with `tower::ServiceExt::oneshot`.

pub mod config;
pub mod error;
mod routes;

pub use routes::router;

/// Everything the handlers share. Grows with the store and the token verifier.
#[derive(Clone, Debug, Default)]
pub struct AppState {}
