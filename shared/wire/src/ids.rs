//! Validated identifiers, shared by every side. The proxy builds store keys
//! only from these types, so a raw string from a request can never become
//! part of a key; the cache checks ids it will send with the same rules.
//! Making new ids (`Id::new`) needs randomness: the `generate` feature, for
//! the host sides only.

use std::fmt;
use std::str::FromStr;

/// The caller's user id: the verified token's `sub`, checked to be a plain
/// token of letters, digits, `_` and `-` (Clerk's are `user_...`), 1-128 bytes.
/// Only the auth layer and the webhook constructs one from outside input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return Err(IdError::UserLength);
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(IdError::UserChars);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A conversation or message id: a ULID in its canonical 26-character
/// Crockford base32 form (upper case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(ulid::Ulid);

/// Ids made here increase strictly, even within one millisecond, so messages a
/// request adds in order also sort in that order (messages sort by id).
#[cfg(feature = "generate")]
static GENERATOR: std::sync::LazyLock<std::sync::Mutex<ulid::Generator>> =
    std::sync::LazyLock::new(|| std::sync::Mutex::new(ulid::Generator::new()));

impl Id {
    #[cfg(feature = "generate")]
    pub fn new() -> Self {
        let generated = GENERATOR
            .lock()
            .ok()
            .and_then(|mut generator| generator.generate().ok());
        // Overflow needs 2^80 ids in one millisecond; a poisoned lock needs a
        // panic while generating. Either way a fresh random ULID is still unique.
        // Not `unwrap_or_default`: `Ulid::default()` is the nil id.
        #[allow(clippy::unwrap_or_default)]
        Self(generated.unwrap_or_else(ulid::Ulid::new))
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() != ulid::ULID_LEN {
            return Err(IdError::NotUlid);
        }
        let id = ulid::Ulid::from_str(s).map_err(|_| IdError::NotUlid)?;
        // One spelling per id: lower case or Crockford's aliases (I, L, O) would
        // otherwise name the same conversation under two keys.
        if id.to_string() != s {
            return Err(IdError::NotUlid);
        }
        Ok(Self(id))
    }
}

impl Id {
    /// The id `by` steps after this one (ULIDs are 128-bit numbers), when
    /// there is one.
    pub fn offset(self, by: u128) -> Option<Self> {
        u128::from(self.0)
            .checked_add(by)
            .map(|n| Self(ulid::Ulid::from(n)))
    }

    /// The millisecond the id was made in.
    pub fn timestamp_ms(self) -> u64 {
        self.0.timestamp_ms()
    }
}

#[cfg(feature = "generate")]
impl Default for Id {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdError {
    UserLength,
    UserChars,
    NotUlid,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdError::UserLength => "user ids are 1 to 128 characters long",
            IdError::UserChars => "user ids contain only letters, digits, '_' and '-'",
            IdError::NotUlid => "ids are ULIDs: 26 characters of Crockford base32, upper case",
        })
    }
}

impl std::error::Error for IdError {}

#[cfg(all(test, feature = "generate"))]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        for ok in ["user_2abcDEF123", "a", "sub-1", &"x".repeat(128)] {
            assert!(UserId::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "USER#x",
            "a/b",
            "..",
            "ünï",
            "a b",
            "a#b",
            &"x".repeat(129),
        ] {
            assert!(UserId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn new_ids_increase_strictly() {
        let ids: Vec<Id> = (0..1000).map(|_| Id::new()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.windows(2).all(|w| w[0].to_string() < w[1].to_string()));
    }

    #[test]
    fn ulids() {
        let id = Id::new();
        assert_eq!(Id::parse(&id.to_string()), Ok(id));
        let lower = id.to_string().to_lowercase();
        for bad in [
            "",
            "not-a-ulid",
            lower.as_str(),
            "01J0000000000000000000000#",
            "01J00000000000000000000000X",
            "../../etc/passwd",
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
        ] {
            assert!(Id::parse(bad).is_err(), "{bad}");
        }
    }
}
