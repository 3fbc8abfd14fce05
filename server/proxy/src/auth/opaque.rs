//! Opaque OAuth access tokens (`oat_…`), verified by Clerk's Backend API
//! (`POST {api}/v1/oauth_applications/access_tokens/verify`, authorised by
//! the instance's secret key).
//!
//! Clerk issues these to OAuth applications created before JWT access tokens
//! were the default, and to any whose operator turned JWTs off for instant
//! revocation. A call to Clerk per request would be slow and spend the
//! operator's quota, so answers are cached by the token's SHA-256:
//! - accepted: until the earlier of the token's expiry and [`POSITIVE_FOR`]
//!   (or less: `CLERK_TOKEN_CACHE_SECS`), so a revocation takes effect within
//!   a minute;
//! - refused (unknown, revoked, expired, another client): [`NEGATIVE_FOR`];
//! - Clerk unreachable, 5xx or 429: not cached, and no call to Clerk for a
//!   short pause (its `Retry-After` on 429): the caller gets 503, never 401,
//!   so an outage signs nobody out.
//!
//! Concurrent requests with the same uncached token share one call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::sync::OnceCell;

use super::{AuthError, Secret};
use crate::ids::UserId;

/// The longest an accepted token is trusted without asking Clerk again: how
/// late a revocation may take effect.
pub const POSITIVE_FOR: Duration = Duration::from_secs(60);
/// How long a refused token stays refused without asking again.
pub const NEGATIVE_FOR: Duration = Duration::from_secs(5);
/// Tokens remembered at most; beyond, an arbitrary one is forgotten.
pub const CACHE_ENTRIES: usize = 10_000;
/// No call to Clerk for this long after it failed (unreachable, 5xx).
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(2);
/// The longest a 429's `Retry-After` pauses the calls.
const MAX_PAUSE: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Larger Clerk answers are not a token description.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Clerk's Backend API, as the proxy calls it.
#[derive(Debug, Clone)]
pub struct ClerkBackend {
    /// `https://api.clerk.com` (`CLERK_API_URL`), without `/v1`.
    pub api: String,
    pub secret: Secret,
}

/// What Clerk answers for a token it knows (`IdPOAuthAccessToken` in
/// `@clerk/backend`). Only the fields the decision needs.
#[derive(Debug, Deserialize)]
struct Described {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    revoked: bool,
    #[serde(default)]
    expired: bool,
    /// Unix seconds per Clerk's API reference, milliseconds per the SDK's
    /// comments: both are read (see [`expiry_secs`]).
    expiration: Option<i64>,
}

/// A value in seconds or milliseconds since the epoch, as seconds: 10^11
/// seconds is the year 5138, 10^11 milliseconds is 1973.
pub fn expiry_secs(raw: i64) -> i64 {
    if raw >= 100_000_000_000 {
        raw / 1000
    } else {
        raw
    }
}

/// The outcome of one verification, shared by the requests that waited on it.
#[derive(Debug, Clone)]
enum Outcome {
    /// The user, the token's expiry (Unix seconds) if it has one.
    Accepted(UserId, Option<i64>),
    Refused(String),
    /// Clerk could not answer; retry after this long.
    Unavailable(String, Duration),
}

#[derive(Debug)]
enum Entry {
    Accepted {
        user: UserId,
        until: Instant,
        until_unix: i64,
    },
    Refused {
        until: Instant,
        why: String,
    },
}

pub struct OpaqueVerifier {
    backend: Option<ClerkBackend>,
    /// How long an accepted answer is trusted ([`POSITIVE_FOR`] at most).
    positive_for: Duration,
    allowed_client_ids: Vec<String>,
    http: reqwest::Client,
    cache: Mutex<HashMap<[u8; 32], Entry>>,
    inflight: Mutex<HashMap<[u8; 32], Arc<OnceCell<Outcome>>>>,
    /// No call to Clerk before this instant (after a failure or a 429).
    paused_until: Mutex<Option<Instant>>,
    calls: AtomicU64,
}

impl OpaqueVerifier {
    pub fn new(
        backend: Option<ClerkBackend>,
        positive_for: Duration,
        allowed_client_ids: Vec<String>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            backend,
            positive_for: positive_for.min(POSITIVE_FOR),
            allowed_client_ids,
            http,
            cache: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            paused_until: Mutex::new(None),
            calls: AtomicU64::new(0),
        }
    }

    /// Calls made to Clerk's verify route so far (for tests and metrics).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The user `token` was issued to, and until when (Unix seconds) this
    /// answer holds: the token's expiry or the end of the cache window.
    pub async fn verify(&self, token: &str, digest: [u8; 32]) -> Result<(UserId, i64), AuthError> {
        let Some(backend) = &self.backend else {
            return Err(AuthError::NoSecretKey);
        };
        if let Some(hit) = self.cached(&digest) {
            return hit;
        }
        let cell = {
            let Ok(mut inflight) = self.inflight.lock() else {
                return Err(AuthError::VerifierUnavailable(
                    "internal lock poisoned".into(),
                    PAUSE_AFTER_FAILURE.as_secs(),
                ));
            };
            let cell = inflight.entry(digest).or_default();
            // A finished call whose waiters all went away before clearing it:
            // its answer is in the cache or was not worth keeping (an outage).
            if cell.initialized() {
                *cell = Arc::default();
            }
            cell.clone()
        };
        // The first caller runs the call; the others wait for its outcome. If
        // the first is cancelled (its client went away), the next one runs it.
        let outcome = cell
            .get_or_init(|| async {
                // Another request may have finished the call and left its
                // answer in the cache between our lookup and now.
                if let Some(hit) = self.cached(&digest) {
                    return match hit {
                        Ok((user, until)) => Outcome::Accepted(user, Some(until)),
                        Err(e) => Outcome::Refused(e.to_string()),
                    };
                }
                let outcome = self.call(backend, token).await;
                self.remember(digest, &outcome);
                outcome
            })
            .await
            .clone();
        if let Ok(mut inflight) = self.inflight.lock()
            && inflight.get(&digest).is_some_and(|c| Arc::ptr_eq(c, &cell))
        {
            inflight.remove(&digest);
        }
        match outcome {
            Outcome::Accepted(user, expiry) => Ok((user, self.answer_until(expiry))),
            Outcome::Refused(why) => Err(AuthError::Refused(why)),
            Outcome::Unavailable(why, retry) => {
                Err(AuthError::VerifierUnavailable(why, retry.as_secs().max(1)))
            }
        }
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<Result<(UserId, i64), AuthError>> {
        let mut cache = self.cache.lock().ok()?;
        let now = Instant::now();
        match cache.get(digest)? {
            Entry::Accepted {
                user,
                until,
                until_unix,
            } if *until > now => Some(Ok((user.clone(), *until_unix))),
            Entry::Refused { until, why } if *until > now => {
                Some(Err(AuthError::Refused(why.clone())))
            }
            _ => {
                cache.remove(digest);
                None
            }
        }
    }

    fn remember(&self, digest: [u8; 32], outcome: &Outcome) {
        let now = Instant::now();
        let entry = match outcome {
            Outcome::Accepted(user, expiry) => {
                let until_unix = self.answer_until(*expiry);
                let left = until_unix - chrono::Utc::now().timestamp();
                let Ok(left) = u64::try_from(left) else {
                    return;
                };
                Entry::Accepted {
                    user: user.clone(),
                    until: now + Duration::from_secs(left).min(self.positive_for),
                    until_unix,
                }
            }
            Outcome::Refused(why) => Entry::Refused {
                until: now + NEGATIVE_FOR,
                why: why.clone(),
            },
            Outcome::Unavailable(..) => return,
        };
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, e| match e {
                Entry::Accepted { until, .. } | Entry::Refused { until, .. } => *until > now,
            });
            if cache.len() >= CACHE_ENTRIES
                && let Some(victim) = cache.keys().next().copied()
            {
                cache.remove(&victim);
            }
        }
        cache.insert(digest, entry);
    }

    fn paused(&self) -> Option<Duration> {
        let until = (*self.paused_until.lock().ok()?)?;
        until.checked_duration_since(Instant::now())
    }

    fn pause(&self, length: Duration) {
        if let Ok(mut until) = self.paused_until.lock() {
            let end = Instant::now() + length.min(MAX_PAUSE);
            if until.is_none_or(|u| u < end) {
                *until = Some(end);
            }
        }
    }

    async fn call(&self, backend: &ClerkBackend, token: &str) -> Outcome {
        if let Some(left) = self.paused() {
            return Outcome::Unavailable(
                "Clerk's Backend API is paused after a failure".into(),
                left,
            );
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let response = self
            .http
            .post(format!(
                "{}/v1/oauth_applications/access_tokens/verify",
                backend.api
            ))
            .bearer_auth(backend.secret.expose())
            .timeout(CALL_TIMEOUT)
            .json(&serde_json::json!({ "access_token": token }))
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return self.failed(format!("Clerk's Backend API is unreachable: {e}")),
        };
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(PAUSE_AFTER_FAILURE, Duration::from_secs)
                .max(Duration::from_secs(1));
            self.pause(wait);
            tracing::warn!(
                retry_after = wait.as_secs(),
                "Clerk's Backend API rate-limits the proxy"
            );
            return Outcome::Unavailable(
                "Clerk's Backend API rate-limits the proxy".into(),
                wait.min(MAX_PAUSE),
            );
        }
        if status.is_server_error() {
            return self.failed(format!("Clerk's Backend API answered {status}"));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            // The operator's key, not the user's token: nobody is signed out
            // for it, and the log says what to fix.
            tracing::error!(%status, "Clerk refused CLERK_SECRET_KEY: opaque tokens cannot be verified");
            return self.failed(format!("Clerk refused the proxy's secret key ({status})"));
        }
        if status.is_client_error() {
            // 404: a token Clerk does not know; 400/422: not a token at all.
            return Outcome::Refused(format!("Clerk does not know this token ({status})"));
        }
        let body = match read_limited(response).await {
            Ok(body) => body,
            Err(e) => return self.failed(e),
        };
        let described: Described = match serde_json::from_slice(&body) {
            Ok(d) => d,
            Err(e) => return self.failed(format!("Clerk answered in an unexpected shape: {e}")),
        };
        self.decide(described)
    }

    fn decide(&self, token: Described) -> Outcome {
        let now = chrono::Utc::now().timestamp();
        let expiry = token.expiration.map(expiry_secs);
        if token.revoked {
            return Outcome::Refused("the token was revoked".into());
        }
        if token.expired || expiry.is_some_and(|exp| exp <= now) {
            return Outcome::Refused("the token expired".into());
        }
        if !self.allowed_client_ids.contains(&token.client_id) {
            return Outcome::Refused("the token was issued to a client that is not allowed".into());
        }
        match UserId::parse(&token.subject) {
            Ok(user) => Outcome::Accepted(user, expiry),
            Err(_) => Outcome::Refused("the token's subject is not a valid user id".into()),
        }
    }

    /// Until when an accepted answer holds (Unix seconds): the token's
    /// expiry, but no later than the cache window, so a long-lived response
    /// (an event stream) ends and asks again as a request would.
    fn answer_until(&self, expiry: Option<i64>) -> i64 {
        let window = chrono::Utc::now().timestamp() + self.positive_for.as_secs().cast_signed();
        expiry.map_or(window, |exp| exp.min(window))
    }

    fn failed(&self, why: String) -> Outcome {
        tracing::warn!(reason = %why, "cannot verify an opaque token");
        self.pause(PAUSE_AFTER_FAILURE);
        Outcome::Unavailable(why, PAUSE_AFTER_FAILURE)
    }
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("Clerk's answer broke off: {e}"))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER_BYTES {
            return Err("Clerk's answer is too large".into());
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(clients: &[&str]) -> OpaqueVerifier {
        OpaqueVerifier::new(
            Some(ClerkBackend {
                api: "http://127.0.0.1:9".into(),
                secret: Secret::new("sk_test_x".into()),
            }),
            POSITIVE_FOR,
            clients.iter().map(|s| (*s).to_owned()).collect(),
            reqwest::Client::new(),
        )
    }

    fn described(client: &str, expiration: Option<i64>) -> Described {
        Described {
            client_id: client.into(),
            subject: "user_ada".into(),
            revoked: false,
            expired: false,
            expiration,
        }
    }

    #[test]
    fn seconds_and_milliseconds_are_both_read_as_seconds() {
        assert_eq!(expiry_secs(1_767_225_600), 1_767_225_600);
        assert_eq!(expiry_secs(1_767_225_600_000), 1_767_225_600);
    }

    #[test]
    fn only_live_tokens_of_allowed_clients_with_a_user_subject_pass() {
        let v = verifier(&["desktop"]);
        let later = chrono::Utc::now().timestamp() + 600;
        assert!(matches!(
            v.decide(described("desktop", Some(later))),
            Outcome::Accepted(_, Some(exp)) if exp == later
        ));
        assert!(matches!(
            v.decide(described("desktop", Some(later * 1000))),
            Outcome::Accepted(_, Some(exp)) if exp == later
        ));
        assert!(matches!(
            v.decide(described("desktop", None)),
            Outcome::Accepted(_, None)
        ));
        assert!(matches!(
            v.decide(described("other", Some(later))),
            Outcome::Refused(_)
        ));
        let past = chrono::Utc::now().timestamp() - 1;
        assert!(matches!(
            v.decide(described("desktop", Some(past))),
            Outcome::Refused(_)
        ));
        let revoked = Described {
            revoked: true,
            ..described("desktop", Some(later))
        };
        assert!(matches!(v.decide(revoked), Outcome::Refused(_)));
        let expired = Described {
            expired: true,
            ..described("desktop", Some(later))
        };
        assert!(matches!(v.decide(expired), Outcome::Refused(_)));
        let nobody = Described {
            subject: String::new(),
            ..described("desktop", Some(later))
        };
        assert!(matches!(v.decide(nobody), Outcome::Refused(_)));
    }

    #[test]
    fn an_answer_holds_at_most_the_cache_window() {
        let v = verifier(&["desktop"]);
        let now = chrono::Utc::now().timestamp();
        assert_eq!(v.answer_until(Some(now + 10)), now + 10);
        assert!(v.answer_until(Some(now + 3600)) <= now + 61);
        assert!(v.answer_until(None) <= now + 61);
        let short =
            OpaqueVerifier::new(None, Duration::from_secs(2), vec![], reqwest::Client::new());
        assert!(short.answer_until(Some(now + 3600)) <= now + 3);
    }

    #[test]
    fn the_cache_is_bounded_and_refusals_are_remembered() {
        let v = verifier(&["desktop"]);
        for i in 0..(CACHE_ENTRIES + 50) {
            let mut digest = [0u8; 32];
            digest[..8].copy_from_slice(&(i as u64).to_le_bytes());
            v.remember(digest, &Outcome::Refused("no".into()));
        }
        assert_eq!(
            v.cache.lock().map(|c| c.len()).unwrap_or_default(),
            CACHE_ENTRIES
        );
        let digest = [7u8; 32];
        v.remember(digest, &Outcome::Refused("unknown".into()));
        assert!(matches!(
            v.cached(&digest),
            Some(Err(AuthError::Refused(_)))
        ));
        v.remember(
            [8u8; 32],
            &Outcome::Unavailable("down".into(), PAUSE_AFTER_FAILURE),
        );
        assert!(
            v.cached(&[8u8; 32]).is_none(),
            "an outage is not remembered"
        );
    }

    #[tokio::test]
    async fn without_a_secret_key_the_answer_names_the_setting() {
        let v = OpaqueVerifier::new(
            None,
            POSITIVE_FOR,
            vec!["desktop".into()],
            reqwest::Client::new(),
        );
        let err = v.verify("oat_x", [1u8; 32]).await.err();
        assert!(matches!(err, Some(AuthError::NoSecretKey)));
        assert!(
            AuthError::NoSecretKey
                .to_string()
                .contains("CLERK_SECRET_KEY")
        );
    }

    #[tokio::test]
    async fn an_unreachable_clerk_is_unavailable_then_paused() {
        let v = verifier(&["desktop"]);
        let first = v.verify("oat_x", [2u8; 32]).await.err();
        assert!(
            matches!(first, Some(AuthError::VerifierUnavailable(..))),
            "{first:?}"
        );
        let second = v.verify("oat_y", [3u8; 32]).await.err();
        assert!(matches!(second, Some(AuthError::VerifierUnavailable(..))));
        assert_eq!(v.calls(), 1, "no second call during the pause");
    }
}
