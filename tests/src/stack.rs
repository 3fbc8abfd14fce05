//! Everything a signed-in app needs, started for one test: a desktop (X and
//! D-Bus), a home with gnome-keyring and a stand-in browser, the OpenID
//! provider and the proxy on an embedded store.

use std::path::PathBuf;
use std::time::Duration;

use crate::browser::Browser;
use crate::desktop::{App, AppHome, AppOptions, Desktop};
use crate::keyring::Keyring;
use crate::model::Model;
use crate::moto::Moto;
use crate::oidc::{CLIENT_ID, OPAQUE, Provider};
use crate::paths;
use crate::proxy::Proxy;

/// How long a screen may take to change.
pub const UI: Duration = Duration::from_secs(20);

pub struct Stack {
    // Dropped in this order, after the app (tests quit it first).
    pub provider: Provider,
    pub proxy: Proxy,
    pub browser: Browser,
    pub keyring: Keyring,
    pub home: AppHome,
    pub desktop: Desktop,
    pub artifacts: PathBuf,
    /// The proxy's `--store` argument and environment, to restart it alike.
    store: String,
    store_env: Vec<(&'static str, String)>,
    /// Dropped last: the proxy's DynamoDB, when the stack runs on it.
    pub moto: Option<Moto>,
    /// The model stand-in the proxy's replies come from, when on.
    pub model: Option<Model>,
    /// The provider's grants and keys, kept across its restarts.
    provider_state: tempfile::TempDir,
    /// The provider's environment, to restart it alike.
    provider_env: Vec<(&'static str, &'static str)>,
}

impl Stack {
    /// With the proxy on its embedded store; `name` is the artifacts folder
    /// (`tests/artifacts/<name>/`).
    pub fn start(name: &str) -> anyhow::Result<Self> {
        let artifacts = paths::artifacts_dir(name)?;
        let store = format!("--store=sqlite:{}", artifacts.join("proxy.db").display());
        Self::with_store(artifacts, store, Vec::new(), None)
    }

    /// As [`Stack::start`], with a provider that issues opaque access tokens
    /// (a Clerk OAuth application without JWT access tokens) and a proxy that
    /// verifies them through its Clerk Backend API stand-in.
    pub fn with_opaque_tokens(name: &str) -> anyhow::Result<Self> {
        let artifacts = paths::artifacts_dir(name)?;
        let store = format!("--store=sqlite:{}", artifacts.join("proxy.db").display());
        Self::build(artifacts, store, Vec::new(), None, OPAQUE.to_vec())
    }

    /// With the proxy on its embedded store and assistant replies from the
    /// model stand-in, a word every `word_delay_ms`.
    pub fn with_assistant(name: &str, word_delay_ms: u64) -> anyhow::Result<Self> {
        let artifacts = paths::artifacts_dir(name)?;
        let model = Model::start(&artifacts, word_delay_ms)?;
        let store = format!("--store=sqlite:{}", artifacts.join("proxy.db").display());
        let mut stack = Self::with_store(artifacts, store, model.proxy_env(), None)?;
        stack.model = Some(model);
        Ok(stack)
    }

    /// With the proxy on DynamoDB (a moto server, its table set up).
    pub fn on_moto(name: &str) -> anyhow::Result<Self> {
        let artifacts = paths::artifacts_dir(name)?;
        let moto = Moto::with_table(&artifacts)?;
        let env = moto.aws_env();
        Self::with_store(artifacts, "--store=dynamodb".into(), env, Some(moto))
    }

    fn with_store(
        artifacts: PathBuf,
        store: String,
        store_env: Vec<(&'static str, String)>,
        moto: Option<Moto>,
    ) -> anyhow::Result<Self> {
        Self::build(artifacts, store, store_env, moto, Vec::new())
    }

    fn build(
        artifacts: PathBuf,
        store: String,
        mut store_env: Vec<(&'static str, String)>,
        moto: Option<Moto>,
        provider_env: Vec<(&'static str, &'static str)>,
    ) -> anyhow::Result<Self> {
        let desktop = Desktop::start(&artifacts)?;
        let home = AppHome::new()?;
        let keyring = Keyring::start(&desktop, &home)?;
        let browser = Browser::install(&home)?;
        let provider_state = tempfile::tempdir()?;
        let provider = Provider::persistent(&artifacts, provider_state.path(), 0, &provider_env)?;
        if provider_env.contains(&OPAQUE[0]) {
            store_env.extend(provider.clerk_backend_env());
        }
        let proxy = Proxy::start(&provider.issuer, &artifacts, &store, &store_env)?;
        Ok(Self {
            provider,
            proxy,
            browser,
            keyring,
            home,
            desktop,
            artifacts,
            store,
            store_env,
            moto,
            model: None,
            provider_state,
            provider_env,
        })
    }

    pub fn options(&self, args: Vec<String>) -> AppOptions {
        AppOptions {
            args,
            env: vec![
                ("CONFAB_ISSUER".into(), self.provider.issuer.clone()),
                ("CONFAB_CLIENT_ID".into(), CLIENT_ID.into()),
                ("CONFAB_PROXY_URL".into(), self.proxy.base.clone()),
                ("HOME".into(), self.home.path().display().to_string()),
            ],
            ..AppOptions::default()
        }
    }

    /// Stops the proxy (the network is gone); [`Stack::restart_proxy`] brings
    /// it back on the same address and data.
    pub fn stop_proxy(&mut self) -> anyhow::Result<()> {
        self.proxy
            .service
            .signal(nix::sys::signal::Signal::SIGTERM)?;
        self.proxy.service.wait_exit(Duration::from_secs(10))?;
        Ok(())
    }

    /// Starts the proxy again on its address and store (stopping it first if
    /// it runs), with `env` (e.g. a rate limit).
    pub fn restart_proxy(&mut self, env: &[(&str, String)]) -> anyhow::Result<()> {
        // Stopped first if it still runs: the address must be free.
        let _ = self.proxy.service.signal(nix::sys::signal::Signal::SIGTERM);
        self.proxy.service.wait_exit(Duration::from_secs(10))?;
        let listen = self.proxy.base.trim_start_matches("http://").to_owned();
        let mut all = self.store_env.clone();
        all.extend(env.iter().map(|(k, v)| (*k, v.clone())));
        self.proxy = Proxy::start_at(
            &self.provider.issuer,
            &self.artifacts,
            &self.store,
            &listen,
            &all,
        )?;
        Ok(())
    }

    /// Stops the OpenID provider; [`Stack::restart_provider`] brings it back
    /// with its grants, as Clerk would be after an outage.
    pub fn stop_provider(&mut self) {
        self.provider = Provider::running_at(&self.provider.issuer);
    }

    pub fn restart_provider(&mut self) -> anyhow::Result<()> {
        let port = self.provider.port()?;
        self.stop_provider();
        let artifacts = self.artifacts.join("provider-again");
        std::fs::create_dir_all(&artifacts)?;
        self.provider = Provider::persistent(
            &artifacts,
            self.provider_state.path(),
            port,
            &self.provider_env,
        )?;
        Ok(())
    }

    /// The server's state for `login`, read as another client would.
    pub async fn server_conversations(
        &self,
        login: &str,
    ) -> anyhow::Result<Vec<confab_wire::conversations::ConversationDetail>> {
        self.proxy.conversations_of(&self.provider, login).await
    }

    /// Installs the app's `.desktop` entry (the deb/rpm template, rendered
    /// for the binary under test) as the handler of `app.confab.desktop://`
    /// links, as installing the package does. A debug build registers itself;
    /// a release build relies on this.
    pub fn install_app_entry(&self) -> anyhow::Result<()> {
        let entry = paths::desktop_entry(&paths::app_binary()?.display().to_string())?;
        let applications = self.home.path().join("data").join("applications");
        std::fs::create_dir_all(&applications)?;
        std::fs::write(applications.join("confab.desktop"), entry)?;
        let mimeapps = self.home.path().join("config").join("mimeapps.list");
        let mut list = std::fs::read_to_string(&mimeapps)
            .unwrap_or_else(|_| "[Default Applications]\n".into());
        list.push_str("x-scheme-handler/app.confab.desktop=confab.desktop\n");
        std::fs::write(mimeapps, list)?;
        Ok(())
    }

    pub async fn launch(&self) -> anyhow::Result<App> {
        App::launch(&self.desktop, &self.home, self.options(Vec::new())).await
    }

    /// Clicks "Continue in browser" and returns the URL the browser was sent to.
    pub async fn continue_in_browser(&self, app: &App) -> anyhow::Result<String> {
        let before = self.browser.opened().len();
        app.click("#continue-in-browser").await?;
        let url = self.browser.wait_for(before + 1, UI).await?;
        app.wait_text("#waiting", UI, |t| {
            t.contains("Finish signing in in your browser")
        })
        .await?;
        Ok(url)
    }

    /// Signs `login` in through the browser and the OS link handler, and
    /// waits for the header to show `name`.
    pub async fn sign_in(&self, app: &App, login: &str, name: &str) -> anyhow::Result<()> {
        let authorize = self.continue_in_browser(app).await?;
        let callback = self.provider.authorize(&authorize, login).await?;
        self.desktop.open_url(&self.home, &callback)?;
        app.wait_text("#user-name", UI, |t| t == name).await?;
        Ok(())
    }
}
