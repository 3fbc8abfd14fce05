//! Where profile fields come from: the identity provider, never a request body.
//!
//! With `CLERK_SECRET_KEY`, Clerk's Backend API (`GET /v1/users/{id}`); without
//! it, the provider's OIDC userinfo endpoint called with the caller's own token.

use serde::Deserialize;

use crate::auth::ClerkBackend;
use crate::error::ApiError;
use crate::ids::UserId;
use crate::store::ProfileFields;

pub const CLERK_API: &str = "https://api.clerk.com";

#[derive(Debug, Clone)]
pub enum Identity {
    Userinfo { url: String },
    ClerkBackend(ClerkBackend),
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
            Identity::ClerkBackend(backend) => {
                let response = http
                    .get(format!("{}/v1/users/{user}", backend.api))
                    .bearer_auth(backend.secret.expose())
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

/// Which users' profiles were read from the provider lately: within
/// [`RECENT_FOR`], `POST /api/user` answers the stored profile instead of
/// asking the provider again, so one user cannot spend the operator's Clerk
/// quota. Bounded: at most [`RECENT_MAX`] users, the oldest forgotten first.
#[derive(Debug, Default)]
pub struct Recent {
    reads: std::sync::Mutex<std::collections::HashMap<UserId, std::time::Instant>>,
}

pub const RECENT_FOR: std::time::Duration = std::time::Duration::from_secs(60);
pub const RECENT_MAX: usize = 10_000;

impl Recent {
    /// Whether `user`'s profile was read within [`RECENT_FOR`].
    pub fn fresh(&self, user: &UserId) -> bool {
        self.reads
            .lock()
            .ok()
            .and_then(|reads| reads.get(user).copied())
            .is_some_and(|at| at.elapsed() < RECENT_FOR)
    }

    /// Remembers a read of `user`'s profile now.
    pub fn record(&self, user: &UserId) {
        let Ok(mut reads) = self.reads.lock() else {
            return;
        };
        reads.retain(|_, at| at.elapsed() < RECENT_FOR);
        if reads.len() >= RECENT_MAX
            && let Some(oldest) = reads
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(u, _)| u.clone())
        {
            reads.remove(&oldest);
        }
        reads.insert(user.clone(), std::time::Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_reads_are_remembered_and_bounded() {
        let recent = Recent::default();
        let ada = UserId::parse("user_ada").unwrap_or_else(|_| unreachable!());
        assert!(!recent.fresh(&ada));
        recent.record(&ada);
        assert!(recent.fresh(&ada));
        for i in 0..RECENT_MAX {
            let user = UserId::parse(&format!("user_{i}")).unwrap_or_else(|_| unreachable!());
            recent.record(&user);
        }
        let reads = recent.reads.lock().map(|r| r.len()).unwrap_or_default();
        assert_eq!(reads, RECENT_MAX);
        assert!(!recent.fresh(&ada), "the oldest went first");
    }
}
