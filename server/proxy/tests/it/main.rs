//! The proxy's integration tests, in one binary (one link instead of four):
//! the HTTP API through the router (`api`, with `replies`), JWKS over real
//! HTTP (`jwks`), and the store conformance suite on SQLite and on moto
//! (`store_sqlite`, `store_dynamodb`). `support` and `store_suite` are the
//! builders they share.

// Test code: a failed step should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
#[macro_use]
mod store_suite;

mod api;
mod jwks;
mod replies;
mod store_dynamodb;
mod store_sqlite;
