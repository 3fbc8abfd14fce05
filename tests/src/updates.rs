//! Self-update stand-ins: signing keys made by the Tauri CLI inside the test,
//! the `.deb` bundles `scripts/build-test-bundles` built (this version and the
//! next), a loopback update server, and the system package database.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tempfile::TempDir;

use crate::paths;

/// The Debian package name the bundler gives the app.
pub const PACKAGE: &str = "confab";

/// The version this checkout builds (N) and the one above it (N+1).
pub fn versions() -> (String, String) {
    let current = env!("CARGO_PKG_VERSION").to_owned();
    let mut parts: Vec<u64> = current.split('.').filter_map(|p| p.parse().ok()).collect();
    if let Some(patch) = parts.last_mut() {
        *patch += 1;
    }
    let next = parts
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".");
    (current, next)
}

/// The `.deb` of `version` that `scripts/build-test-bundles` built.
pub fn bundle(version: &str) -> anyhow::Result<PathBuf> {
    let path = paths::target_dir()
        .join("test-bundles")
        .join(format!("Confab_{version}_amd64.deb"));
    if !path.is_file() {
        bail!(
            "{} is missing: run scripts/build-test-bundles (scripts/test does)",
            path.display()
        );
    }
    Ok(path)
}

fn tauri_cli() -> PathBuf {
    paths::workspace_root().join("node_modules/.bin/tauri")
}

/// A throwaway minisign key pair made with `tauri signer generate`, the tool
/// the release pipeline signs with.
pub struct SigningKey {
    dir: TempDir,
    /// The public key as `tauri.conf.json` (and `CONFAB_UPDATER_PUBKEY`) take it.
    pub public: String,
}

impl SigningKey {
    pub fn generate() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let key = dir.path().join("confab.key");
        run(Command::new(tauri_cli())
            .args(["signer", "generate", "--ci", "-p", "", "-w"])
            .arg(&key))?;
        let public = std::fs::read_to_string(key.with_extension("key.pub"))?
            .trim()
            .to_owned();
        Ok(Self { dir, public })
    }

    /// Signs `bundle` as release `version` with `tauri signer sign
    /// --app-version` (the version goes in the signature's trusted comment;
    /// `None` signs without it), in this key's folder, which also takes the
    /// `.sig` it writes; answers the signature as the manifest carries it.
    pub fn sign(&self, bundle: &[u8], version: Option<&str>) -> anyhow::Result<String> {
        let file = self.dir.path().join("bundle");
        std::fs::write(&file, bundle)?;
        let mut command = Command::new(tauri_cli());
        command
            .args(["signer", "sign", "-p", "", "-f"])
            .arg(self.dir.path().join("confab.key"));
        if let Some(version) = version {
            command.args(["--app-version", version]);
        }
        run(command.arg(&file))?;
        let sig = self.dir.path().join("bundle.sig");
        Ok(std::fs::read_to_string(&sig)?.trim().to_owned())
    }
}

fn run(command: &mut Command) -> anyhow::Result<String> {
    let out = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What the loopback update server answers at `/latest.json`.
#[derive(Clone, Debug)]
pub enum Manifest {
    /// A manifest offering `version` at `/bundle.deb` with `signature`.
    Offer {
        version: String,
        notes: String,
        signature: String,
    },
    /// `204 No Content`: nothing newer.
    NoContent,
    /// A body that is not a manifest.
    Raw(String),
}

#[derive(Default)]
struct Served {
    manifest: Option<Manifest>,
    /// `None`: the bundle's URL answers 404.
    bundle: Option<Vec<u8>>,
    manifest_hits: u32,
    bundle_hits: u32,
}

/// A loopback HTTP server for `latest.json` and one bundle.
pub struct UpdateServer {
    pub url: String,
    served: Arc<Mutex<Served>>,
    task: tokio::task::JoinHandle<()>,
}

impl UpdateServer {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let served = Arc::new(Mutex::new(Served::default()));
        let base = format!("http://{addr}");
        let app = axum::Router::new()
            .route("/latest.json", axum::routing::get(manifest))
            .route("/bundle.deb", axum::routing::get(bundle_bytes))
            .with_state((served.clone(), base.clone()));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url: format!("{base}/latest.json"),
            served,
            task,
        })
    }

    pub fn serve(&self, manifest: Manifest, bundle: Vec<u8>) {
        let mut served = self.lock();
        served.manifest = Some(manifest);
        served.bundle = Some(bundle);
    }

    /// Offers `manifest` but answers 404 for its bundle (a download that
    /// cannot complete).
    pub fn serve_without_bundle(&self, manifest: Manifest) {
        let mut served = self.lock();
        served.manifest = Some(manifest);
        served.bundle = None;
    }

    /// Requests for the manifest and for the bundle so far.
    pub fn hits(&self) -> (u32, u32) {
        let served = self.lock();
        (served.manifest_hits, served.bundle_hits)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Served> {
        self.served.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl UpdateServer {
    /// Stops serving: once this returns, the listener is closed and the
    /// port refuses connections.
    pub async fn stop(mut self) {
        self.task.abort();
        // A cancelled task's future (and its listener) is dropped before its
        // handle completes.
        let _ = (&mut self.task).await;
    }
}

impl Drop for UpdateServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Shared = (Arc<Mutex<Served>>, String);

async fn manifest(State((served, base)): State<Shared>) -> Response {
    let manifest = {
        let mut served = served.lock().unwrap_or_else(|e| e.into_inner());
        served.manifest_hits += 1;
        served.manifest.clone()
    };
    match manifest {
        None | Some(Manifest::NoContent) => StatusCode::NO_CONTENT.into_response(),
        Some(Manifest::Raw(body)) => {
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Some(Manifest::Offer {
            version,
            notes,
            signature,
        }) => {
            let platform = serde_json::json!({
                "signature": signature,
                "url": format!("{base}/bundle.deb"),
            });
            axum::Json(serde_json::json!({
                "version": version,
                "notes": notes,
                "pub_date": "2026-11-26T12:00:00Z",
                "platforms": {
                    "linux-x86_64-deb": platform,
                    "linux-x86_64": platform,
                }
            }))
            .into_response()
        }
    }
}

async fn bundle_bytes(State((served, _)): State<Shared>) -> Response {
    let mut served = served.lock().unwrap_or_else(|e| e.into_inner());
    served.bundle_hits += 1;
    match served.bundle.clone() {
        Some(bytes) => (
            [(
                header::CONTENT_TYPE,
                "application/vnd.debian.binary-package",
            )],
            bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The installed version of [`PACKAGE`], if any.
pub fn installed_version() -> anyhow::Result<Option<String>> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Version}", PACKAGE])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .strip_prefix("install ok installed ")
        .map(|v| v.trim().to_owned()))
}

/// Runs a package tool as root: directly when the tests run as root (CI),
/// else through `sudo -n` (fails fast instead of prompting).
fn as_root(args: &[&str]) -> anyhow::Result<String> {
    if nix::unistd::Uid::effective().is_root() {
        run(Command::new(args[0]).args(&args[1..]))
    } else {
        run(Command::new("sudo").arg("-n").args(args))
    }
}

/// The app installed system-wide from a `.deb`; removed again on drop.
pub struct Installed {
    pub binary: PathBuf,
}

impl Installed {
    pub fn deb(bundle: &Path) -> anyhow::Result<Self> {
        // Never replace (and then remove) a Confab someone installed here.
        if let Some(version) = installed_version()? {
            bail!(
                "Confab {version} is installed on this machine: remove it (dpkg -r {PACKAGE}) to run the update tests"
            );
        }
        let path = bundle.display().to_string();
        as_root(&["dpkg", "-i", &path])
            .context("installing the app's .deb (needs root or passwordless sudo)")?;
        Ok(Self {
            binary: PathBuf::from("/usr/bin/confab"),
        })
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Err(err) = as_root(&["dpkg", "-r", PACKAGE]) {
            eprintln!("could not remove the test install of {PACKAGE}: {err}");
        }
    }
}
