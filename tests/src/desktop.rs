//! A real desktop for the app: an X server (Xvfb), a private D-Bus session, and
//! the app driven over WebDriver (tauri-driver in front of WebKitWebDriver).
//!
//! Each [`Desktop`] is isolated: its own display and bus, so single-instance, the
//! keyring and deep links of one test never see another test's app.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use tempfile::TempDir;

use crate::net::{free_port, wait_for_port};
use crate::paths;
use crate::process::Service;

const STARTUP: Duration = Duration::from_secs(20);

pub struct Desktop {
    // Held only to stop them on drop, in this order: the bus, then the X server.
    _bus: Service,
    _xvfb: Service,
    display: String,
    bus_address: String,
    runtime_dir: TempDir,
    artifacts: PathBuf,
}

impl Desktop {
    /// Starts Xvfb on a free display and a D-Bus session bus.
    pub fn start(artifacts: &Path) -> anyhow::Result<Self> {
        let mut xvfb = Command::new("Xvfb");
        // -displayfd 1: Xvfb picks a free display and prints its number on stdout.
        xvfb.args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1280x800x24",
            "-nolisten",
            "tcp",
        ]);
        let mut xvfb = Service::spawn(xvfb, "xvfb", artifacts)?;
        let number = xvfb.wait_for_line(STARTUP, |l| l.trim().parse::<u32>().is_ok())?;
        let display = format!(":{}", number.trim());

        let runtime_dir = tempfile::Builder::new()
            .prefix("confab-runtime-")
            .tempdir()
            .context("creating XDG_RUNTIME_DIR")?;
        let mut bus = Command::new("dbus-daemon");
        bus.args(["--session", "--nofork", "--print-address=1"])
            .arg(format!(
                "--address=unix:path={}",
                runtime_dir.path().join("bus").display()
            ))
            .env("DISPLAY", &display);
        let mut bus = Service::spawn(bus, "dbus", artifacts)?;
        let bus_address = bus.wait_for_line(STARTUP, |l| l.starts_with("unix:"))?;

        Ok(Self {
            _bus: bus,
            _xvfb: xvfb,
            display,
            bus_address: bus_address.trim().to_owned(),
            runtime_dir,
            artifacts: artifacts.to_path_buf(),
        })
    }

    pub fn display(&self) -> &str {
        &self.display
    }

    pub fn bus_address(&self) -> &str {
        &self.bus_address
    }

    /// The variables a program needs to live on this desktop.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DISPLAY".into(), self.display.clone()),
            ("DBUS_SESSION_BUS_ADDRESS".into(), self.bus_address.clone()),
            (
                "XDG_RUNTIME_DIR".into(),
                self.runtime_dir.path().display().to_string(),
            ),
            ("GDK_BACKEND".into(), "x11".into()),
            // WebKitGTK's DMA-BUF renderer draws nothing under Xvfb.
            ("WEBKIT_DISABLE_DMABUF_RENDERER".into(), "1".into()),
            ("LIBGL_ALWAYS_SOFTWARE".into(), "1".into()),
        ]
    }

    /// Saves the whole screen as a PNG, the way a person would see it.
    pub fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        screenshot(&self.display, path)
    }

    pub fn artifacts(&self) -> &Path {
        &self.artifacts
    }

    /// Opens `url` the way the desktop does when a link is clicked: `gio open`
    /// looks up the scheme's handler in `home` (`mimeapps.list`, `.desktop`
    /// entries) and launches it. Plain `xdg-open` without a desktop
    /// environment cannot launch the handler Tauri registers.
    pub fn open_url(&self, home: &AppHome, url: &str) -> anyhow::Result<()> {
        let out = Command::new("gio")
            .args(["open", url])
            .envs(self.env())
            .envs(home.env())
            .env("HOME", home.path())
            .output()
            .context("running gio open")?;
        if !out.status.success() {
            bail!(
                "gio open failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

/// A user's home for the app: data, config, cache and state folders (XDG) that
/// outlive one launch, so a test can restart the app on the same data.
pub struct AppHome {
    dir: TempDir,
}

impl AppHome {
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("confab-home-")
            .tempdir()
            .context("creating the app's home")?;
        for sub in ["data", "config", "cache", "state"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where Tauri keeps the app's data (`app_data_dir`) on Linux.
    pub fn app_data_dir(&self) -> PathBuf {
        self.dir.path().join("data").join("app.confab.desktop")
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let p = self.dir.path();
        vec![
            ("XDG_DATA_HOME".into(), p.join("data").display().to_string()),
            (
                "XDG_CONFIG_HOME".into(),
                p.join("config").display().to_string(),
            ),
            (
                "XDG_CACHE_HOME".into(),
                p.join("cache").display().to_string(),
            ),
            (
                "XDG_STATE_HOME".into(),
                p.join("state").display().to_string(),
            ),
        ]
    }
}

#[derive(Default, Clone)]
pub struct AppOptions {
    /// Extra command-line arguments for the app.
    pub args: Vec<String>,
    /// Extra environment variables for the app.
    pub env: Vec<(String, String)>,
    /// Another build of the app than `target/debug/confab` (an installed one).
    pub binary: Option<PathBuf>,
}

/// The desktop app running in a real window, driven over WebDriver.
pub struct App {
    pub client: Client,
    display: String,
    artifacts: PathBuf,
    /// The app's own log file in its home.
    log: PathBuf,
    // Set by a clean `quit`; any other end (a panic, an early `?`) leaves a screenshot.
    finished: bool,
    // Stops tauri-driver, WebKitWebDriver and the app (one process group).
    driver: Service,
}

impl App {
    /// Launches the built app (`target/debug/confab`) on `desktop` with `home`.
    pub async fn launch(
        desktop: &Desktop,
        home: &AppHome,
        options: AppOptions,
    ) -> anyhow::Result<Self> {
        Self::launch_within(desktop, home, options, STARTUP).await
    }

    /// Like [`App::launch`], waiting up to `limit` for the window (a launcher
    /// script may build first).
    pub async fn launch_within(
        desktop: &Desktop,
        home: &AppHome,
        options: AppOptions,
        limit: Duration,
    ) -> anyhow::Result<Self> {
        // A free port can be taken by another test between finding it and the
        // driver binding it: then WebKitWebDriver cannot listen, and one more
        // try with new ports is enough.
        match Self::try_launch(desktop, home, &options, limit).await {
            Err(Launch::PortTaken(log)) => {
                eprintln!("WebKitWebDriver's port was taken ({log}); launching again");
                Self::try_launch(desktop, home, &options, limit)
                    .await
                    .map_err(Launch::into_error)
            }
            other => other.map_err(Launch::into_error),
        }
    }

    async fn try_launch(
        desktop: &Desktop,
        home: &AppHome,
        options: &AppOptions,
        limit: Duration,
    ) -> Result<Self, Launch> {
        let binary = match &options.binary {
            Some(binary) => binary.clone(),
            None => paths::app_binary()?,
        };
        let port = free_port()?;
        let native_port = free_port()?;
        let mut driver = Command::new("tauri-driver");
        // Cargo's variables for this test must not reach the app, or a build
        // the app's launcher runs (scripts/run) would see another environment
        // and rebuild everything.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if (name == "CARGO" || name.starts_with("CARGO_"))
                && name != "CARGO_HOME"
                && name != "CARGO_TARGET_DIR"
            {
                driver.env_remove(name.as_ref());
            }
        }
        driver
            .args(["--port", &port.to_string()])
            .args(["--native-port", &native_port.to_string()])
            .args(["--native-driver", "/usr/bin/WebKitWebDriver"])
            .env_remove("WAYLAND_DISPLAY")
            .envs(desktop.env())
            .envs(home.env())
            .envs(options.env.iter().map(|(k, v)| (k, v)));
        let driver = Service::spawn(driver, "tauri-driver", desktop.artifacts())?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        tokio::task::spawn_blocking(move || wait_for_port(addr, STARTUP))
            .await
            .map_err(anyhow::Error::from)??;

        let mut caps = serde_json::Map::new();
        caps.insert(
            "tauri:options".into(),
            serde_json::json!({ "application": binary, "args": options.args }),
        );
        let mut builder = ClientBuilder::native();
        builder.capabilities(caps);
        let url = format!("http://{addr}");
        let connected = tokio::time::timeout(limit.max(STARTUP), builder.connect(&url)).await;
        let log = driver.log_path().display().to_string();
        let client = match connected {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => {
                let text = std::fs::read_to_string(driver.log_path()).unwrap_or_default();
                if text.contains("Unable to listen for HTTP server") {
                    return Err(Launch::PortTaken(log));
                }
                return Err(Launch::Failed(anyhow::Error::from(err).context(format!(
                    "could not open a WebDriver session with the app; see {log}"
                ))));
            }
            Err(_) => {
                return Err(Launch::Failed(anyhow::anyhow!(
                    "the app's window did not appear within {limit:?}; see {log}"
                )));
            }
        };
        Ok(Self {
            client,
            display: desktop.display().to_owned(),
            artifacts: desktop.artifacts().to_path_buf(),
            log: home.app_data_dir().join("logs").join("confab.log"),
            finished: false,
            driver,
        })
    }

    /// Waits for an element matching `css` and returns its visible text.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let element = self
            .client
            .wait()
            .at_most(STARTUP)
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("no element {css} appeared"))?;
        Ok(element.text().await?)
    }

    /// Waits until `css` matches an enabled element, then clicks it.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + STARTUP;
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && element.is_enabled().await.unwrap_or(false)
            {
                return Ok(element.click().await?);
            }
            if std::time::Instant::now() > deadline {
                bail!("no enabled {css} to click");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks `css` if it is there now (e.g. a Retry that disappears once
    /// the app has recovered by itself); answers whether it clicked.
    pub async fn click_if_present(&self, css: &str) -> bool {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.click().await.is_ok(),
            Err(_) => false,
        }
    }

    /// Waits until the text of `css` satisfies `want` (the UI follows events
    /// from the shell, so a screen may take a moment to change). The text is
    /// the element's `textContent`: WebDriver's rendered text can come back
    /// empty for rows inside a scrolling container.
    pub async fn wait_text(
        &self,
        css: &str,
        limit: Duration,
        want: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = std::time::Instant::now() + limit;
        let mut last = None;
        loop {
            let text = self
                .client
                .execute(
                    "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
                    vec![serde_json::Value::String(css.to_owned())],
                )
                .await;
            if let Ok(serde_json::Value::String(text)) = text {
                if want(&text) {
                    return Ok(text);
                }
                last = Some(text);
            }
            if std::time::Instant::now() > deadline {
                bail!("{css} never showed the expected text (last: {last:?})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Types `text` in the open conversation's composer and presses Enter,
    /// then waits for the message to show. One WebDriver call types and
    /// presses Enter; the composer can be re-rendered between finding it and
    /// typing, or while the keys arrive (an event from the shell): then the
    /// text is typed again, unless it went out.
    pub async fn send(&self, text: &str) -> anyhow::Result<()> {
        // A local write shows at once; this long means the keys were lost.
        const SHOWN: Duration = Duration::from_secs(10);
        for _ in 0..3 {
            let composer = self.client.find(Locator::Css("#composer")).await?;
            // An error here may still have sent the text: the wait decides.
            let _ = composer.send_keys(&format!("{text}\u{E007}")).await;
            if self
                .wait_text("#messages", SHOWN, |t| t.contains(text))
                .await
                .is_ok()
            {
                return Ok(());
            }
            // The composer was re-rendered under the keys: type it again
            // into an empty one.
            if let Ok(composer) = self.client.find(Locator::Css("#composer")).await {
                let _ = composer.clear().await;
            }
        }
        bail!("{text:?} never showed in the conversation after three tries")
    }

    /// Saves the screen as `<artifacts>/<name>.png`. Taken by the X server, not
    /// over WebDriver: WebKitWebDriver's snapshot can hang under Xvfb, and the
    /// screen is what a person sees.
    pub fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.artifacts.join(format!("{name}.png"));
        screenshot(&self.display, &path)?;
        Ok(path)
    }

    /// Kills the app, its webview processes and the driver with SIGKILL, as a
    /// crash or a power cut would end them.
    pub fn kill(mut self) -> anyhow::Result<()> {
        let result = self.driver.kill_group();
        self.finished = result.is_ok();
        drop(self);
        result
    }

    /// Ends the WebDriver session (closing the app) and stops the driver.
    pub async fn quit(mut self) -> anyhow::Result<()> {
        let result = self.client.clone().close().await;
        self.finished = result.is_ok();
        drop(self);
        result.context("closing the WebDriver session")
    }

    /// The process group of the driver, the app and its webview processes.
    pub fn process_group(&self) -> u32 {
        self.driver.pid()
    }

    pub fn driver_log(&self) -> &Path {
        self.driver.log_path()
    }

    /// Waits until the app's log file holds `needle`: for what the window
    /// does not show.
    pub async fn wait_for_log(&self, needle: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while !std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .contains(needle)
        {
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the app never logged {needle:?} (see {})",
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // A failing test leaves the screen behind for whoever reads the CI log.
        if !self.finished {
            let path = self.artifacts.join("failure.png");
            let _ = screenshot(&self.display, &path);
            eprintln!(
                "screenshot: {}; app and driver log: {}",
                path.display(),
                self.driver.log_path().display()
            );
        }
    }
}

fn screenshot(display: &str, path: &Path) -> anyhow::Result<()> {
    let status = Command::new("import")
        .args(["-window", "root", "-display", display])
        .arg(path)
        .status()
        .context("running imagemagick's import")?;
    if !status.success() {
        bail!("import failed with {status}");
    }
    Ok(())
}

/// Why a launch failed: a port race is worth another try, nothing else is.
enum Launch {
    PortTaken(String),
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for Launch {
    fn from(err: anyhow::Error) -> Self {
        Self::Failed(err)
    }
}

impl Launch {
    fn into_error(self) -> anyhow::Error {
        match self {
            Self::PortTaken(log) => {
                anyhow::anyhow!(
                    "WebKitWebDriver could not listen (its port was taken twice); see {log}"
                )
            }
            Self::Failed(err) => err,
        }
    }
}
