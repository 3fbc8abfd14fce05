//! Where the app finds its identity provider and its proxy.
//!
//! Three layers, later ones winning: defaults compiled in at build time (the
//! same variable names, read by `option_env!`), `config.toml` in the app's
//! config dir, and the process environment. Each setting is checked here, so a
//! wrong value is reported at start with its source, never later as a
//! confusing network error.

use std::path::Path;

use serde::Deserialize;
use url::Url;

pub const FILE_NAME: &str = "config.toml";

/// The identity provider (Clerk's Frontend API or any OIDC issuer), the OAuth
/// client id of the desktop app, and the proxy's base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub issuer: Url,
    pub client_id: String,
    pub proxy_url: Url,
    /// Where the provider sends the browser back: the app's scheme
    /// ([`crate::oidc::REDIRECT_URI`] unless the app runs under a profile).
    pub redirect_uri: Url,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "Confab is not set up yet: {missing} not configured. Set {variables}, or write them to {file}."
    )]
    Missing {
        missing: String,
        variables: String,
        file: String,
    },
    #[error("{source_name}: {reason}")]
    Invalid { source_name: String, reason: String },
    #[error("{file} cannot be read: {reason}")]
    File { file: String, reason: String },
}

/// The settings as written in `config.toml`; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    issuer: Option<String>,
    publishable_key: Option<String>,
    client_id: Option<String>,
    proxy_url: Option<String>,
}

/// One layer's raw values, with the name of where each came from.
#[derive(Debug, Default, Clone)]
struct Layer {
    issuer: Option<(String, String)>,
    publishable_key: Option<(String, String)>,
    client_id: Option<(String, String)>,
    proxy_url: Option<(String, String)>,
}

impl Layer {
    fn over(self, base: Layer) -> Layer {
        // An issuer and a publishable key are two spellings of one setting: the
        // higher layer's choice replaces both of the lower layer's.
        let (issuer, publishable_key) = if self.issuer.is_some() || self.publishable_key.is_some() {
            (self.issuer, self.publishable_key)
        } else {
            (base.issuer, base.publishable_key)
        };
        Layer {
            issuer,
            publishable_key,
            client_id: self.client_id.or(base.client_id),
            proxy_url: self.proxy_url.or(base.proxy_url),
        }
    }
}

fn non_empty(source: &str, value: Option<String>) -> Option<(String, String)> {
    value
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .map(|v| (source.to_owned(), v))
}

fn env_layer(get: &dyn Fn(&str) -> Option<String>, prefix: &str) -> Layer {
    let pick = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| non_empty(&format!("{prefix}{n}"), get(n)))
    };
    Layer {
        issuer: pick(&["CONFAB_ISSUER"]),
        // Only Confab's own name: a `CLERK_PUBLISHABLE_KEY` meant for another
        // program in the same shell must not redirect sign-in.
        publishable_key: pick(&["CONFAB_CLERK_PUBLISHABLE_KEY"]),
        client_id: pick(&["CONFAB_CLIENT_ID"]),
        proxy_url: pick(&["CONFAB_PROXY_URL"]),
    }
}

fn build_defaults() -> Layer {
    let get = |name: &str| -> Option<String> {
        match name {
            "CONFAB_ISSUER" => option_env!("CONFAB_ISSUER"),
            "CONFAB_CLERK_PUBLISHABLE_KEY" => option_env!("CONFAB_CLERK_PUBLISHABLE_KEY"),
            "CONFAB_CLIENT_ID" => option_env!("CONFAB_CLIENT_ID"),
            "CONFAB_PROXY_URL" => option_env!("CONFAB_PROXY_URL"),
            _ => None,
        }
        .map(str::to_owned)
    };
    env_layer(&get, "build default ")
}

fn file_layer(path: &Path) -> Result<Layer, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Layer::default()),
        Err(err) => {
            return Err(ConfigError::File {
                file: path.display().to_string(),
                reason: err.to_string(),
            });
        }
    };
    let settings: FileSettings = toml::from_str(&text).map_err(|err| ConfigError::File {
        file: path.display().to_string(),
        reason: err.message().to_owned(),
    })?;
    let source = |key: &str| format!("{} ({key})", path.display());
    Ok(Layer {
        issuer: non_empty(&source("issuer"), settings.issuer),
        publishable_key: non_empty(&source("publishable_key"), settings.publishable_key),
        client_id: non_empty(&source("client_id"), settings.client_id),
        proxy_url: non_empty(&source("proxy_url"), settings.proxy_url),
    })
}

impl AuthConfig {
    /// Reads the three layers. `config_dir` is the app's config folder;
    /// `env` reads a variable (the process environment in the app).
    pub fn load(
        config_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let file = config_dir.join(FILE_NAME);
        let layer = env_layer(env, "")
            .over(file_layer(&file)?)
            .over(build_defaults());
        Self::from_layer(layer, &file)
    }

    /// Reads the process environment and `config_dir/config.toml`.
    pub fn from_environment(config_dir: &Path) -> Result<Self, ConfigError> {
        Self::load(config_dir, &|name| std::env::var(name).ok())
    }

    fn from_layer(layer: Layer, file: &Path) -> Result<Self, ConfigError> {
        let issuer = match (layer.issuer, layer.publishable_key) {
            (Some((source, value)), _) => url_setting(&source, &value)?,
            (None, Some((source, key))) => {
                let issuer =
                    confab_wire::auth::issuer_from_publishable_key(&key).ok_or_else(|| {
                        ConfigError::Invalid {
                            source_name: source.clone(),
                            reason: "not a Clerk publishable key (pk_test_… or pk_live_…)".into(),
                        }
                    })?;
                url_setting(&source, &issuer)?
            }
            (None, None) => None.ok_or_else(|| missing("the sign-in service", file))?,
        };
        let (source, client_id) = layer
            .client_id
            .ok_or_else(|| missing("the OAuth client id", file))?;
        if client_id.len() > 256 || client_id.chars().any(|c| c.is_control() || c == ' ') {
            return Err(ConfigError::Invalid {
                source_name: source,
                reason: "not an OAuth client id".into(),
            });
        }
        let (source, proxy) = layer
            .proxy_url
            .ok_or_else(|| missing("the Confab server (proxy) URL", file))?;
        let proxy_url = url_setting(&source, &proxy)?;
        Ok(Self {
            issuer,
            client_id,
            proxy_url,
            redirect_uri: default_redirect_uri(),
        })
    }

    /// `path` under the proxy's base URL, e.g. `api/user`.
    pub fn proxy_endpoint(&self, path: &str) -> Url {
        let mut base = self.proxy_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        base.join(path.trim_start_matches('/'))
            .unwrap_or_else(|_| self.proxy_url.clone())
    }
}

fn missing(what: &str, file: &Path) -> ConfigError {
    ConfigError::Missing {
        missing: what.to_owned(),
        variables:
            "CONFAB_ISSUER (or CONFAB_CLERK_PUBLISHABLE_KEY), CONFAB_CLIENT_ID and CONFAB_PROXY_URL"
                .into(),
        file: file.display().to_string(),
    }
}

/// An absolute URL without credentials, query or fragment; `https`, or `http`
/// to a loopback address only (tokens never travel in clear over a network).
fn url_setting(source: &str, value: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        source_name: source.to_owned(),
        reason,
    };
    let url = Url::parse(value).map_err(|e| invalid(format!("not a URL ({e}): {value}")))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(invalid(format!(
            "unsupported scheme {}: {value}",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not contain credentials".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query or fragment".into()));
    }
    if url.host().is_none() {
        return Err(invalid("has no host".into()));
    }
    if is_secure(&url) {
        Ok(url)
    } else {
        Err(invalid(format!(
            "must use https (plain http is only allowed to this machine): {value}"
        )))
    }
}

/// The app's callback, `app.confab.desktop://oauth/callback`.
#[allow(clippy::expect_used)] // a constant; every callback test parses through it
pub fn default_redirect_uri() -> Url {
    Url::parse(crate::oidc::REDIRECT_URI).expect("REDIRECT_URI is a URL")
}

/// `https`, or `http` to this machine (tokens never travel in clear over a
/// network).
pub fn is_secure(url: &Url) -> bool {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => loopback,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(env: &[(&str, &str)], file: Option<&str>) -> Result<AuthConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = file {
            std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
        }
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        AuthConfig::load(dir.path(), &|n| env.get(n).cloned())
    }

    const FULL: &[(&str, &str)] = &[
        ("CONFAB_ISSUER", "http://127.0.0.1:4000"),
        ("CONFAB_CLIENT_ID", "confab-desktop"),
        ("CONFAB_PROXY_URL", "http://127.0.0.1:8787"),
    ];

    #[test]
    fn environment_alone_is_enough() {
        let config = load(FULL, None).unwrap();
        assert_eq!(config.issuer.as_str(), "http://127.0.0.1:4000/");
        assert_eq!(config.client_id, "confab-desktop");
        assert_eq!(
            config.proxy_endpoint("api/user").as_str(),
            "http://127.0.0.1:8787/api/user"
        );
    }

    #[test]
    fn environment_overrides_the_file_and_the_file_fills_gaps() {
        let file = r#"
            publishable_key = "pk_test_Y2xlcmsuZXhhbXBsZS5jb20k"
            client_id = "from-file"
            proxy_url = "https://api.example.com/confab"
        "#;
        let config = load(&[("CONFAB_CLIENT_ID", "from-env")], Some(file)).unwrap();
        assert_eq!(config.issuer.as_str(), "https://clerk.example.com/");
        assert_eq!(config.client_id, "from-env");
        assert_eq!(
            config.proxy_endpoint("/api/user").as_str(),
            "https://api.example.com/confab/api/user"
        );
        // An issuer in the environment replaces the file's publishable key.
        let config = load(&[("CONFAB_ISSUER", "https://id.example.org")], Some(file)).unwrap();
        assert_eq!(config.issuer.as_str(), "https://id.example.org/");
    }

    #[test]
    fn nothing_configured_names_every_setting_and_the_file() {
        let err = load(&[], None).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ConfigError::Missing { .. }));
        for needle in [
            "CONFAB_ISSUER",
            "CONFAB_CLIENT_ID",
            "CONFAB_PROXY_URL",
            FILE_NAME,
        ] {
            assert!(text.contains(needle), "{text}");
        }
        let err = load(&FULL[..2], None).unwrap_err().to_string();
        assert!(err.contains("proxy"), "{err}");
    }

    #[test]
    fn hostile_or_wrong_values_are_refused_with_their_source() {
        let cases: &[(&str, &str, &str)] = &[
            ("CONFAB_ISSUER", "http://id.example.com", "https"),
            ("CONFAB_ISSUER", "javascript:alert(1)", "scheme"),
            ("CONFAB_ISSUER", "https://u:p@id.example.com", "credentials"),
            ("CONFAB_PROXY_URL", "https://x.example.com/?a=b", "query"),
            ("CONFAB_PROXY_URL", "not a url", "not a URL"),
            ("CONFAB_CLIENT_ID", "two words", "client id"),
            (
                "CONFAB_CLERK_PUBLISHABLE_KEY",
                "sk_live_secret",
                "publishable key",
            ),
        ];
        for (name, value, needle) in cases {
            let mut env: Vec<(&str, &str)> =
                FULL.iter().copied().filter(|(k, _)| k != name).collect();
            if *name == "CONFAB_CLERK_PUBLISHABLE_KEY" {
                env.retain(|(k, _)| *k != "CONFAB_ISSUER");
            }
            env.push((name, value));
            let err = load(&env, None).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(needle), "{name}={value}: {text}");
            assert!(text.contains(name), "{name}={value}: {text}");
        }
    }

    #[test]
    fn a_malformed_file_is_reported_not_ignored() {
        let err = load(FULL, Some("client_id = [")).unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }), "{err}");
        let err = load(FULL, Some("clientid = \"typo\"")).unwrap_err();
        assert!(err.to_string().contains("clientid"), "{err}");
    }
}
