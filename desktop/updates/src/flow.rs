//! The update state machine the UI follows ([`UpdateState`]).
//!
//! One check or install runs at a time. A download starts only from
//! [`Updates::install`], which the shell calls only on the user's click: there
//! is no background download, so a metered connection is never used without
//! consent. A failed install leaves the running version as it was and is
//! remembered ([`Memory`]), so the start-up check does not offer it again.

use std::future::Future;
use std::sync::{Arc, Mutex};

use confab_wire::updates::{AvailableUpdate, UpdateState};
use tokio::sync::watch;

use crate::memory::Memory;

/// What an update server announced as newer than the running version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    pub version: String,
    pub notes: Option<String>,
    pub date: Option<String>,
}

/// Where releases come from and how they install (the plugin in the app).
/// Errors are messages for the user.
pub trait Source: Send + Sync + 'static {
    /// The handle a check returns and an install consumes.
    type Pending: Send + Sync + 'static;

    fn check(
        &self,
    ) -> impl Future<Output = Result<Option<(Release, Self::Pending)>, String>> + Send;

    /// Downloads, verifies the signature and installs. `progress` gets the
    /// bytes received so far and the total when known; `installing` is called
    /// once the download is verified.
    fn install(
        &self,
        pending: Self::Pending,
        progress: Box<dyn FnMut(u64, Option<u64>) + Send>,
        installing: Box<dyn FnOnce() + Send>,
    ) -> impl Future<Output = Result<(), InstallFailure>> + Send;
}

/// Why an install did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallFailure {
    /// The download did not complete (network, server): nothing is wrong with
    /// the release, so it is offered again at the next start.
    Interrupted(String),
    /// The release was refused (bad signature, wrong package) or its
    /// installer failed: remembered, and not offered again at start.
    Refused(String),
}

impl InstallFailure {
    pub fn message(&self) -> &str {
        match self {
            Self::Interrupted(m) | Self::Refused(m) => m,
        }
    }
}

/// What [`Updates::install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallOutcome {
    /// Installed: the caller restarts the app.
    Installed,
    /// Not installed; the state says why.
    NotInstalled,
}

/// Puts a fallback state in place if a check or install ends without
/// finishing (a panic in the source, the future dropped at shutdown), so the
/// UI is never left "checking" or "downloading" forever.
struct Unfinished {
    state: watch::Sender<UpdateState>,
    fallback: Option<UpdateState>,
}

impl Unfinished {
    fn done(mut self) {
        self.fallback = None;
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if let Some(fallback) = self.fallback.take() {
            self.state.send_replace(fallback);
        }
    }
}

/// Who asked for a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The check at start: quiet about versions that failed before.
    Start,
    /// The user pressed "Check for updates".
    User,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("No update is waiting to be installed: check for updates first.")]
    NothingToInstall,
    #[error("An update check or install is already under way.")]
    Busy,
    #[error("{0}")]
    Disabled(String),
}

pub struct Updates<S: Source> {
    source: Result<S, String>,
    current: String,
    updated_from: Option<String>,
    memory: Arc<Mutex<Memory>>,
    state: watch::Sender<UpdateState>,
    pending: Mutex<Option<(AvailableUpdate, S::Pending)>>,
    // One check or install at a time; a second caller gets the state as is.
    busy: tokio::sync::Mutex<()>,
}

impl<S: Source> Updates<S> {
    /// `source` is the reason updates are off when they cannot work.
    pub fn new(source: Result<S, String>, current: &str, mut memory: Memory) -> Self {
        let updated_from = memory.on_start(current);
        let state = match &source {
            Err(reason) => UpdateState::Disabled {
                current: current.to_owned(),
                reason: reason.clone(),
            },
            Ok(_) if updated_from.is_some() => UpdateState::UpToDate {
                current: current.to_owned(),
                updated_from: updated_from.clone(),
            },
            Ok(_) => UpdateState::Idle {
                current: current.to_owned(),
            },
        };
        if let Some(from) = &updated_from {
            log::info!("updated from {from} to {current}");
        }
        Self {
            source,
            current: current.to_owned(),
            updated_from,
            memory: Arc::new(Mutex::new(memory)),
            state: watch::channel(state).0,
            pending: Mutex::new(None),
            busy: tokio::sync::Mutex::new(()),
        }
    }

    pub fn state(&self) -> UpdateState {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<UpdateState> {
        self.state.subscribe()
    }

    /// Asks the server. Answers the state once the check is done (or the
    /// current state when another check or install is under way).
    pub async fn check(&self, trigger: Trigger) -> UpdateState {
        let Ok(source) = &self.source else {
            return self.state();
        };
        let Ok(_busy) = self.busy.try_lock() else {
            return self.state();
        };
        if matches!(self.state(), UpdateState::Restarting { .. }) {
            return self.state();
        }
        // An older offer must not be installable once a newer answer came.
        self.lock_pending().take();
        self.set(UpdateState::Checking {
            current: self.current.clone(),
        });
        let unfinished = Unfinished {
            state: self.state.clone(),
            fallback: Some(UpdateState::CheckFailed {
                current: self.current.clone(),
                message: "the check stopped unexpectedly.".into(),
            }),
        };
        let next = match source.check().await {
            Err(message) => {
                log::warn!("update check failed: {message}");
                UpdateState::CheckFailed {
                    current: self.current.clone(),
                    message,
                }
            }
            Ok(None) => self.up_to_date(),
            Ok(Some((release, pending))) => {
                let failed_before = self.lock_memory().failed(&release.version);
                let update = AvailableUpdate {
                    version: release.version,
                    current: self.current.clone(),
                    notes: release.notes,
                    date: release.date,
                    failed_before,
                };
                if trigger == Trigger::Start && update.failed_before.is_some() {
                    // Offering it at every start would loop: only an explicit
                    // check shows it again.
                    log::info!(
                        "not offering {} at start: installing it failed before",
                        update.version
                    );
                    UpdateState::Idle {
                        current: self.current.clone(),
                    }
                } else {
                    log::info!("update {} is available", update.version);
                    *self.lock_pending() = Some((update.clone(), pending));
                    UpdateState::Available(update)
                }
            }
        };
        unfinished.done();
        self.set(next.clone());
        next
    }

    /// Downloads, verifies and installs the offered version. On success the
    /// state is `restarting` and the caller restarts the app; on failure the
    /// state says why and the running version is untouched.
    pub async fn install(&self) -> Result<InstallOutcome, UpdateError> {
        let source = self
            .source
            .as_ref()
            .map_err(|r| UpdateError::Disabled(r.clone()))?;
        let _busy = self.busy.try_lock().map_err(|_| UpdateError::Busy)?;
        let (update, pending) = self
            .lock_pending()
            .take()
            .ok_or(UpdateError::NothingToInstall)?;
        self.set(UpdateState::Downloading {
            update: update.clone(),
            received: 0,
            total: None,
        });
        let progress = {
            let state = self.state.clone();
            let update = update.clone();
            let mut shown = 0u64;
            Box::new(move |received: u64, total: Option<u64>| {
                // About a hundred steps for the progress bar, not one per chunk.
                let step = total.map_or(256 * 1024, |t| (t / 100).max(1));
                if received >= shown + step || Some(received) == total {
                    shown = received;
                    state.send_replace(UpdateState::Downloading {
                        update: update.clone(),
                        received,
                        total,
                    });
                }
            })
        };
        let installing = {
            let state = self.state.clone();
            let update = update.clone();
            let memory = self.memory.clone();
            let current = self.current.clone();
            Box::new(move || {
                // Recorded only now, once the download is verified: a crash or
                // quit while downloading is not held against the version.
                memory
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .begin(&update.version, &current);
                state.send_replace(UpdateState::Installing { update });
            })
        };
        let unfinished = Unfinished {
            state: self.state.clone(),
            fallback: Some(UpdateState::InstallFailed {
                update: update.clone(),
                message: format!(
                    "Installing Confab {} stopped unexpectedly; Confab {} keeps running.",
                    update.version, self.current
                ),
            }),
        };
        let result = source.install(pending, progress, installing).await;
        unfinished.done();
        match result {
            Ok(()) => {
                log::info!("installed {}; restarting", update.version);
                self.set(UpdateState::Restarting { update });
                Ok(InstallOutcome::Installed)
            }
            Err(failure) => {
                let message = failure.message().to_owned();
                log::warn!("installing {} failed: {message}", update.version);
                let failed_before = match failure {
                    InstallFailure::Refused(_) => {
                        self.lock_memory().fail(&update.version, &message);
                        Some(message.clone())
                    }
                    InstallFailure::Interrupted(_) => {
                        self.lock_memory().abandon();
                        update.failed_before.clone()
                    }
                };
                self.set(UpdateState::InstallFailed {
                    update: AvailableUpdate {
                        failed_before,
                        ..update
                    },
                    message,
                });
                Ok(InstallOutcome::NotInstalled)
            }
        }
    }

    /// Hides an offer or a failure until the next check.
    pub fn dismiss(&self) -> UpdateState {
        let state = self.state();
        if state.is_busy() || matches!(state, UpdateState::Disabled { .. }) {
            return state;
        }
        self.lock_pending().take();
        let next = UpdateState::Idle {
            current: self.current.clone(),
        };
        self.set(next.clone());
        next
    }

    fn up_to_date(&self) -> UpdateState {
        UpdateState::UpToDate {
            current: self.current.clone(),
            updated_from: self.updated_from.clone(),
        }
    }

    fn set(&self, state: UpdateState) {
        self.state.send_replace(state);
    }

    fn lock_memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Option<(AvailableUpdate, S::Pending)>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    //! The policy with a scripted source; the real plugin, signatures and
    //! `dpkg` are exercised end to end in `tests/tests/it/e2e_updates.rs`.
    use super::*;
    use std::sync::Arc;

    type Answers<T, E = String> = Arc<Mutex<Vec<Result<T, E>>>>;

    #[derive(Clone, Default)]
    struct Script {
        check: Answers<Option<Release>>,
        install: Answers<(), InstallFailure>,
        installs: Arc<Mutex<u32>>,
        /// The download never ends (a quit or a crash cuts it short).
        stall: bool,
    }

    /// A source that answers `checks`, then `installs`, in order.
    fn answering(
        checks: Vec<Result<Option<Release>, String>>,
        installs: Vec<Result<(), InstallFailure>>,
    ) -> Script {
        Script {
            check: Arc::new(Mutex::new(checks)),
            install: Arc::new(Mutex::new(installs)),
            ..Script::default()
        }
    }

    impl Source for Script {
        type Pending = String;

        async fn check(&self) -> Result<Option<(Release, String)>, String> {
            let next = self.check.lock().unwrap().remove(0);
            next.map(|r| r.map(|r| (r.clone(), r.version)))
        }

        async fn install(
            &self,
            _pending: String,
            mut progress: Box<dyn FnMut(u64, Option<u64>) + Send>,
            installing: Box<dyn FnOnce() + Send>,
        ) -> Result<(), InstallFailure> {
            *self.installs.lock().unwrap() += 1;
            if self.stall {
                progress(10, Some(1000));
                std::future::pending::<()>().await;
            }
            for received in (0..=1000).step_by(10) {
                progress(received, Some(1000));
                tokio::task::yield_now().await;
            }
            installing();
            self.install.lock().unwrap().remove(0)
        }
    }

    fn release(version: &str) -> Release {
        Release {
            version: version.into(),
            notes: Some("Notes".into()),
            date: None,
        }
    }

    fn started(script: &Script, dir: &std::path::Path) -> Updates<Script> {
        Updates::new(
            Ok(script.clone()),
            "1.0.0",
            Memory::load(&dir.join("u.json")),
        )
    }

    #[tokio::test]
    async fn an_offer_installs_only_when_asked_and_reports_progress() {
        let dir = tempfile::tempdir().unwrap();
        let script = answering(vec![Ok(Some(release("1.1.0")))], vec![Ok(())]);
        let updates = started(&script, dir.path());
        let mut seen = updates.subscribe();
        let state = updates.check(Trigger::Start).await;
        assert!(matches!(&state, UpdateState::Available(u) if u.version == "1.1.0"));
        assert_eq!(
            *script.installs.lock().unwrap(),
            0,
            "nothing downloads unasked"
        );

        let steps = Arc::new(Mutex::new(0));
        let counter = steps.clone();
        let watcher = tokio::spawn(async move {
            while seen.changed().await.is_ok() {
                if matches!(*seen.borrow(), UpdateState::Downloading { .. }) {
                    *counter.lock().unwrap() += 1;
                }
            }
        });
        assert_eq!(updates.install().await, Ok(InstallOutcome::Installed));
        assert!(matches!(updates.state(), UpdateState::Restarting { .. }));
        // A check while restarting changes nothing.
        assert!(matches!(
            updates.check(Trigger::User).await,
            UpdateState::Restarting { .. }
        ));
        drop(updates);
        watcher.await.unwrap();
        // Progress in about a hundred steps, not one event per chunk.
        let steps = *steps.lock().unwrap();
        assert!((2..=101).contains(&steps), "{steps} progress updates");
        // The next start, on the new version, says it was updated.
        let after = Updates::new(
            Ok(script),
            "1.1.0",
            Memory::load(&dir.path().join("u.json")),
        );
        assert_eq!(
            after.state(),
            UpdateState::UpToDate {
                current: "1.1.0".into(),
                updated_from: Some("1.0.0".into())
            }
        );
    }

    #[tokio::test]
    async fn a_failed_install_is_not_offered_again_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let script = answering(
            vec![Ok(Some(release("1.1.0"))); 3],
            vec![Err(InstallFailure::Refused("bad signature".into()))],
        );
        let updates = started(&script, dir.path());
        updates.check(Trigger::User).await;
        updates.install().await.unwrap();
        match updates.state() {
            UpdateState::InstallFailed { message, update } => {
                assert_eq!(message, "bad signature");
                assert_eq!(update.failed_before.as_deref(), Some("bad signature"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(updates.install().await, Err(UpdateError::NothingToInstall));

        let restarted = started(&script, dir.path());
        assert!(matches!(
            restarted.check(Trigger::Start).await,
            UpdateState::Idle { .. }
        ));
        match restarted.check(Trigger::User).await {
            UpdateState::Available(u) => {
                assert_eq!(u.failed_before.as_deref(), Some("bad signature"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn an_interrupted_download_is_offered_again_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let script = answering(
            vec![Ok(Some(release("1.1.0"))); 2],
            vec![Err(InstallFailure::Interrupted("connection reset".into()))],
        );
        let updates = started(&script, dir.path());
        updates.check(Trigger::User).await;
        updates.install().await.unwrap();
        assert!(matches!(
            updates.state(),
            UpdateState::InstallFailed { ref message, ref update } if message == "connection reset" && update.failed_before.is_none()
        ));
        let restarted = started(&script, dir.path());
        assert!(matches!(
            restarted.check(Trigger::Start).await,
            UpdateState::Available(ref u) if u.failed_before.is_none()
        ));
    }

    #[tokio::test]
    async fn a_download_cut_short_leaves_no_stuck_state_and_no_blame() {
        let dir = tempfile::tempdir().unwrap();
        let script = Script {
            stall: true,
            ..answering(vec![Ok(Some(release("1.1.0")))], vec![])
        };
        let updates = started(&script, dir.path());
        updates.check(Trigger::User).await;
        let cut =
            tokio::time::timeout(std::time::Duration::from_millis(50), updates.install()).await;
        assert!(cut.is_err(), "the stalled download was still running");
        assert!(
            matches!(updates.state(), UpdateState::InstallFailed { ref message, .. } if message.contains("stopped unexpectedly")),
            "{:?}",
            updates.state()
        );
        // The next start offers it again: nothing was installed, nothing blamed.
        let restarted = started(
            &answering(vec![Ok(Some(release("1.1.0")))], vec![]),
            dir.path(),
        );
        assert!(matches!(
            restarted.check(Trigger::Start).await,
            UpdateState::Available(ref u) if u.failed_before.is_none()
        ));
    }

    #[tokio::test]
    async fn check_failures_and_no_update_are_reported_without_retrying() {
        let dir = tempfile::tempdir().unwrap();
        let script = answering(vec![Err("unreachable".into()), Ok(None)], vec![]);
        let updates = started(&script, dir.path());
        assert!(matches!(
            updates.check(Trigger::Start).await,
            UpdateState::CheckFailed { ref message, .. } if message == "unreachable"
        ));
        assert_eq!(
            script.check.lock().unwrap().len(),
            1,
            "one request, no retry loop"
        );
        assert!(matches!(
            updates.check(Trigger::User).await,
            UpdateState::UpToDate {
                updated_from: None,
                ..
            }
        ));
        assert!(matches!(updates.dismiss(), UpdateState::Idle { .. }));
    }

    #[tokio::test]
    async fn a_disabled_updater_says_why_and_does_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let updates: Updates<Script> = Updates::new(
            Err("no key".into()),
            "1.0.0",
            Memory::load(&dir.path().join("u.json")),
        );
        assert!(
            matches!(updates.check(Trigger::User).await, UpdateState::Disabled { ref reason, .. } if reason == "no key")
        );
        assert_eq!(
            updates.install().await,
            Err(UpdateError::Disabled("no key".into()))
        );
    }
}
