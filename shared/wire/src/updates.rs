//! Self-update: what the UI shows about new versions of the app.
//!
//! The shell checks on start and on demand, and installs only when the user
//! asks ([`crate::ipc::InstallUpdate`]). Every change is emitted as
//! [`crate::ipc::UpdateChanged`].

use serde::{Deserialize, Serialize};

/// A newer version the update server offers, with a valid-looking manifest
/// (its signature is checked on download, before anything is installed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AvailableUpdate {
    pub version: String,
    /// The version running now.
    pub current: String,
    /// Release notes, as the manifest gives them (plain text or Markdown).
    pub notes: Option<String>,
    /// Publication date, RFC 3339, when the manifest gives one.
    pub date: Option<String>,
    /// Why installing this version failed before, if it did: the start-up check
    /// does not offer it again, an explicit check says so.
    pub failed_before: Option<String>,
}

/// Where updating stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "status",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum UpdateState {
    /// No check has finished in this run yet.
    Idle {
        current: String,
    },
    /// This build cannot update itself (no signing key or no endpoint).
    Disabled {
        current: String,
        reason: String,
    },
    Checking {
        current: String,
    },
    /// The server has nothing newer. `updated_from` is set for the run that
    /// follows a successful update.
    UpToDate {
        current: String,
        updated_from: Option<String>,
    },
    /// The check failed (server unreachable, malformed manifest). Shown once;
    /// nothing retries by itself until the next start or an explicit check.
    CheckFailed {
        current: String,
        message: String,
    },
    Available(AvailableUpdate),
    /// Downloading after the user agreed. `total` is unknown when the server
    /// sends no length.
    Downloading {
        update: AvailableUpdate,
        received: u64,
        total: Option<u64>,
    },
    /// Verified and being installed by the system's package tool.
    Installing {
        update: AvailableUpdate,
    },
    /// Installed: the app restarts into the new version.
    Restarting {
        update: AvailableUpdate,
    },
    /// Downloading, verifying or installing failed; the running version is
    /// untouched and this version is not offered again at start.
    InstallFailed {
        update: AvailableUpdate,
        message: String,
    },
}

impl UpdateState {
    /// The version running now.
    pub fn current(&self) -> &str {
        match self {
            Self::Idle { current }
            | Self::Disabled { current, .. }
            | Self::Checking { current }
            | Self::UpToDate { current, .. }
            | Self::CheckFailed { current, .. } => current,
            Self::Available(update)
            | Self::Downloading { update, .. }
            | Self::Installing { update }
            | Self::Restarting { update }
            | Self::InstallFailed { update, .. } => &update.current,
        }
    }

    /// Whether a download or install is under way (a new check or install
    /// must wait).
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            Self::Checking { .. }
                | Self::Downloading { .. }
                | Self::Installing { .. }
                | Self::Restarting { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update() -> AvailableUpdate {
        AvailableUpdate {
            version: "1.1.0".into(),
            current: "1.0.0".into(),
            notes: Some("Faster search".into()),
            date: None,
            failed_before: None,
        }
    }

    #[test]
    fn states_cross_ipc_as_tagged_camel_case() {
        let state = UpdateState::Downloading {
            update: update(),
            received: 10,
            total: Some(100),
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["status"], "downloading");
        assert_eq!(json["update"]["failedBefore"], serde_json::Value::Null);
        assert_eq!(json["total"], 100);
        let back: UpdateState = serde_json::from_value(json).unwrap();
        assert_eq!(back, state);
        let json = serde_json::to_value(UpdateState::UpToDate {
            current: "1.0.0".into(),
            updated_from: Some("0.9.0".into()),
        })
        .unwrap();
        assert_eq!(json["status"], "upToDate");
        assert_eq!(json["updatedFrom"], "0.9.0");
    }

    #[test]
    fn current_and_busy_follow_the_state() {
        let available = UpdateState::Available(update());
        assert_eq!(available.current(), "1.0.0");
        assert!(!available.is_busy());
        assert!(UpdateState::Installing { update: update() }.is_busy());
        assert!(
            !UpdateState::CheckFailed {
                current: "1.0.0".into(),
                message: "down".into()
            }
            .is_busy()
        );
    }
}
