//! The model stand-in (`confab-model-standin`) as a real process, and the
//! proxy settings that point at it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::paths;
use crate::process::Service;

pub use confab_model_standin::{Behaviour, STANDIN_MODEL, STANDIN_NAME};

pub struct Model {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub key: String,
    pub service: Service,
}

impl Model {
    /// On a free port, streaming a word every `word_delay_ms`.
    pub fn start(artifacts: &Path, word_delay_ms: u64) -> anyhow::Result<Self> {
        let key = "standin-key".to_owned();
        let mut cmd = Command::new(paths::binary("confab-model-standin")?);
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(["--word-delay-ms", &word_delay_ms.to_string()])
            .env("STANDIN_KEY", &key);
        let mut service = Service::spawn(cmd, "model-standin", artifacts)?;
        let line =
            service.wait_for_line(Duration::from_secs(10), |l| l.contains("listening on"))?;
        let url = line
            .rsplit(' ')
            .next()
            .with_context(|| format!("no address in {line:?}"))?
            .to_owned();
        Ok(Self { url, key, service })
    }

    /// The proxy's environment for replies from this stand-in.
    pub fn proxy_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ANTHROPIC_API_KEY", self.key.clone()),
            ("ANTHROPIC_BASE_URL", self.url.clone()),
            ("CONFAB_MODELS", format!("{STANDIN_MODEL}={STANDIN_NAME}")),
        ]
    }

    /// The next request meets `behaviour`.
    pub async fn next(&self, behaviour: &Behaviour) -> anyhow::Result<()> {
        reqwest::Client::new()
            .post(format!("{}/standin/next", self.url))
            .json(behaviour)
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// The bodies of the model requests received so far.
    pub async fn requests(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        Ok(reqwest::Client::new()
            .get(format!("{}/standin/requests", self.url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}
