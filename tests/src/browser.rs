//! A stand-in for the user's web browser: installed in an [`AppHome`] as the
//! default handler of `http`/`https` links (a `.desktop` entry plus
//! `mimeapps.list`, as a desktop records a default browser), it writes each
//! URL it is asked to open to a file. The test then plays the user at the
//! provider with [`crate::oidc::Provider::authorize`].

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::desktop::AppHome;

pub struct Browser {
    log: PathBuf,
}

impl Browser {
    pub fn install(home: &AppHome) -> anyhow::Result<Self> {
        let dir = home.path().join("browser");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("opened.txt");
        let script = dir.join("browser.sh");
        std::fs::write(
            &script,
            format!("#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n", log.display()),
        )?;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;

        let applications = home.path().join("data").join("applications");
        std::fs::create_dir_all(&applications)?;
        std::fs::write(
            applications.join("confab-test-browser.desktop"),
            format!(
                "[Desktop Entry]\nType=Application\nName=Test browser\nExec={} %u\n\
                 MimeType=x-scheme-handler/http;x-scheme-handler/https;\nNoDisplay=true\n",
                script.display()
            ),
        )?;
        std::fs::write(
            home.path().join("config").join("mimeapps.list"),
            "[Default Applications]\n\
             x-scheme-handler/http=confab-test-browser.desktop\n\
             x-scheme-handler/https=confab-test-browser.desktop\n",
        )?;
        Ok(Self { log })
    }

    /// Removes the stand-in: the desktop then has no handler for web links
    /// (as on a minimal desktop with no browser installed).
    pub fn uninstall(&self, home: &AppHome) -> anyhow::Result<()> {
        let entry = home
            .path()
            .join("data")
            .join("applications")
            .join("confab-test-browser.desktop");
        if entry.exists() {
            std::fs::remove_file(entry)?;
        }
        std::fs::write(
            home.path().join("config").join("mimeapps.list"),
            "[Default Applications]\n",
        )?;
        Ok(())
    }

    /// Every URL opened so far, oldest first.
    pub fn opened(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits until the browser has been asked to open its `n`th URL (1-based).
    pub async fn wait_for(&self, n: usize, limit: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(url) = self.opened().get(n - 1) {
                return Ok(url.clone());
            }
            if Instant::now() > deadline {
                bail!(
                    "the browser was not opened (URLs so far: {:?})",
                    self.opened()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
