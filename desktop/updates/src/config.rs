//! Where updates come from and which key signs them.
//!
//! The signing key is compiled in (`plugins.updater.pubkey` in
//! `tauri.conf.json`, set by the release pipeline). Only debug builds accept
//! `CONFAB_UPDATER_PUBKEY`, so developers and tests can sign their own bundles;
//! an installed release trusts nothing but its baked-in key. `CONFAB_UPDATE_URL`
//! moves the endpoint: anywhere in debug builds (https, or http to this
//! machine); in release builds only to another path on a compiled-in host,
//! and is otherwise ignored, so nobody can point an installed app at an
//! update server of their own (the signature decides what installs, the
//! host what is offered).

use base64::Engine as _;
use url::Url;

/// Environment variable that replaces the configured endpoints.
pub const UPDATE_URL_VAR: &str = "CONFAB_UPDATE_URL";
/// Environment variable that replaces the signing key, debug builds only.
pub const PUBKEY_VAR: &str = "CONFAB_UPDATER_PUBKEY";

/// Why this build cannot update itself; shown to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "Updates are off: this build has no update server. Set {UPDATE_URL_VAR} or build with plugins.updater.endpoints."
    )]
    NoEndpoint,
    #[error("Updates are off: {source_name} has an invalid URL {value:?} ({reason}).")]
    InvalidUrl {
        source_name: String,
        value: String,
        reason: String,
    },
    #[error(
        "Updates are off: {source_name} must use https (plain http only to this machine, in debug builds): {value}"
    )]
    Insecure { source_name: String, value: String },
    #[error("Updates are off: this build has no update signing key (plugins.updater.pubkey).")]
    NoKey,
    #[error("Updates are off: {source_name} {reason}.")]
    InvalidKey {
        source_name: String,
        reason: &'static str,
    },
}

/// What the build configured (`plugins.updater` in `tauri.conf.json`).
#[derive(Debug, Clone, Default)]
pub struct Configured {
    pub endpoints: Vec<String>,
    pub pubkey: String,
}

/// Checked settings the updater runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateConfig {
    pub endpoints: Vec<Url>,
    /// The minisign public key, base64 as `tauri signer generate` prints it.
    pub pubkey: String,
}

impl UpdateConfig {
    /// Resolves the settings, or explains why this build cannot update itself
    /// (the explanation is shown to the user as is).
    pub fn resolve(
        configured: &Configured,
        env: &dyn Fn(&str) -> Option<String>,
        debug_build: bool,
    ) -> Result<Self, ConfigError> {
        let from_env = |name: &str| {
            env(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let from_var: Option<Vec<String>> = from_env(UPDATE_URL_VAR)
            .map(|value| value.split(',').map(|s| s.trim().to_owned()).collect());
        let (source, endpoints) = match from_var {
            Some(list) if debug_build || on_configured_hosts(&list, &configured.endpoints) => {
                (UPDATE_URL_VAR, list)
            }
            _ => (
                "the build's updater endpoints",
                configured.endpoints.clone(),
            ),
        };
        if endpoints.iter().all(|e| e.is_empty()) {
            return Err(ConfigError::NoEndpoint);
        }
        let endpoints = endpoints
            .iter()
            .filter(|e| !e.is_empty())
            .map(|e| endpoint(source, e, debug_build))
            .collect::<Result<Vec<_>, _>>()?;

        let (source, pubkey) = match from_env(PUBKEY_VAR).filter(|_| debug_build) {
            Some(key) => (PUBKEY_VAR, key),
            None => (
                "the build's updater key",
                configured.pubkey.trim().to_owned(),
            ),
        };
        if pubkey.is_empty() {
            return Err(ConfigError::NoKey);
        }
        check_pubkey(&pubkey).map_err(|reason| ConfigError::InvalidKey {
            source_name: source.to_owned(),
            reason,
        })?;
        Ok(Self { endpoints, pubkey })
    }
}

/// Whether every URL of `list` is on a host the build configured.
fn on_configured_hosts(list: &[String], configured: &[String]) -> bool {
    let host = |u: &str| {
        Url::parse(u)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
    };
    let allowed: Vec<String> = configured.iter().filter_map(|u| host(u)).collect();
    list.iter()
        .filter(|u| !u.is_empty())
        .all(|u| host(u).is_some_and(|h| allowed.contains(&h)))
}

fn endpoint(source: &str, value: &str, debug_build: bool) -> Result<Url, ConfigError> {
    let url = Url::parse(value).map_err(|e| ConfigError::InvalidUrl {
        source_name: source.to_owned(),
        value: value.to_owned(),
        reason: e.to_string(),
    })?;
    // Sign-in's rule (https, or http to this machine), with loopback http
    // for debug builds only.
    if confab_session::config::is_secure(&url) && (url.scheme() == "https" || debug_build) {
        return Ok(url);
    }
    Err(ConfigError::Insecure {
        source_name: source.to_owned(),
        value: value.to_owned(),
    })
}

/// A key as `tauri signer generate` prints it: base64 of a minisign public key
/// file (a comment line, then the key).
fn check_pubkey(key: &str) -> Result<(), &'static str> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| "is not base64")?;
    let text = String::from_utf8(bytes).map_err(|_| "is not a minisign public key")?;
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(comment), Some(key))
            if comment.starts_with("untrusted comment:") && key.trim().starts_with("RW") =>
        {
            Ok(())
        }
        _ => Err("is not a minisign public key"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    // A minisign public key file, base64 encoded as the Tauri CLI prints it.
    fn key() -> String {
        base64::engine::general_purpose::STANDARD.encode(
            "untrusted comment: minisign public key: 1234\nRWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3\n",
        )
    }

    fn resolve(
        configured: &Configured,
        env: &[(&str, &str)],
        debug: bool,
    ) -> Result<UpdateConfig, String> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        UpdateConfig::resolve(configured, &|name| env.get(name).cloned(), debug)
            .map_err(|e| e.to_string())
    }

    fn configured() -> Configured {
        Configured {
            endpoints: vec!["https://releases.example.com/latest.json".into()],
            pubkey: key(),
        }
    }

    #[test]
    fn the_build_settings_apply_by_default() {
        let config = resolve(&configured(), &[], false).unwrap();
        assert_eq!(
            config.endpoints[0].as_str(),
            "https://releases.example.com/latest.json"
        );
        assert_eq!(config.pubkey, key());
    }

    #[test]
    fn no_key_or_no_endpoint_turns_updates_off_with_a_reason() {
        let no_key = Configured {
            pubkey: " ".into(),
            ..configured()
        };
        assert!(
            resolve(&no_key, &[], false)
                .unwrap_err()
                .contains("signing key")
        );
        let no_endpoint = Configured {
            endpoints: vec![],
            ..configured()
        };
        assert!(
            resolve(&no_endpoint, &[], false)
                .unwrap_err()
                .contains("update server")
        );
        let garbage = Configured {
            pubkey: "not base64!".into(),
            ..configured()
        };
        assert!(
            resolve(&garbage, &[], false)
                .unwrap_err()
                .contains("not base64")
        );
        let not_minisign = Configured {
            pubkey: base64::engine::general_purpose::STANDARD.encode("hello"),
            ..configured()
        };
        assert!(
            resolve(&not_minisign, &[], false)
                .unwrap_err()
                .contains("minisign")
        );
    }

    #[test]
    fn the_endpoint_moves_by_environment_but_stays_https() {
        let elsewhere = [(
            UPDATE_URL_VAR,
            "https://a.example/l.json, https://b.example/l.json",
        )];
        let config = resolve(&configured(), &elsewhere, true).unwrap();
        assert_eq!(config.endpoints.len(), 2);
        // A release build ignores another host, and takes another path on
        // its own.
        let release = resolve(&configured(), &elsewhere, false).unwrap();
        assert_eq!(
            release.endpoints[0].as_str(),
            "https://releases.example.com/latest.json"
        );
        let same_host = [(
            UPDATE_URL_VAR,
            "https://RELEASES.example.com/beta/latest.json",
        )];
        let beta = resolve(&configured(), &same_host, false).unwrap();
        assert_eq!(
            beta.endpoints[0].as_str(),
            "https://releases.example.com/beta/latest.json"
        );
        let mixed = [(
            UPDATE_URL_VAR,
            "https://releases.example.com/x.json,https://evil.example/x.json",
        )];
        let mixed = resolve(&configured(), &mixed, false).unwrap();
        assert_eq!(mixed.endpoints.len(), 1, "all or nothing");
        let http = resolve(
            &configured(),
            &[(UPDATE_URL_VAR, "http://updates.example.com/latest.json")],
            true,
        );
        assert!(http.unwrap_err().contains("https"));
        let loopback = [(UPDATE_URL_VAR, "http://127.0.0.1:9/latest.json")];
        assert!(resolve(&configured(), &loopback, true).is_ok());
        // A release build ignores it (not a compiled-in host).
        let ignored = resolve(&configured(), &loopback, false).unwrap();
        assert_eq!(
            ignored.endpoints[0].host_str(),
            Some("releases.example.com")
        );
        let bad = resolve(&configured(), &[(UPDATE_URL_VAR, "::")], true);
        assert!(bad.unwrap_err().contains(UPDATE_URL_VAR));
    }

    #[test]
    fn only_debug_builds_take_a_key_from_the_environment() {
        let other = base64::engine::general_purpose::STANDARD.encode(
            "untrusted comment: minisign public key: 99\nRWTOTHERKEYOTHERKEYOTHERKEYOTHERKEYOTHERKEYOTHERKEYOTHE\n",
        );
        let env = [(PUBKEY_VAR, other.as_str())];
        assert_eq!(resolve(&configured(), &env, true).unwrap().pubkey, other);
        assert_eq!(resolve(&configured(), &env, false).unwrap().pubkey, key());
    }
}
