//! The local OpenID provider standing in for Clerk (`tests/oidc/provider.mjs`,
//! oidc-provider configured with Clerk's paths), and a headless sign-in against
//! it: the authorization code flow with PKCE, driven over plain HTTP.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::paths;
use crate::process::Service;

pub const CLIENT_ID: &str = "confab-desktop";
pub const REDIRECT_URI: &str = "app.confab.desktop://oauth/callback";

pub struct Provider {
    pub issuer: String,
    service: Service,
}

/// Tokens from a completed sign-in.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
}

impl Provider {
    /// Starts the provider on a free port. `env` adds variables such as
    /// `OIDC_ACCESS_TTL` or `OIDC_RESOURCE`.
    pub fn start(artifacts: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = paths::workspace_root().join("tests").join("oidc");
        if !dir.join("node_modules").is_dir() {
            bail!(
                "{}/node_modules is missing: run scripts/setup (npm ci there)",
                dir.display()
            );
        }
        let mut cmd = Command::new("node");
        cmd.current_dir(&dir)
            .args(["provider.mjs", "--port", "0"])
            .envs(env.iter().copied());
        let mut service = Service::spawn(cmd, "oidc-provider", artifacts)?;
        let line = service.wait_for_line(Duration::from_secs(20), |l| l.starts_with("issuer="))?;
        let issuer = line.trim_start_matches("issuer=").trim().to_owned();
        Ok(Self { issuer, service })
    }

    pub fn service(&mut self) -> &mut Service {
        &mut self.service
    }

    /// Signs `login` in without a browser and returns the tokens.
    pub async fn sign_in(&self, login: &str) -> anyhow::Result<Tokens> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?;
        let verifier = format!(
            "{}{}{}",
            ulid::Ulid::new(),
            ulid::Ulid::new(),
            ulid::Ulid::new()
        );
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let state = ulid::Ulid::new().to_string();
        let nonce = ulid::Ulid::new().to_string();

        let authorize = http
            .get(format!("{}/oauth/authorize", self.issuer))
            .query(&[
                ("client_id", CLIENT_ID),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT_URI),
                ("scope", "openid profile email offline_access"),
                ("state", &state),
                ("nonce", &nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .send()
            .await?;
        let interaction = self.location(&authorize)?;
        let uid = interaction
            .rsplit('/')
            .next()
            .context("no interaction id")?
            .to_owned();
        let login_reply = http
            .post(format!("{}/interaction/{uid}/login", self.issuer))
            .form(&[("login", login)])
            .send()
            .await?;
        let resume = self.location(&login_reply)?;
        let done = http.get(&resume).send().await?;
        let callback = self.location(&done)?;
        let url = reqwest::Url::parse(&callback).context("callback is not a URL")?;
        let param = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        if param("state").as_deref() != Some(state.as_str()) {
            bail!("state mismatch in {callback}");
        }
        let code = param("code").with_context(|| format!("no code in {callback}"))?;
        let tokens = http
            .post(format!("{}/oauth/token", self.issuer))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", CLIENT_ID),
                ("code", &code),
                ("code_verifier", &verifier),
                ("redirect_uri", REDIRECT_URI),
            ])
            .send()
            .await?;
        if !tokens.status().is_success() {
            bail!(
                "token exchange failed: {} {}",
                tokens.status(),
                tokens.text().await.unwrap_or_default()
            );
        }
        Ok(tokens.json().await?)
    }

    /// An absolute redirect target from a 30x answer.
    fn location(&self, response: &reqwest::Response) -> anyhow::Result<String> {
        if !response.status().is_redirection() {
            bail!(
                "expected a redirect from {}, got {}",
                response.url(),
                response.status()
            );
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .context("redirect without Location")?;
        Ok(if location.starts_with('/') {
            format!("{}{location}", self.issuer)
        } else {
            location.to_owned()
        })
    }
}
