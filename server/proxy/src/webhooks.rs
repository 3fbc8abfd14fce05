//! Svix-signed Clerk webhooks: signature, freshness and replay checks.
//!
//! Clerk signs `{svix-id}.{svix-timestamp}.{body}` with HMAC-SHA256 under the
//! endpoint's `whsec_…` secret and sends `v1,<base64>` signatures (several,
//! space-separated, during a secret rotation). A delivery is accepted when one
//! signature matches (compared in constant time), its timestamp is within
//! [`TOLERANCE_SECS`] of now, and its id was not processed before: that
//! memory is the store's (`Store::delivery_seen`), shared by every instance.
//!
//! The check needs no token, so its cost is bounded: the MAC is computed once
//! per delivery (never per signature value), at most [`MAX_SIGNATURES`] values
//! are looked at, and the route takes at most [`MAX_WEBHOOK_BODY_BYTES`].

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const TOLERANCE_SECS: i64 = 5 * 60;
/// Svix sends one value per active secret: one, or two during a rotation. A
/// header with more is refused before any MAC is computed.
pub const MAX_SIGNATURES: usize = 5;
/// Room for one value (`v1,` and 44 characters of base64) and its separator,
/// with slack: bounds the header before it is read.
pub const MAX_SIGNATURE_BYTES: usize = 128;
/// Largest webhook body: Clerk's user events are a few KiB.
pub const MAX_WEBHOOK_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("missing or malformed {0} header")]
    Header(&'static str),
    #[error("more than {MAX_SIGNATURES} values in svix-signature")]
    TooManySignatures,
    #[error("timestamp outside the 5 minute tolerance")]
    Stale,
    #[error("no valid signature")]
    Signature,
}

pub struct WebhookVerifier {
    key: Vec<u8>,
}

/// Why a webhook signing secret was refused (never shows the secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("CLERK_WEBHOOK_SIGNING_SECRET: not a whsec_… secret")]
    NotBase64,
    #[error("CLERK_WEBHOOK_SIGNING_SECRET: empty secret")]
    Empty,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookVerifier")
    }
}

impl WebhookVerifier {
    /// `secret` is the endpoint's signing secret, `whsec_<base64>`.
    pub fn new(secret: &str) -> Result<Self, SecretError> {
        let encoded = secret
            .trim()
            .strip_prefix("whsec_")
            .unwrap_or(secret.trim());
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if key.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self { key })
    }

    /// The signature for a delivery (what Svix computes); used by tests.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    pub fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signatures: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), WebhookError> {
        let id = id
            .filter(|v| !v.is_empty() && v.len() <= 256)
            .ok_or(WebhookError::Header("svix-id"))?;
        let timestamp: i64 = timestamp
            .and_then(|v| v.trim().parse().ok())
            .ok_or(WebhookError::Header("svix-timestamp"))?;
        let signatures = signatures.ok_or(WebhookError::Header("svix-signature"))?;
        // abs_diff: a hostile timestamp (i64::MIN) must not overflow.
        if now.abs_diff(timestamp) > TOLERANCE_SECS.unsigned_abs() {
            return Err(WebhookError::Stale);
        }
        let candidates: Vec<&str> = signatures
            .split_whitespace()
            .take(MAX_SIGNATURES + 1)
            .collect();
        if candidates.len() > MAX_SIGNATURES {
            return Err(WebhookError::TooManySignatures);
        }
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return Err(WebhookError::Signature);
        };
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        let valid = candidates.iter().any(|candidate| {
            candidate
                .strip_prefix("v1,")
                .and_then(|encoded| STANDARD.decode(encoded).ok())
                // Constant-time comparison (a length mismatch answers false).
                .is_some_and(|expected| bool::from(tag.as_slice().ct_eq(&expected)))
        });
        if !valid {
            return Err(WebhookError::Signature);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Arbitrary headers and bodies: an answer, never a panic, and never
        /// an acceptance without the secret's signature.
        #[test]
        fn arbitrary_input_is_refused_without_panicking(
            id in proptest::option::of(".{0,300}"),
            timestamp in proptest::option::of(prop_oneof![
                any::<i64>().prop_map(|t| t.to_string()),
                ".{0,40}",
            ]),
            signatures in proptest::option::of(prop_oneof![
                ".{0,200}",
                proptest::collection::vec("v1,[A-Za-z0-9+/=]{0,60}", 0..12)
                    .prop_map(|v| v.join(" ")),
            ]),
            body in proptest::collection::vec(any::<u8>(), 0..2048),
            now in any::<i64>(),
        ) {
            let verifier = WebhookVerifier::new(SECRET).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let answer = verifier.verify(
                id.as_deref(),
                timestamp.as_deref(),
                signatures.as_deref(),
                &body,
                now,
            );
            prop_assert!(answer.is_err());
        }

        /// What the secret signs is accepted, whatever the body's bytes.
        #[test]
        fn signed_bodies_of_any_bytes_pass(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let verifier = WebhookVerifier::new(SECRET).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let now = 1_800_000_000;
            let signature = verifier.sign("msg_1", now, &body);
            prop_assert!(verifier
                .verify(Some("msg_1"), Some(&now.to_string()), Some(&signature), &body, now)
                .is_ok());
        }
    }

    /// svix-id, svix-timestamp, svix-signature, body, now, expected error.
    type Case<'a> = (
        Option<&'a str>,
        Option<&'a str>,
        Option<&'a str>,
        &'a [u8],
        i64,
        WebhookError,
    );

    #[test]
    fn accepts_a_fresh_signed_delivery() {
        let v = WebhookVerifier::new(SECRET).unwrap();
        let body = br#"{"type":"user.created"}"#;
        let sig = v.sign("msg_1", 1_000, body);
        assert_eq!(
            v.verify(Some("msg_1"), Some("1000"), Some(&sig), body, 1_010),
            Ok(())
        );
    }

    #[test]
    fn refuses_tampering_staleness_and_missing_headers() {
        let v = WebhookVerifier::new(SECRET).unwrap();
        let body = br#"{"type":"user.deleted","data":{"id":"user_a"}}"#;
        let sig = v.sign("msg_2", 5_000, body);
        let other = WebhookVerifier::new("whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ=").unwrap();
        let foreign = other.sign("msg_2", 5_000, body);
        let cases: Vec<Case<'_>> = vec![
            (
                Some("msg_2"),
                Some("5000"),
                Some(&sig),
                b"{}",
                5_000,
                WebhookError::Signature,
            ),
            (
                Some("msg_3"),
                Some("5000"),
                Some(&sig),
                body,
                5_000,
                WebhookError::Signature,
            ),
            (
                Some("msg_2"),
                Some("5001"),
                Some(&sig),
                body,
                5_000,
                WebhookError::Signature,
            ),
            (
                Some("msg_2"),
                Some("5000"),
                Some(&foreign),
                body,
                5_000,
                WebhookError::Signature,
            ),
            (
                Some("msg_2"),
                Some("5000"),
                Some("v1,!!!"),
                body,
                5_000,
                WebhookError::Signature,
            ),
            (
                Some("msg_2"),
                Some("5000"),
                Some("v2,abc"),
                body,
                5_000,
                WebhookError::Signature,
            ),
            (
                Some("msg_2"),
                Some("5000"),
                Some(&sig),
                body,
                5_000 + 301,
                WebhookError::Stale,
            ),
            (
                Some("msg_2"),
                Some("5000"),
                Some(&sig),
                body,
                5_000 - 301,
                WebhookError::Stale,
            ),
            (
                None,
                Some("5000"),
                Some(&sig),
                body,
                5_000,
                WebhookError::Header("svix-id"),
            ),
            (
                Some("msg_2"),
                Some("soon"),
                Some(&sig),
                body,
                5_000,
                WebhookError::Header("svix-timestamp"),
            ),
            (
                Some("msg_2"),
                Some("5000"),
                None,
                body,
                5_000,
                WebhookError::Header("svix-signature"),
            ),
        ];
        for (id, ts, s, b, now, want) in cases {
            assert_eq!(v.verify(id, ts, s, b, now), Err(want.clone()), "{want}");
        }
        // A hostile timestamp cannot overflow the freshness check.
        assert_eq!(
            v.verify(
                Some("msg_2"),
                Some(&i64::MIN.to_string()),
                Some(&sig),
                body,
                5_000
            ),
            Err(WebhookError::Stale)
        );
        // Rotation: any one valid signature among several is enough.
        let both = format!("{foreign} {sig}");
        assert_eq!(
            v.verify(Some("msg_2"), Some("5000"), Some(&both), body, 5_000),
            Ok(())
        );
    }

    #[test]
    fn refuses_more_signature_values_than_a_rotation_needs() {
        let v = WebhookVerifier::new(SECRET).unwrap();
        let body = br#"{"type":"user.created"}"#;
        let sig = v.sign("msg_4", 1_000, body);
        // The valid value comes last: it must not be reached.
        let many = format!("{} {sig}", vec!["v1,AAAA"; 50_000].join(" "));
        let started = std::time::Instant::now();
        let answer = v.verify(Some("msg_4"), Some("1000"), Some(&many), body, 1_000);
        assert_eq!(answer, Err(WebhookError::TooManySignatures));
        assert!(started.elapsed() < std::time::Duration::from_millis(50));
        // Up to the limit, one valid value among them is enough.
        let few = format!("{} {sig}", ["v1,AAAA"; MAX_SIGNATURES - 1].join(" "));
        assert_eq!(
            v.verify(Some("msg_4"), Some("1000"), Some(&few), body, 1_000),
            Ok(())
        );
    }

    #[test]
    fn secrets_must_decode() {
        assert!(WebhookVerifier::new("whsec_***").is_err());
        assert!(WebhookVerifier::new("whsec_").is_err());
    }
}
