//! Bearer token verification (design section 4).
//!
//! A bearer that is not a JWT (three dot-separated parts) is an opaque OAuth
//! access token, verified by Clerk's Backend API ([`opaque`]). JWTs: accepts only RS256 JWTs signed by a key of the issuer's JWKS (fetched and
//! cached; refetched when a token names an unknown `kid`, at most once per
//! [`REFETCH_INTERVAL`], counted from the previous fetch) or by the configured static key (`CLERK_JWT_KEY`).
//! Checks `iss`, `exp` and `nbf` with [`LEEWAY_SECS`] of leeway, and that the
//! token was issued to an allowed OAuth client (`client_id`) or, for Clerk session
//! tokens, an allowed authorized party (`azp`). The user id is `sub`.
//!
//! [`AuthUser`] is the only way a handler learns who is calling; it can only be
//! made here, from a verified token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

use crate::AppState;
use crate::error::ApiError;
use crate::ids::UserId;

mod opaque;
pub use opaque::{ClerkBackend, POSITIVE_FOR};

/// A secret from the configuration: never shown by `Debug`, so it cannot
/// reach a log line or an error by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

pub const LEEWAY_SECS: u64 = 5;
/// An unknown `kid` triggers at most one JWKS fetch per interval, so forged
/// tokens cannot turn the proxy into a load generator against the issuer.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The issuer, e.g. `https://clerk.example.com` (no trailing slash).
    pub issuer: String,
    /// Where the JWKS is; defaults to `{issuer}/.well-known/jwks.json`.
    pub jwks_url: String,
    pub allowed_client_ids: Vec<String>,
    pub allowed_parties: Vec<String>,
    /// A PEM public key that verifies tokens without fetching the JWKS.
    pub static_key_pem: Option<String>,
    /// Least time between two JWKS fetches ([`REFETCH_INTERVAL`]).
    pub refetch_interval: Duration,
    /// Clerk's Backend API, which verifies opaque tokens (`CLERK_SECRET_KEY`).
    pub clerk_backend: Option<ClerkBackend>,
    /// How long Clerk's acceptance of an opaque token is trusted
    /// ([`POSITIVE_FOR`] at most): how late a revocation may take effect.
    pub opaque_cache: Duration,
}

impl AuthConfig {
    pub fn new(issuer: &str) -> Self {
        let issuer = issuer.trim_end_matches('/').to_owned();
        Self {
            jwks_url: format!("{issuer}/.well-known/jwks.json"),
            issuer,
            allowed_client_ids: Vec::new(),
            allowed_parties: Vec::new(),
            static_key_pem: None,
            refetch_interval: REFETCH_INTERVAL,
            clerk_backend: None,
            opaque_cache: POSITIVE_FOR,
        }
    }
}

/// Why a token was refused. Logged (at debug, never with the token); the caller
/// only learns that it is not valid.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(Algorithm),
    #[error("token names no key id")]
    NoKeyId,
    #[error("unknown signing key {0}")]
    UnknownKey(String),
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token issued to a client or party that is not allowed")]
    NotAllowed,
    #[error("token subject is not a valid user id")]
    BadSubject,
    #[error("the issuer's keys could not be fetched: {0}")]
    KeysUnavailable(String),
    #[error(
        "this sign-in gives opaque access tokens, which the proxy verifies through Clerk's \
         Backend API: set CLERK_SECRET_KEY on the proxy (or turn JWT access tokens on for the \
         OAuth application)"
    )]
    NoSecretKey,
    #[error("token refused: {0}")]
    Refused(String),
    /// Clerk could not say; retry after the seconds given.
    #[error("tokens cannot be verified right now: {0}")]
    VerifierUnavailable(String, u64),
}

/// Why the verifier could not be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("CLERK_JWT_KEY is not an RSA public key in PEM: {0}")]
    StaticKey(String),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(String),
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    azp: Option<String>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, DecodingKey>,
}

/// Tokens already verified, by SHA-256 of the token: a client sends the same
/// access token with every request until it refreshes, and an RSA verification
/// costs more than the rest of a request. An entry lives until the token's
/// `exp` (plus leeway), exactly as long as a fresh verification would pass.
const VERIFIED_CACHE_ENTRIES: usize = 10_000;

#[derive(Default)]
struct VerifiedCache {
    entries: HashMap<[u8; 32], (UserId, i64)>,
}

pub struct Verifier {
    opaque: opaque::OpaqueVerifier,
    verified: std::sync::Mutex<VerifiedCache>,
    config: AuthConfig,
    static_key: Option<DecodingKey>,
    cache: RwLock<KeyCache>,
    /// When the JWKS was last fetched, and whether that fetch worked.
    last_fetch: Mutex<Option<(Instant, bool)>>,
    http: reqwest::Client,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(config: AuthConfig) -> Result<Self, SetupError> {
        let static_key = config
            .static_key_pem
            .as_deref()
            .map(|pem| {
                DecodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|e| SetupError::StaticKey(e.to_string()))
            })
            .transpose()?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.set_issuer(&[config.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| SetupError::HttpClient(e.to_string()))?;
        Ok(Self {
            opaque: opaque::OpaqueVerifier::new(
                config.clerk_backend.clone(),
                config.opaque_cache,
                config.allowed_client_ids.clone(),
                http.clone(),
            ),
            verified: std::sync::Mutex::new(VerifiedCache::default()),
            config,
            static_key,
            cache: RwLock::new(KeyCache::default()),
            last_fetch: Mutex::new(None),
            http,
            validation,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// Calls made to Clerk's token verification so far.
    pub fn clerk_calls(&self) -> u64 {
        self.opaque.calls()
    }

    /// Verifies `token` and returns the user it was issued for.
    pub async fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        self.verify_until(token).await.map(|(user, _)| user)
    }

    /// As [`Verifier::verify`], with the token's `exp` (Unix seconds).
    pub async fn verify_until(&self, token: &str) -> Result<(UserId, i64), AuthError> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if token.split('.').count() != 3 {
            return self.opaque.verify(token, digest).await;
        }
        let now = chrono::Utc::now().timestamp();
        let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(0);
        if let Ok(mut cache) = self.verified.lock()
            && let Some((user, exp)) = cache.entries.get(&digest)
        {
            if now <= exp + leeway {
                return Ok((user.clone(), *exp));
            }
            cache.entries.remove(&digest);
        }
        let (user, exp) = self.verify_uncached(token).await?;
        if let Ok(mut cache) = self.verified.lock() {
            if cache.entries.len() >= VERIFIED_CACHE_ENTRIES {
                cache.entries.retain(|_, (_, exp)| now <= *exp + leeway);
                if cache.entries.len() >= VERIFIED_CACHE_ENTRIES {
                    cache.entries.clear();
                }
            }
            cache.entries.insert(digest, (user.clone(), exp));
        }
        Ok((user, exp))
    }

    async fn verify_uncached(&self, token: &str) -> Result<(UserId, i64), AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Algorithm(header.alg));
        }
        // With a static key (CLERK_JWT_KEY) verification never touches the
        // network: the JWKS is not consulted at all.
        let claims = match (&self.static_key, header.kid) {
            (Some(key), _) => self.decode(token, key)?,
            (None, Some(kid)) => {
                let key = self.key(&kid).await?;
                self.decode(token, &key)?
            }
            (None, None) => return Err(AuthError::NoKeyId),
        };
        let allowed = match (&claims.client_id, &claims.azp) {
            (Some(client), _) => self.config.allowed_client_ids.contains(client),
            (None, Some(party)) => self.config.allowed_parties.contains(party),
            (None, None) => false,
        };
        if !allowed {
            return Err(AuthError::NotAllowed);
        }
        let user = UserId::parse(&claims.sub).map_err(|_| AuthError::BadSubject)?;
        Ok((user, claims.exp))
    }

    fn decode(&self, token: &str, key: &DecodingKey) -> Result<Claims, AuthError> {
        jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        if let Some(key) = self.cache.read().await.keys.get(kid) {
            return Ok(key.clone());
        }
        {
            // One fetch at a time, and none if the last one was recent.
            let mut last = self.last_fetch.lock().await;
            if let Some(key) = self.cache.read().await.keys.get(kid) {
                return Ok(key.clone());
            }
            if let Some((at, worked)) = *last
                && at.elapsed() < self.config.refetch_interval
            {
                // Within the back-off: a failed fetch keeps answering "retry"
                // (503), never "sign in again" (401).
                return Err(if worked {
                    AuthError::UnknownKey(kid.to_owned())
                } else {
                    AuthError::KeysUnavailable("the last fetch of the issuer's keys failed".into())
                });
            }
            let fetched = self.fetch_keys().await;
            *last = Some((Instant::now(), fetched.is_ok()));
            self.cache.write().await.keys = fetched?;
        }
        self.cache
            .read()
            .await
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| AuthError::UnknownKey(kid.to_owned()))
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, DecodingKey>, AuthError> {
        let set: JwkSet = self
            .http
            .get(&self.config.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| AuthError::KeysUnavailable(e.to_string()))?
            .json()
            .await
            .map_err(|e| AuthError::KeysUnavailable(format!("malformed JWKS: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            // Only RSA keys can verify RS256; others are skipped, not fatal.
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, key);
            }
        }
        tracing::info!(count = keys.len(), "fetched the issuer's signing keys");
        Ok(keys)
    }
}

/// The verified caller. Handlers take it as an extractor; it cannot be built
/// from anything but a verified token.
#[derive(Debug, Clone)]
pub struct AuthUser(UserId, i64);

impl AuthUser {
    pub fn id(&self) -> &UserId {
        &self.0
    }

    /// When the caller's token stops being accepted (Unix seconds, leeway
    /// included): what a long-lived response (an event stream) lasts.
    pub fn valid_until(&self) -> i64 {
        self.1 + i64::try_from(LEEWAY_SECS).unwrap_or(0)
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token =
            bearer(&parts.headers).ok_or_else(|| ApiError::unauthenticated(AuthError::Missing))?;
        match state.verifier.verify_until(token).await {
            Ok((user, exp)) => {
                if let Some(limiter) = &state.limiter
                    && let Err(wait) = limiter.check(&user)
                {
                    return Err(ApiError::rate_limited(wait));
                }
                parts.extensions.insert(user.clone());
                Ok(AuthUser(user, exp))
            }
            Err(AuthError::KeysUnavailable(reason)) => {
                tracing::warn!(%reason, "cannot verify tokens: the issuer's keys are unreachable");
                Err(ApiError::unavailable(
                    "sign-in cannot be checked right now; retry shortly",
                ))
            }
            Err(AuthError::VerifierUnavailable(reason, retry_after)) => {
                tracing::debug!(%reason, "opaque token not verified");
                Err(ApiError {
                    retry_after: Some(retry_after),
                    ..ApiError::unavailable("sign-in cannot be checked right now; retry shortly")
                })
            }
            Err(err @ AuthError::NoSecretKey) => {
                tracing::warn!("an opaque access token arrived, and CLERK_SECRET_KEY is not set");
                Err(ApiError::new(
                    confab_wire::ErrorCode::Unauthenticated,
                    err.to_string(),
                ))
            }
            Err(err) => Err(ApiError::unauthenticated(err)),
        }
    }
}

/// The token of an `Authorization: Bearer …` header.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
