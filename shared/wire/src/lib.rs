//! The types that cross Confab's boundaries.
//!
//! Everything here is plain data: no IO, no async, no platform code, so the same
//! definitions compile into the Yew UI (wasm32), the desktop shell and the proxy.
//! A field changes in one place and every Rust side follows it at compile
//! time; what is still plain text on both sides (URL paths, event names, the
//! `current` of a 409 or 410) is held together by the tests instead.

pub mod app;
pub mod assistant;
pub mod auth;
pub mod conversations;
pub mod error;
pub mod ids;
pub mod ipc;
pub mod library;
pub mod limits;
pub mod updates;

pub use error::{ErrorBody, ErrorCode, HttpError, HttpErrorWith, ResumeAt};
