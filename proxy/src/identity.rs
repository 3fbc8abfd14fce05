//! Where profile fields come from: the identity provider, never a request body.
//!
//! With `CLERK_SECRET_KEY`, Clerk's Backend API (`GET /v1/users/{id}`); without
//! it, the provider's OIDC userinfo endpoint called with the caller's own token.

use serde::Deserialize;

use crate::error::ApiError;
use crate::ids::UserId;
use crate::store::ProfileFields;

pub const CLERK_API: &str = "https://api.clerk.com";

#[derive(Debug, Clone)]
pub enum Identity {
    Userinfo { url: String },
    ClerkBackend { api: String, secret: String },
}

#[derive(Deserialize)]
struct Userinfo {
    sub: String,
    email: Option<String>,
    given_name: Option<String>,
    family_name: Option<String>,
    picture: Option<String>,
}

#[derive(Deserialize)]
struct ClerkUser {
    id: String,
    first_name: Option<String>,
    last_name: Option<String>,
    image_url: Option<String>,
    primary_email_address_id: Option<String>,
    #[serde(default)]
    email_addresses: Vec<ClerkEmail>,
}

#[derive(Deserialize)]
struct ClerkEmail {
    id: String,
    email_address: String,
}

/// Clerk's webhook payload for user.created / user.updated has the same shape.
pub fn fields_from_clerk_user(value: serde_json::Value) -> Result<(String, ProfileFields), String> {
    let user: ClerkUser = serde_json::from_value(value).map_err(|e| e.to_string())?;
    let email = user
        .email_addresses
        .iter()
        .find(|e| Some(&e.id) == user.primary_email_address_id.as_ref())
        .or(user.email_addresses.first())
        .map(|e| e.email_address.clone());
    Ok((
        user.id,
        ProfileFields {
            email,
            first_name: user.first_name.filter(|s| !s.is_empty()),
            last_name: user.last_name.filter(|s| !s.is_empty()),
            image_url: user.image_url.filter(|s| !s.is_empty()),
        },
    ))
}

impl Identity {
    pub async fn fields(
        &self,
        http: &reqwest::Client,
        user: &UserId,
        token: &str,
    ) -> Result<ProfileFields, ApiError> {
        match self {
            Identity::Userinfo { url } => {
                let response = http
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_err(unreachable)?;
                if response.status().is_client_error() {
                    tracing::warn!(status = %response.status(), "userinfo refused the caller's token");
                    return Err(ApiError::new(
                        confab_wire::ErrorCode::Unauthenticated,
                        "the sign-in provider does not share your profile with this token: sign in \
                         with the profile and email scopes (or set CLERK_SECRET_KEY on the proxy)",
                    ));
                }
                if !response.status().is_success() {
                    tracing::warn!(status = %response.status(), "userinfo failed");
                    return Err(ApiError::unavailable(
                        "your profile could not be read from the sign-in provider; retry shortly",
                    ));
                }
                let info: Userinfo = response.json().await.map_err(unreachable)?;
                if info.sub != user.as_str() {
                    tracing::warn!("userinfo answered for another subject than the token's");
                    return Err(ApiError::new(
                        confab_wire::ErrorCode::Unauthenticated,
                        "the sign-in provider answered for another user: sign in again",
                    ));
                }
                Ok(ProfileFields {
                    email: info.email,
                    first_name: info.given_name,
                    last_name: info.family_name,
                    image_url: info.picture,
                })
            }
            Identity::ClerkBackend { api, secret } => {
                let response = http
                    .get(format!("{api}/v1/users/{user}"))
                    .bearer_auth(secret)
                    .send()
                    .await
                    .map_err(unreachable)?;
                if !response.status().is_success() {
                    tracing::warn!(status = %response.status(), "Clerk's Backend API refused");
                    return Err(ApiError::unavailable(
                        "your profile could not be read from Clerk; retry shortly",
                    ));
                }
                let value: serde_json::Value = response.json().await.map_err(unreachable)?;
                let (id, fields) = fields_from_clerk_user(value).map_err(|e| {
                    tracing::warn!(error = %e, "unexpected Clerk user shape");
                    ApiError::unavailable("Clerk answered in an unexpected shape")
                })?;
                if id != user.as_str() {
                    return Err(ApiError::internal("Clerk answered for another user"));
                }
                Ok(fields)
            }
        }
    }
}

fn unreachable(err: reqwest::Error) -> ApiError {
    tracing::warn!(error = %err, "identity provider unreachable");
    ApiError::unavailable("the sign-in provider cannot be reached; retry shortly")
}
