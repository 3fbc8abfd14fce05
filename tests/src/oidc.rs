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
/// The secret key the provider's Clerk Backend API stand-in accepts.
pub const SECRET_KEY: &str = "sk_test_confab_stand_in";
/// The provider's environment for opaque access tokens, verified through its
/// Clerk Backend API stand-in.
pub const OPAQUE: [(&str, &str); 2] = [
    ("OIDC_ACCESS_TOKEN_FORMAT", "opaque"),
    ("OIDC_CLERK_SECRET_KEY", SECRET_KEY),
];

pub struct Provider {
    pub issuer: String,
    // None for a provider someone else started (`scripts/run`).
    _service: Option<Service>,
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
        Self::start_on(artifacts, 0, env)
    }

    /// Starts the provider on `port` (0: any free port), e.g. again on the
    /// port of one that was stopped. It keeps no state across restarts (see
    /// [`Provider::persistent`]).
    pub fn start_on(artifacts: &Path, port: u16, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let dir = paths::workspace_root().join("tests").join("oidc");
        // The Node 22 pinned in tests/oidc/package.json (npm `node`), not the
        // system's: Node 22 is what oidc-provider 9 supports.
        let node = dir.join("node_modules").join(".bin").join("node");
        if !node.is_file() {
            bail!(
                "{} is missing: run scripts/setup (npm ci in tests/oidc)",
                node.display()
            );
        }
        let mut cmd = Command::new(&node);
        cmd.current_dir(&dir)
            .args(["provider.mjs", "--port", &port.to_string()])
            // A state file exported in the shell would be shared by parallel tests.
            .env_remove("OIDC_STATE_FILE")
            .envs(env.iter().copied());
        let mut service = Service::spawn(cmd, "oidc-provider", artifacts)?;
        let log = service.log_path().to_path_buf();
        // Generous: node loads oidc-provider from a cold disk in a fresh clone,
        // while other suites keep the two cores busy (a start normally takes
        // under a second).
        let line = service
            .wait_for_line(Duration::from_secs(30), |l| l.starts_with("issuer="))
            .with_context(|| format!("the OpenID provider did not start; see {}", log.display()))?;
        let issuer = line.trim_start_matches("issuer=").trim().to_owned();
        Ok(Self {
            issuer,
            _service: Some(service),
        })
    }

    /// Starts the provider on `port` (0: any free port) keeping its state in
    /// `state_dir`: grants, sessions and tokens in `oidc-state.json`
    /// (`OIDC_STATE_FILE`), the signing key in `oidc-jwks.json`
    /// (`OIDC_JWKS_FILE`). Started again with the same `state_dir` on the
    /// same port, after the first one was dropped, it has the same issuer, keys
    /// and grants: tokens issued before still verify, refresh tokens still
    /// refresh, revoked ones stay revoked.
    ///
    /// ```ignore
    /// let state = tempfile::tempdir()?;
    /// let provider = Provider::persistent(&artifacts, state.path(), 0, &[])?;
    /// let port = provider.port()?;
    /// drop(provider);
    /// // Its own artifacts folder: a second start would overwrite the first one's log.
    /// let provider = Provider::persistent(&artifacts_again, state.path(), port, &[])?;
    /// ```
    pub fn persistent(
        artifacts: &Path,
        state_dir: &Path,
        port: u16,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = state_dir
            .to_str()
            .with_context(|| format!("{} is not UTF-8", state_dir.display()))?;
        let state = format!("{dir}/oidc-state.json");
        let jwks = format!("{dir}/oidc-jwks.json");
        let mut all = vec![
            ("OIDC_STATE_FILE", state.as_str()),
            ("OIDC_JWKS_FILE", jwks.as_str()),
        ];
        all.extend_from_slice(env);
        Self::start_on(artifacts, port, &all)
    }

    /// Starts a provider that issues opaque access tokens, verified through
    /// its Clerk Backend API stand-in (as a Clerk OAuth application without
    /// JWT access tokens).
    pub fn opaque(artifacts: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let mut all = OPAQUE.to_vec();
        all.extend_from_slice(env);
        Self::start(artifacts, &all)
    }

    /// The proxy's environment for this provider's Clerk Backend API.
    pub fn clerk_backend_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CLERK_SECRET_KEY", SECRET_KEY.to_owned()),
            ("CLERK_API_URL", self.issuer.clone()),
        ]
    }

    /// Calls made to the Backend API stand-in's token verification so far.
    pub async fn verify_calls(&self) -> anyhow::Result<u64> {
        let counts: serde_json::Value = reqwest::get(format!("{}/standin/clerk", self.issuer))
            .await?
            .error_for_status()?
            .json()
            .await?;
        counts["verifyCalls"]
            .as_u64()
            .context("no verifyCalls in the stand-in's answer")
    }

    /// Makes every verification answer `status` (with `Retry-After`), or
    /// answer normally again with `None`.
    pub async fn fail_verification(
        &self,
        status: Option<u16>,
        retry_after: Option<u64>,
    ) -> anyhow::Result<()> {
        reqwest::Client::new()
            .post(format!("{}/standin/clerk", self.issuer))
            .json(&serde_json::json!({"status": status, "retryAfter": retry_after}))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// The port in the issuer, to start the provider again on it.
    pub fn port(&self) -> anyhow::Result<u16> {
        reqwest::Url::parse(&self.issuer)?
            .port()
            .with_context(|| format!("no port in the issuer {}", self.issuer))
    }

    /// A provider already running at `issuer` (started by `scripts/run`), to
    /// play the user in the browser against it.
    pub fn running_at(issuer: &str) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            _service: None,
        }
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

        let mut authorize = reqwest::Url::parse(&format!("{}/oauth/authorize", self.issuer))?;
        authorize.query_pairs_mut().extend_pairs([
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "openid profile email offline_access"),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        let callback = self.authorize(authorize.as_str(), login).await?;
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

    /// Plays the user in the browser: follows `authorize_url` (as the app
    /// built it), signs in as `login`, and returns the callback URL the
    /// provider redirects to (`app.confab.desktop://oauth/callback?...`).
    pub async fn authorize(&self, authorize_url: &str, login: &str) -> anyhow::Result<String> {
        let http = Self::browser_client()?;
        let uid = self.interaction(&http, authorize_url).await?;
        let login_reply = http
            .post(format!("{}/interaction/{uid}/login", self.issuer))
            .form(&[("login", login)])
            .send()
            .await?;
        let resume = self.location(&login_reply)?;
        let done = http.get(&resume).send().await?;
        self.location(&done)
    }

    /// Plays a user who presses Cancel at the provider: the callback URL then
    /// carries `error=access_denied`.
    pub async fn deny(&self, authorize_url: &str) -> anyhow::Result<String> {
        let http = Self::browser_client()?;
        let uid = self.interaction(&http, authorize_url).await?;
        let abort = http
            .post(format!("{}/interaction/{uid}/abort", self.issuer))
            .send()
            .await?;
        let resume = self.location(&abort)?;
        let done = http.get(&resume).send().await?;
        self.location(&done)
    }

    fn browser_client() -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()?)
    }

    async fn interaction(
        &self,
        http: &reqwest::Client,
        authorize_url: &str,
    ) -> anyhow::Result<String> {
        if !authorize_url.starts_with(&format!("{}/", self.issuer)) {
            bail!("{authorize_url} is not this provider's");
        }
        let authorize = http.get(authorize_url).send().await?;
        let interaction = self.location(&authorize)?;
        Ok(interaction
            .rsplit('/')
            .next()
            .context("no interaction id")?
            .to_owned())
    }

    /// Revokes a token at the provider (RFC 7009), as an administrator or
    /// another device signing out would.
    pub async fn revoke(&self, token: &str) -> anyhow::Result<()> {
        let response = Self::browser_client()?
            .post(format!("{}/oauth/token/revoke", self.issuer))
            .form(&[("token", token), ("client_id", CLIENT_ID)])
            .send()
            .await?;
        if !response.status().is_success() {
            bail!("revocation failed: {}", response.status());
        }
        Ok(())
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
