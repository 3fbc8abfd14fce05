//! The end-to-end suites, one module per area, in one test binary (one link
//! instead of fourteen). Tests from different modules run side by side: each
//! brings its own X server, D-Bus session, home, keyring, ports and artifacts
//! folder (`tests/artifacts/<test>/`), and what is the machine's (the package
//! database) is taken in turns.
//!
//! Two suites stay binaries of their own: `real_time.rs` (the 2-second
//! promise, measured with nothing else running) and `newcomer.rs`
//! (`scripts/run` builds, which must not relink the app under running tests).
//!
//!   cargo test --test it                  every suite here
//!   cargo test --test it e2e_updates::    one suite

mod deployment;
mod e2e_conversations;
mod e2e_export;
mod e2e_offline;
mod e2e_replies;
mod e2e_sign_in;
mod e2e_smoke;
mod e2e_updates;
mod packaging;
mod proxy_oidc;
mod proxy_process;
mod proxy_redis;
mod sign_in_flow;
mod sync_flow;
