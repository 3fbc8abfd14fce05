//! Who is signed in, as shown in the header: built from the proxy's profile
//! (`POST /api/user`) or, until that answers, from the ID token's claims; kept
//! in `user.json` in the app's data dir so an offline start shows it. The file
//! holds no secret.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use confab_wire::auth::User;
use confab_wire::conversations::Profile;

use crate::oidc::Identity;

/// Largest avatar kept (bytes, before base64).
pub const MAX_AVATAR: usize = 256 * 1024;
const AVATAR_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/svg+xml",
];

pub fn from_identity(identity: &Identity) -> User {
    User {
        id: identity.subject.clone(),
        name: identity
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(|| identity.email.clone())
            .unwrap_or_else(|| identity.subject.clone()),
        email: identity.email.clone(),
        avatar: None,
    }
}

pub fn from_profile(profile: &Profile) -> User {
    let name = [profile.first_name.as_deref(), profile.last_name.as_deref()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    User {
        id: profile.clerk_id.clone(),
        name: if name.is_empty() {
            profile
                .email
                .clone()
                .unwrap_or_else(|| profile.clerk_id.clone())
        } else {
            name
        },
        email: profile.email.clone(),
        avatar: None,
    }
}

/// The avatar as a `data:` URL the webview can show under its CSP (`img-src
/// 'self' data:`): a `data:image/...;base64` URL is checked and kept; an
/// `https` URL is fetched once, bounded in size and type. Inside an `<img>`
/// even SVG cannot run script.
pub async fn avatar(http: &reqwest::Client, image_url: &str) -> Option<String> {
    if let Some(rest) = image_url.strip_prefix("data:") {
        let (kind, data) = rest.split_once(";base64,")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .ok()?;
        return (AVATAR_TYPES.contains(&kind) && bytes.len() <= MAX_AVATAR)
            .then(|| image_url.to_owned());
    }
    let url = url::Url::parse(image_url).ok()?;
    if url.scheme() != "https" {
        return None;
    }
    let mut response = http
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?
        .error_for_status()
        .ok()?;
    let kind = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)?
        .to_str()
        .ok()?
        .split(';')
        .next()?
        .trim()
        .to_ascii_lowercase();
    if !AVATAR_TYPES.contains(&kind.as_str()) {
        return None;
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_AVATAR {
            return None;
        }
    }
    Some(format!(
        "data:{kind};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// `user.json` in the app's data dir.
#[derive(Debug, Clone)]
pub struct UserCache {
    path: PathBuf,
}

impl UserCache {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("user.json"),
        }
    }

    pub fn load(&self) -> Option<User> {
        let text = std::fs::read(&self.path).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Written to a temporary file and renamed, so a crash leaves the old or
    /// the new file, never half of one.
    pub fn save(&self, user: &User) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(user).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, &self.path)
    }

    pub fn clear(&self) -> std::io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn data_avatars_are_checked_not_fetched() {
        let http = reqwest::Client::new();
        let png = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode([1u8, 2, 3])
        );
        assert_eq!(avatar(&http, &png).await.as_deref(), Some(png.as_str()));
        for bad in [
            "data:text/html;base64,PHNjcmlwdD4=",
            "data:image/png,notbase64",
            "data:image/png;base64,@@@",
            "javascript:alert(1)",
            "http://example.com/a.png",
            "",
        ] {
            assert_eq!(avatar(&http, bad).await, None, "{bad}");
        }
        let huge = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(vec![0u8; MAX_AVATAR + 1])
        );
        assert_eq!(avatar(&http, &huge).await, None);
    }

    #[test]
    fn the_cache_round_trips_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        let cache = UserCache::new(dir.path());
        assert_eq!(cache.load(), None);
        let user = User {
            id: "user_1".into(),
            name: "Ada".into(),
            email: None,
            avatar: None,
        };
        cache.save(&user).unwrap();
        assert_eq!(cache.load(), Some(user));
        cache.clear().unwrap();
        cache.clear().unwrap();
        assert_eq!(cache.load(), None);
    }
}
