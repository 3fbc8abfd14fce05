//! The desktop's session and sync engine without a window: a user signed in
//! at the real provider through `confab_session::Session` (secrets in memory),
//! a cache on disk, and an engine talking to the real proxy. Several of these
//! for one user are several devices.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use confab_cache::Cache;
use confab_session::{AuthConfig, MemoryStore, Session, Vault};
use confab_sync::Engine;
use confab_wire::auth::AuthState;
use tempfile::TempDir;

use crate::oidc::{CLIENT_ID, Provider};

/// One signed-in device.
pub struct Device {
    pub session: Session,
    pub engine: Arc<Engine>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub dir: TempDir,
}

impl Drop for Device {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

pub fn config(issuer: &str, proxy_url: &str) -> anyhow::Result<AuthConfig> {
    let env: HashMap<&str, String> = HashMap::from([
        ("CONFAB_ISSUER", issuer.to_owned()),
        ("CONFAB_CLIENT_ID", CLIENT_ID.to_owned()),
        ("CONFAB_PROXY_URL", proxy_url.to_owned()),
    ]);
    Ok(AuthConfig::load(Path::new("/nonexistent"), &|n| {
        env.get(n).cloned()
    })?)
}

/// A session for `login`, signed in through the provider's browser steps.
pub async fn signed_in(
    provider: &Provider,
    proxy_url: &str,
    login: &str,
    dir: &Path,
) -> anyhow::Result<Session> {
    let session = Session::new(
        Ok(config(&provider.issuer, proxy_url)?),
        Vault::new(MemoryStore::default()),
        dir,
    );
    session.start().await;
    let authorize = session.begin_sign_in().await?;
    let callback = provider.authorize(authorize.as_str(), login).await?;
    session.handle_link(&url::Url::parse(&callback)?).await;
    match session.state() {
        AuthState::SignedIn { .. } => Ok(session),
        other => bail!("not signed in: {other:?}"),
    }
}

impl Device {
    /// Signs `login` in and starts syncing into a fresh cache.
    pub async fn start(provider: &Provider, proxy_url: &str, login: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let session = signed_in(provider, proxy_url, login, dir.path()).await?;
        let cache = Arc::new(Cache::open(&dir.path().join("cache.db"))?);
        let engine = Engine::new(cache, session.clone());
        let tasks = engine.spawn();
        Ok(Self {
            session,
            engine,
            tasks,
            dir,
        })
    }

    /// Stops syncing (as if the app were closed, or the network gone for
    /// this device only).
    pub fn stop_sync(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }

    /// Syncs again: push first, then pull, as at every start.
    pub fn start_sync(&mut self) {
        self.stop_sync();
        self.tasks = self.engine.spawn();
    }

    pub fn cache(&self) -> &Cache {
        self.engine.cache()
    }

    /// Waits until `check` holds for this device's cache.
    pub async fn eventually<T>(
        &self,
        limit: Duration,
        what: &str,
        check: impl Fn(&Cache) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(value) = check(self.cache()) {
                return Ok(value);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(anyhow::anyhow!("{what}: not within {limit:?}"))
                    .with_context(|| format!("sync status: {:?}", self.engine.status()));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}
