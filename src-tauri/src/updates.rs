//! Wires self-update: [`confab_updates::Updates`] over `tauri-plugin-updater`,
//! mirrored to the UI as `update-changed` events, with one check shortly after
//! start. The plugin fetches the manifest, downloads, checks the minisign
//! signature against the configured key and runs the platform's installer;
//! the policy (when to offer, what failed, what the user sees) is in the
//! `confab-updates` crate.

use std::sync::Arc;
use std::time::Duration;

use confab_updates::{
    Configured, InstallFailure, InstallOutcome, Memory, Release, Source, Trigger, UpdateConfig,
    UpdateError, Updates,
};
use confab_wire::ipc::UpdateChanged;
use tauri::{AppHandle, Manager, Runtime};
use tauri_plugin_updater::{Error, Update, Updater, UpdaterExt};

/// The updater as the commands see it.
pub type SharedUpdates = Arc<Updates<PluginSource>>;

/// The start-up check waits this long, so it never competes with the first
/// paint of the window.
const START_DELAY: Duration = Duration::from_secs(2);
/// A check that hangs longer is reported as failed (downloads have no limit:
/// a large bundle on a slow link must be allowed to finish).
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);
/// A download that receives nothing for this long is abandoned (it may take
/// as long as it needs while bytes arrive).
const STALL_TIMEOUT: Duration = Duration::from_secs(60);

pub struct PluginSource {
    updater: Updater,
}

impl Source for PluginSource {
    type Pending = Update;

    async fn check(&self) -> Result<Option<(Release, Update)>, String> {
        match tokio::time::timeout(CHECK_TIMEOUT, self.updater.check()).await {
            Err(_) => Err(format!(
                "the update server did not answer within {} s.",
                CHECK_TIMEOUT.as_secs()
            )),
            Ok(Err(err)) => Err(describe_check(&err)),
            Ok(Ok(None)) => Ok(None),
            Ok(Ok(Some(update))) => {
                let release = Release {
                    version: update.version.clone(),
                    notes: update.body.clone().filter(|n| !n.trim().is_empty()),
                    date: update
                        .raw_json
                        .get("pub_date")
                        .and_then(|d| d.as_str())
                        .map(str::to_owned),
                };
                Ok(Some((release, update)))
            }
        }
    }

    async fn install(
        &self,
        update: Update,
        mut progress: Box<dyn FnMut(u64, Option<u64>) + Send>,
        installing: Box<dyn FnOnce() + Send>,
    ) -> Result<(), InstallFailure> {
        let version = update.version.clone();
        let mut received = 0u64;
        // `download` checks the signature before handing the bytes over.
        let bytes = update
            .download(
                |chunk, total| {
                    received += chunk as u64;
                    progress(received, total);
                },
                || {},
            )
            .await
            .map_err(|err| describe_install(&err, &version))?;
        installing();
        // The installer (dpkg, rpm, msiexec…) blocks: keep it off the async
        // workers.
        tokio::task::spawn_blocking(move || update.install(bytes))
            .await
            .map_err(|err| {
                InstallFailure::Refused(format!(
                    "Installing Confab {version} stopped unexpectedly ({err})."
                ))
            })?
            .map_err(|err| describe_install(&err, &version))
    }
}

fn describe_check(err: &Error) -> String {
    match err {
        Error::Reqwest(e) if e.is_decode() => {
            format!("the update server's answer is not a valid update manifest ({e}).")
        }
        Error::Reqwest(e) if e.is_connect() || e.is_timeout() => {
            format!("the update server cannot be reached ({e}). Check your connection.")
        }
        Error::Reqwest(e) => format!("the update server cannot be reached ({e})."),
        Error::Network(e) => format!("the update server answered with an error ({e})."),
        Error::ReleaseNotFound
        | Error::Serialization(_)
        | Error::Semver(_)
        | Error::UrlParse(_)
        | Error::TargetNotFound(_)
        | Error::TargetsNotFound(_) => {
            format!("the update server's answer is not a valid update manifest ({err}).")
        }
        other => format!("{other}."),
    }
}

fn describe_install(err: &Error, version: &str) -> InstallFailure {
    match err {
        Error::Minisign(_)
        | Error::Base64(_)
        | Error::SignatureUtf8(_)
        | Error::SignedVersionMismatch { .. }
        | Error::MissingSignedVersion => InstallFailure::Refused(format!(
            "The download of Confab {version} is not signed with Confab's release key, or was altered on the way ({err}). Nothing was installed."
        )),
        Error::Reqwest(_) | Error::Network(_) => InstallFailure::Interrupted(format!(
            "Downloading Confab {version} failed ({err}). Nothing was installed; try again later."
        )),
        Error::InvalidUpdaterFormat => InstallFailure::Refused(format!(
            "The download of Confab {version} is not a package this installation can use. Nothing was installed."
        )),
        Error::AuthenticationFailed => InstallFailure::Refused(format!(
            "Installing Confab {version} needs your permission, and it was not given. Nothing was installed."
        )),
        other => InstallFailure::Refused(format!("Installing Confab {version} failed ({other}).")),
    }
}

/// What `tauri.conf.json` (or the release pipeline's `--config`) set under
/// `plugins.updater`.
fn configured<R: Runtime>(app: &AppHandle<R>) -> Configured {
    let plugin = app.config().plugins.0.get("updater");
    let endpoints = plugin
        .and_then(|p| p.get("endpoints"))
        .and_then(|e| e.as_array())
        .map(|list| {
            list.iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let pubkey = plugin
        .and_then(|p| p.get("pubkey"))
        .and_then(|k| k.as_str())
        .unwrap_or_default()
        .to_owned();
    Configured { endpoints, pubkey }
}

fn source<R: Runtime>(app: &AppHandle<R>) -> Result<PluginSource, String> {
    let config = UpdateConfig::resolve(
        &configured(app),
        &|name| std::env::var(name).ok(),
        cfg!(debug_assertions),
    )
    .map_err(|err| err.to_string())?;
    let builder = app
        .updater_builder()
        .pubkey(config.pubkey)
        .configure_client(|client| client.read_timeout(STALL_TIMEOUT));
    // Windows' installer ends the process itself: let Tauri clean up first.
    #[cfg(windows)]
    let builder = {
        let app = app.clone();
        builder.on_before_exit(move || app.cleanup_before_exit())
    };
    let updater = builder
        .endpoints(config.endpoints)
        .and_then(|builder| builder.build())
        .map_err(|err| format!("Updates are off: {err}."))?;
    Ok(PluginSource { updater })
}

/// Creates the updater, mirrors its state to the UI and schedules the
/// start-up check.
pub fn install<R: Runtime>(app: &AppHandle<R>) {
    let source = source(app);
    if let Err(reason) = &source {
        log::info!("{reason}");
    }
    let data_dir = app
        .path()
        .app_data_dir()
        .unwrap_or_else(|_| std::env::temp_dir().join("app.confab.desktop"));
    let current = app.package_info().version.to_string();
    let updates: SharedUpdates = Arc::new(Updates::new(
        source,
        &current,
        Memory::load(&data_dir.join("updates.json")),
    ));
    app.manage(updates.clone());

    crate::events::mirror::<R, UpdateChanged>(app, updates.subscribe());
    tauri::async_runtime::spawn(async move {
        tokio::time::sleep(START_DELAY).await;
        updates.check(Trigger::Start).await;
    });
}

/// Installs the offered version on the user's request and, when it
/// installed, restarts into it (after a moment, so the window shows
/// "Restarting…"). A second request while one runs is not an error.
pub async fn install_and_restart<R: Runtime>(
    app: &AppHandle<R>,
    updates: &SharedUpdates,
) -> Result<(), UpdateError> {
    match updates.install().await {
        Ok(InstallOutcome::Installed) => {
            tokio::time::sleep(Duration::from_millis(500)).await;
            app.request_restart();
            Ok(())
        }
        Ok(InstallOutcome::NotInstalled) | Err(UpdateError::Busy) => Ok(()),
        Err(UpdateError::NothingToInstall)
            if matches!(
                updates.state(),
                confab_wire::updates::UpdateState::Restarting { .. }
            ) =>
        {
            Ok(())
        }
        Err(err) => Err(err),
    }
}
