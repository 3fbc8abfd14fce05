//! The app's files are the user's alone: on Unix everything it creates (the
//! cache and its WAL, `user.json`, `updates.json`, the logs, the webview's
//! data) is made 0600 and every folder 0700, whatever the session's umask.
//! Folders an earlier version made with looser modes are tightened at start.

use std::path::Path;

/// Sets the process's umask to 077: before anything creates a file.
pub fn restrict_new_files() {
    #[cfg(unix)]
    {
        use nix::sys::stat::{Mode, umask};
        umask(Mode::from_bits_truncate(0o077));
    }
}

/// Makes `dir` (when it exists) readable by its owner only.
pub fn tighten(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if dir.is_dir()
            && let Err(err) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        {
            log::warn!("could not make {} private: {err}", dir.display());
        }
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_files_and_folders_are_private() {
        super::restrict_new_files();
        let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
        let folder = dir.path().join("made");
        std::fs::create_dir_all(&folder).unwrap_or_else(|_| unreachable!());
        let file = folder.join("f");
        std::fs::write(&file, b"x").unwrap_or_else(|_| unreachable!());
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0)
        };
        assert_eq!(mode(&folder), 0o700);
        assert_eq!(mode(&file), 0o600);

        let loose = dir.path().join("loose");
        std::fs::create_dir(&loose).unwrap_or_else(|_| unreachable!());
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|_| unreachable!());
        super::tighten(&loose);
        assert_eq!(mode(&loose), 0o700);
    }
}
