//! The OS keyring of a test desktop: gnome-keyring's Secret Service on the
//! desktop's own D-Bus session, its `login` collection created and unlocked
//! with a password fed on stdin, as a desktop session does at login.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::desktop::{AppHome, Desktop};
use crate::process::Service;

pub struct Keyring {
    _daemon: Service,
    env: Vec<(String, String)>,
}

impl Keyring {
    /// Starts the daemon; its encrypted files go to `home`'s data dir
    /// (`keyrings/`), outside the app's own folder.
    pub fn start(desktop: &Desktop, home: &AppHome) -> anyhow::Result<Self> {
        let mut env = desktop.env();
        env.extend(home.env());
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "printf confab-test | exec gnome-keyring-daemon --foreground --unlock --components=secrets",
        ])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("HOME", home.path());
        let daemon = Service::spawn(cmd, "gnome-keyring", desktop.artifacts())?;
        let keyring = Self {
            _daemon: daemon,
            env,
        };
        keyring.wait_ready(Duration::from_secs(10))?;
        Ok(keyring)
    }

    fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let out = Command::new("dbus-send")
                .args([
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.secrets",
                ])
                .envs(self.env.iter().map(|(k, v)| (k, v)))
                .output()
                .context("running dbus-send")?;
            if String::from_utf8_lossy(&out.stdout).contains("boolean true") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("gnome-keyring did not register org.freedesktop.secrets");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The secret the app stored under `key` (service `app.confab.desktop`),
    /// read the way any other program on the desktop could.
    pub fn lookup(&self, key: &str) -> anyhow::Result<Option<String>> {
        let out = Command::new("secret-tool")
            .args(["lookup", "service", "app.confab.desktop", "username", key])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .context("running secret-tool (libsecret-tools)")?;
        let secret = String::from_utf8(out.stdout)?;
        Ok((out.status.success() && !secret.is_empty()).then_some(secret))
    }
}
