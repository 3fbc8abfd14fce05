//! App profiles: one machine running Confab as several devices (the local
//! stack's `scripts/run --second-device`).
//!
//! A profile is named by `CONFAB_PROFILE`, or by the sign-in callback the OS
//! hands a fresh process (`app.confab.desktop://oauth/callback/<profile>`), so
//! the link reaches the instance that asked for it. A profile gets its own
//! identifier (and so its own single-instance name, data, config and log
//! folders), its own keyring service and its own redirect URI. Without one,
//! nothing changes.

use confab_session::oidc::REDIRECT_URI;
use tauri::Url;

/// The variable that names the profile.
pub const VAR: &str = "CONFAB_PROFILE";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile(Option<String>);

impl Profile {
    /// From the command line (a callback link names its profile; debug
    /// builds only, so a web page cannot open an installed app under a new
    /// profile) or the environment. A link naming an invalid profile counts as
    /// the default one's; an invalid `CONFAB_PROFILE` is an error.
    pub fn detect(args: &[String], env: Option<String>) -> Result<Self, String> {
        // A callback link names the instance waiting for it (no name: the
        // default one), whatever the environment says.
        let from_link = args.iter().find_map(|arg| {
            let url = Url::parse(arg).ok()?;
            let base = Url::parse(REDIRECT_URI).ok()?;
            if url.scheme() != base.scheme() || url.host_str() != base.host_str() {
                return None;
            }
            let rest = url.path().strip_prefix(base.path())?;
            match rest.trim_end_matches('/') {
                "" => Some(String::new()),
                named if cfg!(debug_assertions) => named.strip_prefix('/').map(str::to_owned),
                _ => Some(String::new()),
            }
        });
        if let Some(name) = from_link {
            return Ok(Self(Some(name).filter(|n| valid(n))));
        }
        match env.filter(|n| !n.is_empty()) {
            None => Ok(Self(None)),
            Some(name) if valid(&name) => Ok(Self(Some(name))),
            Some(name) => Err(format!(
                "{VAR}={name:?} is not a profile name: use 1-32 of a-z, 0-9 and -, starting with a letter"
            )),
        }
    }

    /// [`Profile::detect`] for this process.
    pub fn from_process() -> Result<Self, String> {
        let args: Vec<String> = std::env::args().collect();
        Self::detect(&args, std::env::var(VAR).ok())
    }

    pub fn name(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The app identifier under this profile.
    pub fn identifier(&self, base: &str) -> String {
        match &self.0 {
            Some(name) => format!("{base}.{name}"),
            None => base.to_owned(),
        }
    }

    /// The sign-in callback under this profile.
    pub fn redirect_uri(&self) -> Option<Url> {
        let name = self.0.as_ref()?;
        Url::parse(&format!("{REDIRECT_URI}/{name}")).ok()
    }
}

/// Also a valid D-Bus name element once in the identifier (which must not
/// start with a digit).
fn valid(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_default_changes_nothing() {
        let profile = Profile::detect(&args(&["confab"]), None).unwrap();
        assert_eq!(
            profile.identifier("app.confab.desktop"),
            "app.confab.desktop"
        );
        assert_eq!(profile.redirect_uri(), None);
    }

    #[test]
    fn a_profile_comes_from_the_environment_or_its_callback() {
        let profile = Profile::detect(&args(&["confab"]), Some("device-2".into())).unwrap();
        assert_eq!(
            profile.identifier("app.confab.desktop"),
            "app.confab.desktop.device-2"
        );
        assert_eq!(
            profile.redirect_uri().unwrap().as_str(),
            "app.confab.desktop://oauth/callback/device-2"
        );
        let launched_by_link = Profile::detect(
            &args(&[
                "confab",
                "app.confab.desktop://oauth/callback/device-2?code=a&state=b",
            ]),
            None,
        );
        assert_eq!(launched_by_link, Ok(profile));
        // The link wins: it names the instance that is waiting for it.
        let default_link = Profile::detect(
            &args(&[
                "confab",
                "app.confab.desktop://oauth/callback?code=a&state=b",
            ]),
            Some("device-2".into()),
        );
        assert_eq!(default_link, Ok(Profile::default()));
    }

    #[test]
    fn hostile_names_are_refused_or_fall_back_to_the_default() {
        for name in [
            "../x",
            "Device",
            "a b",
            "x".repeat(33).as_str(),
            "é",
            "2nd",
            "-x",
        ] {
            let err = Profile::detect(&args(&["confab"]), Some(name.into())).unwrap_err();
            assert!(err.contains("not a profile name"), "{name}: {err}");
        }
        for link in [
            "app.confab.desktop://oauth/callback/..%2Fetc?code=a",
            "app.confab.desktop://oauth/callback/2nd?code=a",
            "app.confab.desktop://oauth/callback/UPPER?code=a",
        ] {
            // A hostile link is still handled, by the default instance.
            assert_eq!(
                Profile::detect(&args(&["confab", link]), Some("device-2".into())),
                Ok(Profile::default()),
                "{link}"
            );
        }
        let other = Profile::detect(&args(&["confab", "https://oauth/callback/device-2"]), None);
        assert_eq!(other, Ok(Profile::default()));
    }
}
