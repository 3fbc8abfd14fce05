//! Where things are: the workspace, the built binaries, test artifacts.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

pub fn workspace_root() -> PathBuf {
    // tests/ sits directly under the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// A binary of the workspace built in the debug profile, e.g. `confab` or
/// `confab-proxy`. The test command builds them before running the suites.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    binary_in("debug", name)
}

/// The desktop app: the debug build, or the profile `CONFAB_APP_PROFILE`
/// names (`release` for benchmarks).
pub fn app_binary() -> anyhow::Result<PathBuf> {
    binary_in(&app_profile(), "confab")
}

/// The app's profile directory: `CONFAB_APP_PROFILE`, or `debug`.
fn app_profile() -> String {
    std::env::var("CONFAB_APP_PROFILE").unwrap_or_else(|_| "debug".into())
}

/// The blank Tauri window (`src-tauri/examples/blank.rs`) of the same
/// profile as [`app_binary`].
pub fn blank_window_binary() -> anyhow::Result<PathBuf> {
    let profile = app_profile();
    let release = if profile == "release" {
        " --release"
    } else {
        ""
    };
    binary_in(&profile, "examples/blank").with_context(|| {
        format!("build it with `cargo build{release} -p confab-desktop --example blank`")
    })
}

fn binary_in(profile: &str, name: &str) -> anyhow::Result<PathBuf> {
    let path = target_dir().join(profile).join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it first (`cargo build --workspace`, or run scripts/test)",
            path.display()
        );
    }
    Ok(path)
}

/// The Linux bundles' `.desktop` entry (`src-tauri/linux/confab.desktop`)
/// rendered as the bundler does (handlebars), with the values it passes and
/// `exec` as the binary.
pub fn desktop_entry(exec: &str) -> anyhow::Result<String> {
    let template =
        std::fs::read_to_string(workspace_root().join("src-tauri/linux/confab.desktop"))?;
    Ok(template
        .lines()
        .filter(|l| !l.starts_with("{{#if") && !l.starts_with("{{/if"))
        .map(|l| {
            l.replace("{{categories}}", "Office;")
                .replace("{{comment}}", "Your conversations, instantly and offline.")
                .replace("{{exec}}", exec)
                .replace("{{icon}}", "confab")
                .replace("{{name}}", "Confab")
                + "\n"
        })
        .collect())
}

/// A fresh folder for one test's screenshots and logs: `tests/artifacts/<test>/`.
pub fn artifacts_dir(test: &str) -> anyhow::Result<PathBuf> {
    let dir = workspace_root().join("tests").join("artifacts").join(test);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("could not clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
    Ok(dir)
}

/// The short commit the build scripts embed, or "unknown" outside a checkout.
pub fn git_commit() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "--short=10", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}
