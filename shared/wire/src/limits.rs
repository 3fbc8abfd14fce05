//! The documented limits, and the rules every side checks the same way: the
//! desktop refuses a write the server would refuse before it is queued, with
//! the same words.

use std::fmt;

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 500;
/// Largest message content, in bytes (UTF-8): well under DynamoDB's 400 KB item.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Longest per-conversation instructions for the assistant, in characters.
pub const MAX_INSTRUCTIONS_CHARS: usize = 8_000;
/// Title of a conversation created without one.
pub const DEFAULT_TITLE: &str = "New conversation";

/// Why a value was refused; the caller names the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Empty,
    TooLong,
    ControlCharacters,
    /// Over [`MAX_MESSAGE_BYTES`]: a 413, not a 400.
    TooLarge,
    NotUlid,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Empty => f.write_str("must not be empty"),
            Refusal::TooLong => write!(f, "must be at most {MAX_TITLE_CHARS} characters"),
            Refusal::ControlCharacters => {
                f.write_str("must not contain line breaks or control characters")
            }
            Refusal::TooLarge => write!(f, "must be at most {} KiB", MAX_MESSAGE_BYTES / 1024),
            Refusal::NotUlid => {
                f.write_str("ids are ULIDs: 26 characters of Crockford base32, upper case")
            }
        }
    }
}

/// A title as stored: trimmed, not empty, at most [`MAX_TITLE_CHARS`], no
/// control characters.
pub fn title(raw: &str) -> Result<String, Refusal> {
    let title = raw.trim();
    if title.is_empty() {
        return Err(Refusal::Empty);
    }
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(Refusal::TooLong);
    }
    if title.chars().any(char::is_control) {
        return Err(Refusal::ControlCharacters);
    }
    Ok(title.to_owned())
}

/// Message content: not blank, at most [`MAX_MESSAGE_BYTES`].
pub fn content(raw: &str) -> Result<(), Refusal> {
    if raw.len() > MAX_MESSAGE_BYTES {
        return Err(Refusal::TooLarge);
    }
    if raw.trim().is_empty() {
        return Err(Refusal::Empty);
    }
    Ok(())
}

/// A ULID in its one canonical spelling (what [`crate::ids::Id::parse`]
/// accepts): 26 characters of Crockford base32, upper case, 128 bits.
pub fn is_ulid(id: &str) -> bool {
    crate::ids::Id::parse(id).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(title("  Plans \t").as_deref(), Ok("Plans"));
        assert_eq!(title("   "), Err(Refusal::Empty));
        assert_eq!(title("a\nb"), Err(Refusal::ControlCharacters));
        assert_eq!(
            title(&"é".repeat(MAX_TITLE_CHARS)).map(|t| t.chars().count()),
            Ok(500)
        );
        assert_eq!(
            title(&"é".repeat(MAX_TITLE_CHARS + 1)),
            Err(Refusal::TooLong)
        );
    }

    #[test]
    fn contents() {
        assert_eq!(content("hi"), Ok(()));
        assert_eq!(content(" \n"), Err(Refusal::Empty));
        assert_eq!(content(&"x".repeat(MAX_MESSAGE_BYTES)), Ok(()));
        assert_eq!(
            content(&"x".repeat(MAX_MESSAGE_BYTES + 1)),
            Err(Refusal::TooLarge)
        );
    }

    #[test]
    fn ulids() {
        assert!(is_ulid("01JDQ3ZJ6Y8W5X9V4T3S2R1Q0P"));
        assert!(is_ulid("7ZZZZZZZZZZZZZZZZZZZZZZZZZ"));
        for bad in [
            "",
            "01jdq3zj6y8w5x9v4t3s2r1q0p",
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
            "01JDQ3ZJ6Y8W5X9V4T3S2R1Q0",
            "01JDQ3ZJ6Y8W5X9V4T3S2R1Q0I",
            "01JDQ3ZJ6Y8W5X9V4T3S2R1Q0/",
        ] {
            assert!(!is_ulid(bad), "{bad}");
        }
    }
}
