//! The proxy binary as a real process on a free loopback port.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::oidc::CLIENT_ID;
use crate::paths;
use crate::process::Service;

pub struct Proxy {
    /// `http://127.0.0.1:PORT`, as the proxy printed it.
    pub base: String,
    pub service: Service,
}

impl Proxy {
    /// `confab-proxy serve` trusting `issuer`'s tokens for the test client,
    /// with `store` (a `--store=…` argument) and extra environment.
    pub fn start(
        issuer: &str,
        artifacts: &Path,
        store: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        Self::start_at(issuer, artifacts, store, "127.0.0.1:0", env)
    }

    /// As [`Proxy::start`], listening on `listen` (e.g. the address of a
    /// proxy that was stopped, to bring it back).
    pub fn start_at(
        issuer: &str,
        artifacts: &Path,
        store: &str,
        listen: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(paths::binary("confab-proxy")?);
        cmd.args(["serve", "--listen", listen])
            .args(["--clerk-issuer", issuer]);
        // The test client's tokens, unless the test names other clients.
        if !env.iter().any(|(k, _)| *k == "CLERK_OAUTH_CLIENT_IDS") {
            cmd.args(["--clerk-oauth-client-ids", CLIENT_ID]);
        }
        cmd.arg(store)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info,confab_proxy=debug");
        let mut service = Service::spawn(cmd, "proxy", artifacts)?;
        let line =
            service.wait_for_line(Duration::from_secs(10), |l| l.contains("listening on"))?;
        let base = line
            .rsplit(' ')
            .next()
            .with_context(|| format!("no address in {line:?}"))?
            .to_owned();
        Ok(Self { base, service })
    }

    /// An embedded store in `artifacts`.
    pub fn sqlite(issuer: &str, artifacts: &Path) -> anyhow::Result<Self> {
        let store = format!("--store=sqlite:{}", artifacts.join("proxy.db").display());
        Self::start(issuer, artifacts, &store, &[])
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `login`'s conversations with their messages, as the server holds them,
    /// read as another client of that user would (a token from `provider`).
    pub async fn conversations_of(
        &self,
        provider: &crate::oidc::Provider,
        login: &str,
    ) -> anyhow::Result<Vec<confab_wire::conversations::ConversationDetail>> {
        let token = provider.sign_in(login).await?.access_token;
        let http = reqwest::Client::new();
        let page: confab_wire::conversations::Page<confab_wire::conversations::Conversation> = http
            .get(self.url("/api/conversations?limit=200"))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut out = Vec::new();
        for c in page.items {
            out.push(
                http.get(self.url(&format!("/api/conversations/{}", c.id)))
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?,
            );
        }
        Ok(out)
    }
}
