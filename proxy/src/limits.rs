//! Documented limits (README, "Limits"), enforced at the edge with clear errors.

/// Largest request body: room for a conversation created with many messages.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 500;
/// Largest message content, in bytes (UTF-8): well under DynamoDB's 400 KB item.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Most messages one request may carry (create, or the template's replace).
pub const MAX_MESSAGES_PER_REQUEST: usize = 1000;
/// Page sizes: default and maximum.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 200;
pub const DEFAULT_CHANGES_PAGE: usize = 100;
pub const MAX_CHANGES_PAGE: usize = 500;
/// Title used when a conversation is created without one.
pub const DEFAULT_TITLE: &str = "New conversation";
