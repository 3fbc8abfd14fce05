//! What the updater remembers across restarts (`updates.json` in the app's
//! data folder): the install under way and the versions that failed.
//!
//! An install is recorded before it starts. At the next start the running
//! version tells whether it took effect; if not, that version joins the failed
//! ones, and the start-up check never offers it again (an explicit check still
//! can, with the reason). A missing or unreadable file is an empty memory: it
//! can only cause one extra offer, never a lost update.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// At most this many failed versions are kept (oldest dropped first).
const KEEP_FAILED: usize = 20;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    attempt: Option<Attempt>,
    /// Version → why it failed, in the order they failed.
    #[serde(default)]
    failed: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Attempt {
    version: String,
    from: String,
}

#[derive(Debug)]
pub struct Memory {
    path: PathBuf,
    record: Record,
}

impl Memory {
    /// Reads `path`; a missing or corrupt file starts empty (and is logged).
    pub fn load(path: &Path) -> Self {
        let record = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|err| {
                log::warn!("{} is unreadable ({err}); starting afresh", path.display());
                Record::default()
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Record::default(),
            Err(err) => {
                log::warn!("{} cannot be read ({err}); starting afresh", path.display());
                Record::default()
            }
        };
        Self {
            path: path.to_path_buf(),
            record,
        }
    }

    /// Settles the install recorded before the last restart. Answers the
    /// version updated from when it took effect.
    pub fn on_start(&mut self, current: &str) -> Option<String> {
        let attempt = self.record.attempt.take()?;
        let outcome = if attempt.version == current {
            Some(attempt.from)
        } else {
            self.remember_failure(
                &attempt.version,
                format!(
                    "The update to {} did not take effect: Confab {current} started instead.",
                    attempt.version
                ),
            );
            None
        };
        self.save();
        outcome
    }

    /// Records that installing `version` over `from` starts now.
    pub fn begin(&mut self, version: &str, from: &str) {
        self.record.attempt = Some(Attempt {
            version: version.to_owned(),
            from: from.to_owned(),
        });
        self.save();
    }

    /// Forgets the install under way without blaming the version (its
    /// download was interrupted).
    pub fn abandon(&mut self) {
        if self.record.attempt.take().is_some() {
            self.save();
        }
    }

    /// Records that installing `version` failed, and why.
    pub fn fail(&mut self, version: &str, message: &str) {
        self.record.attempt = None;
        self.remember_failure(version, message.to_owned());
        self.save();
    }

    /// Why installing `version` failed before, if it did.
    pub fn failed(&self, version: &str) -> Option<String> {
        self.record
            .failed
            .iter()
            .rev()
            .find(|(v, _)| v == version)
            .map(|(_, why)| why.clone())
    }

    fn remember_failure(&mut self, version: &str, message: String) {
        self.record.failed.retain(|(v, _)| v != version);
        self.record.failed.push((version.to_owned(), message));
        let excess = self.record.failed.len().saturating_sub(KEEP_FAILED);
        self.record.failed.drain(..excess);
    }

    /// Writes through a temporary file and a rename, so a crash leaves the old
    /// or the new record, never half of one. Failing to save is logged: the
    /// worst outcome is one more offer of a version that failed.
    fn save(&self) {
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = self.path.with_extension("json.tmp");
            let bytes = serde_json::to_vec_pretty(&self.record).map_err(std::io::Error::other)?;
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &self.path)
        };
        if let Err(err) = write() {
            log::warn!("could not save {}: {err}", self.path.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_install_that_took_effect_reports_where_it_came_from_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("updates.json");
        Memory::load(&path).begin("1.1.0", "1.0.0");
        let mut memory = Memory::load(&path);
        assert_eq!(memory.on_start("1.1.0").as_deref(), Some("1.0.0"));
        assert_eq!(Memory::load(&path).on_start("1.1.0"), None);
        assert_eq!(memory.failed("1.1.0"), None);
    }

    #[test]
    fn an_install_that_did_not_take_effect_is_remembered_as_failed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("updates.json");
        Memory::load(&path).begin("1.1.0", "1.0.0");
        assert_eq!(Memory::load(&path).on_start("1.0.0"), None);
        let why = Memory::load(&path).failed("1.1.0").unwrap();
        assert!(why.contains("did not take effect"), "{why}");
    }

    #[test]
    fn failures_persist_and_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("updates.json");
        let mut memory = Memory::load(&path);
        for i in 0..30 {
            memory.fail(&format!("1.{i}.0"), "signature");
        }
        let memory = Memory::load(&path);
        assert_eq!(memory.failed("1.29.0").as_deref(), Some("signature"));
        assert_eq!(memory.failed("1.0.0"), None, "oldest failures are dropped");
        assert_eq!(memory.record.failed.len(), KEEP_FAILED);
    }

    #[test]
    fn a_corrupt_file_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("updates.json");
        std::fs::write(&path, b"{not json").unwrap();
        let mut memory = Memory::load(&path);
        assert_eq!(memory.on_start("1.0.0"), None);
        memory.fail("2.0.0", "broken");
        assert_eq!(
            Memory::load(&path).failed("2.0.0").as_deref(),
            Some("broken")
        );
    }
}
