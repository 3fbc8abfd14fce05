//! The identity provider, spoken to through the `openidconnect` crate:
//! discovery, the authorization URL (PKCE S256, `state`, `nonce`), the code
//! exchange with ID token validation, refresh and revocation. No protocol code
//! of our own: this module only maps the crate's results onto [`OidcError`].

use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod,
    CoreErrorResponseType, CoreGrantType, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
    CoreTokenResponse,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthenticationFlow, AuthorizationCode, ClientId, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl, RefreshToken,
    RequestTokenError, RevocationUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::config::AuthConfig;

/// Where the browser sends the user back: the app's deep link.
pub const REDIRECT_URI: &str = "app.confab.desktop://oauth/callback";

/// `openid` is implied; `offline_access` asks for the refresh token.
const SCOPES: &[&str] = &["profile", "email", "offline_access"];

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider could not be reached (DNS, TCP, TLS, timeout).
    #[error("cannot reach the sign-in service: {0}")]
    Unreachable(String),
    /// The provider answered `invalid_grant`: the code or refresh token is
    /// expired, used, revoked, or does not match the PKCE verifier.
    #[error("the sign-in service refused the grant: {0}")]
    InvalidGrant(String),
    /// Anything else the provider refused or answered malformed.
    #[error("the sign-in service answered unexpectedly: {0}")]
    Protocol(String),
    /// The ID token failed validation (signature, iss, aud, nonce, exp).
    #[error("the sign-in answer failed verification: {0}")]
    InvalidIdToken(String),
}

#[derive(Clone, Debug, Deserialize, Serialize)]
struct RevocationMetadata {
    #[serde(default)]
    revocation_endpoint: Option<String>,
}
impl AdditionalProviderMetadata for RevocationMetadata {}

type Metadata = ProviderMetadata<
    RevocationMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A discovered provider, ready for sign-in and refresh.
#[derive(Clone)]
pub struct Provider {
    client: Client,
    revocation: Option<RevocationUrl>,
    http: reqwest::Client,
}

/// What the browser must be sent to, and what the callback will be checked
/// against. The secrets live in [`crate::attempt::Attempt`].
pub struct Authorization {
    pub url: Url,
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

/// Tokens from a code exchange or a refresh.
pub struct Grant {
    pub access_token: String,
    pub expires_in: Option<Duration>,
    pub refresh_token: Option<String>,
    /// From a validated ID token (always present after a code exchange).
    pub identity: Option<Identity>,
}

/// Who signed in, from the validated ID token's claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub picture: Option<String>,
}

/// The HTTP client for the provider: no redirects (a redirect at the token
/// endpoint would be an SSRF vector) and a bounded wait.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        // Idle, not total: a large page on a slow link must finish, a stalled
        // one must not hang.
        .read_timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default()
}

impl Provider {
    /// Fetches the discovery document and the JWKS.
    pub async fn discover(config: &AuthConfig, http: reqwest::Client) -> Result<Self, OidcError> {
        let issuer = IssuerUrl::new(config.issuer.as_str().trim_end_matches('/').to_owned())
            .map_err(|e| OidcError::Protocol(format!("issuer URL: {e}")))?;
        let metadata = Metadata::discover_async(issuer, &http)
            .await
            .map_err(|e| match e {
                openidconnect::DiscoveryError::Request(err) => OidcError::Unreachable(chain(&err)),
                other => OidcError::Protocol(chain(&other)),
            })?;
        // The endpoints must be as safe as the issuer: https, or this machine.
        let endpoints = [
            Some(metadata.authorization_endpoint().url()),
            metadata.token_endpoint().map(|t| t.url()),
        ];
        for url in endpoints.into_iter().flatten() {
            if !crate::config::is_secure(url) {
                return Err(OidcError::Protocol(format!(
                    "the provider announced an endpoint that is not https: {url}"
                )));
            }
        }
        let revocation = metadata
            .additional_metadata()
            .revocation_endpoint
            .as_deref()
            .and_then(|u| RevocationUrl::new(u.to_owned()).ok())
            .filter(|u| crate::config::is_secure(u.url()));
        let redirect = RedirectUrl::new(config.redirect_uri.to_string())
            .map_err(|e| OidcError::Protocol(e.to_string()))?;
        let client: Client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            None,
        )
        .set_redirect_uri(redirect);
        Ok(Self {
            client,
            revocation,
            http,
        })
    }

    /// A fresh authorization request: new PKCE verifier, state and nonce.
    pub fn authorize(&self) -> Authorization {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = self
            .client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scopes(SCOPES.iter().map(|s| Scope::new((*s).to_owned())))
            .set_pkce_challenge(challenge)
            .url();
        Authorization {
            url,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
        }
    }

    /// Exchanges an authorization code and validates the ID token against the
    /// provider's keys, the issuer, our client id, `nonce` and its expiry.
    pub async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<Grant, OidcError> {
        let response: CoreTokenResponse = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Protocol(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        let expected = Nonce::new(nonce.to_owned());
        let identity = self
            .identity(&response, &expected)?
            .ok_or_else(|| OidcError::InvalidIdToken("no ID token in the answer".into()))?;
        Ok(grant(&response, Some(identity)))
    }

    /// Trades a refresh token for new tokens (the provider may rotate it).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Grant, OidcError> {
        let token = RefreshToken::new(refresh_token.to_owned());
        let response: CoreTokenResponse = self
            .client
            .exchange_refresh_token(&token)
            .map_err(|e| OidcError::Protocol(e.to_string()))?
            .request_async(&self.http)
            .await
            .map_err(token_error)?;
        // A refreshed ID token carries no nonce (OIDC Core 12.2); everything
        // else is checked as at sign-in.
        // The grant is kept even when its ID token fails: the refresh token
        // may have rotated, and dropping it would end the session.
        let identity = match self.identity(&response, |_: Option<&Nonce>| Ok(())) {
            Ok(identity) => identity,
            Err(err) => {
                log::warn!("the refreshed ID token was not accepted: {err}");
                None
            }
        };
        Ok(grant(&response, identity))
    }

    /// Revokes a refresh token where the provider supports RFC 7009. Returns
    /// whether it was revoked.
    ///
    /// A plain form POST rather than the crate's `revoke_token`: that one
    /// refuses any endpoint that is not https, and the local provider (the
    /// dev stack's and the tests') is plain http on loopback. The issuer
    /// itself is checked to be https or loopback by the configuration.
    pub async fn revoke(&self, refresh_token: &str) -> Result<bool, OidcError> {
        let Some(url) = self.revocation.as_ref() else {
            return Ok(false);
        };
        let response = self
            .http
            .post(url.url().clone())
            .form(&[
                ("token", refresh_token),
                ("token_type_hint", "refresh_token"),
                ("client_id", self.client.client_id().as_str()),
            ])
            .send()
            .await
            .map_err(|e| OidcError::Unreachable(chain(&e)))?;
        // RFC 7009: 200 whether or not the token was still valid.
        if response.status().is_success() {
            Ok(true)
        } else {
            Err(OidcError::Protocol(format!(
                "revocation answered {}",
                response.status()
            )))
        }
    }
}

impl Provider {
    fn identity(
        &self,
        response: &CoreTokenResponse,
        nonce: impl openidconnect::NonceVerifier,
    ) -> Result<Option<Identity>, OidcError> {
        let Some(id_token) = response.id_token() else {
            return Ok(None);
        };
        let claims = id_token
            .claims(&self.client.id_token_verifier(), nonce)
            .map_err(|e| OidcError::InvalidIdToken(chain(&e)))?;
        Ok(Some(Identity {
            subject: claims.subject().as_str().to_owned(),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.as_str().to_owned()),
            email: claims.email().map(|e| e.as_str().to_owned()),
            picture: claims
                .picture()
                .and_then(|p| p.get(None))
                .map(|p| p.as_str().to_owned()),
        }))
    }
}

fn grant(response: &CoreTokenResponse, identity: Option<Identity>) -> Grant {
    Grant {
        access_token: response.access_token().secret().clone(),
        expires_in: response.expires_in(),
        refresh_token: response.refresh_token().map(|t| t.secret().clone()),
        identity,
    }
}

type TokenError = RequestTokenError<
    openidconnect::HttpClientError<reqwest::Error>,
    openidconnect::StandardErrorResponse<CoreErrorResponseType>,
>;

fn token_error(err: TokenError) -> OidcError {
    match err {
        RequestTokenError::ServerResponse(body) => {
            let detail = body
                .error_description()
                .cloned()
                .unwrap_or_else(|| body.error().to_string());
            if *body.error() == CoreErrorResponseType::InvalidGrant {
                OidcError::InvalidGrant(detail)
            } else {
                OidcError::Protocol(format!("{}: {detail}", body.error()))
            }
        }
        RequestTokenError::Request(err) => OidcError::Unreachable(chain(&err)),
        other => OidcError::Protocol(chain(&other)),
    }
}

/// An error and its causes on one line, for logs and messages.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}
