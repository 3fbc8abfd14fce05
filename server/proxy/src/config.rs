//! Configuration: flags with environment fallbacks. Invalid values fail at start
//! with a message naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::auth::{AuthConfig, ClerkBackend, Secret};
use crate::identity::{CLERK_API, Identity};

#[derive(Debug, Parser)]
#[command(name = "confab-proxy", version, about = "Confab's backend proxy")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API.
    Serve(Box<ServeArgs>),
    /// Create the DynamoDB table, its index and TTL (idempotent).
    Setup(SetupArgs),
    /// Give a user a few sample conversations if they have none (the local
    /// stack's demo user; idempotent).
    Seed(SeedArgs),
}

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The user id (the token subject), e.g. `user_demo`.
    #[arg(long)]
    pub user: String,

    /// Where data lives, as for `serve`.
    #[arg(long, env = "CONFAB_STORE")]
    pub store: Option<String>,

    /// DynamoDB table name.
    #[arg(long, env = "CONFAB_TABLE", default_value = "confab")]
    pub table: String,
}

impl SeedArgs {
    pub fn store_config(&self) -> Result<StoreConfig, ConfigError> {
        store_config(self.store.as_deref(), &self.table)
    }
}

/// `CONFAB_STORE` and `CONFAB_TABLE` into a store choice.
fn store_config(store: Option<&str>, table: &str) -> Result<StoreConfig, ConfigError> {
    let aws_configured = [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT_URL_DYNAMODB",
    ]
    .iter()
    .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    Ok(match store {
        None | Some("") if aws_configured => StoreConfig::DynamoDb {
            table: table.to_owned(),
        },
        None | Some("") => StoreConfig::Sqlite(PathBuf::from("confab-data/confab.db")),
        Some("dynamodb") => StoreConfig::DynamoDb {
            table: table.to_owned(),
        },
        Some(other) => match other.strip_prefix("sqlite:") {
            Some(path) if !path.is_empty() => StoreConfig::Sqlite(PathBuf::from(path)),
            _ => {
                return Err(err("CONFAB_STORE", "use `sqlite:<path>` or `dynamodb`"));
            }
        },
    })
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// DynamoDB table name.
    #[arg(long, env = "CONFAB_TABLE", default_value = "confab")]
    pub table: String,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "CONFAB_LISTEN", default_value = "127.0.0.1:8787")]
    pub listen: SocketAddr,

    /// Where data lives: `dynamodb`, or `sqlite:<path>` for the embedded store.
    /// Default: `dynamodb` when AWS is configured (AWS_REGION,
    /// AWS_DEFAULT_REGION or AWS_ENDPOINT_URL_DYNAMODB), else
    /// `sqlite:confab-data/confab.db`.
    #[arg(long, env = "CONFAB_STORE")]
    pub store: Option<String>,

    /// DynamoDB table name.
    #[arg(long, env = "CONFAB_TABLE", default_value = "confab")]
    pub table: String,

    /// The token issuer (Clerk's Frontend API URL). Derived from the publishable
    /// key when unset.
    #[arg(long, env = "CLERK_ISSUER")]
    pub clerk_issuer: Option<String>,

    /// Clerk publishable key (encodes the Frontend API domain).
    #[arg(long, env = "CLERK_PUBLISHABLE_KEY", hide_env_values = true)]
    pub clerk_publishable_key: Option<String>,

    /// The template's name for the publishable key.
    #[arg(
        long,
        env = "NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY",
        hide_env_values = true
    )]
    pub next_public_clerk_publishable_key: Option<String>,

    /// OAuth client ids whose access tokens are accepted (comma-separated).
    #[arg(long, env = "CLERK_OAUTH_CLIENT_IDS", value_delimiter = ',')]
    pub clerk_oauth_client_ids: Vec<String>,

    /// Authorized parties (`azp`) whose session tokens are accepted (comma-separated).
    #[arg(long, env = "CLERK_AUTHORIZED_PARTIES", value_delimiter = ',')]
    pub clerk_authorized_parties: Vec<String>,

    /// PEM public key to verify tokens without fetching the JWKS.
    #[arg(long, env = "CLERK_JWT_KEY", hide_env_values = true)]
    pub clerk_jwt_key: Option<String>,

    /// Clerk secret key: profiles are then read from Clerk's Backend API,
    /// which also verifies opaque OAuth access tokens (`oat_…`).
    #[arg(long, env = "CLERK_SECRET_KEY", hide_env_values = true)]
    pub clerk_secret_key: Option<String>,

    /// Clerk's Backend API host (the proxy adds `/v1`): for tests and for
    /// proxies in front of Clerk.
    #[arg(long, env = "CLERK_API_URL", default_value = CLERK_API)]
    pub clerk_api_url: String,

    /// Seconds Clerk's acceptance of an opaque access token is trusted before
    /// asking again (1-60): how late a revocation may take effect.
    #[arg(long, env = "CLERK_TOKEN_CACHE_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=60))]
    pub clerk_token_cache_secs: u64,

    /// Signing secret of the Clerk webhook endpoint (`whsec_…`).
    #[arg(long, env = "CLERK_WEBHOOK_SIGNING_SECRET", hide_env_values = true)]
    pub clerk_webhook_signing_secret: Option<String>,

    /// Requests per second each user may make (sustained); 0 disables the limit.
    #[arg(long, env = "CONFAB_RATE_LIMIT", default_value_t = 50)]
    pub rate_limit: u32,

    /// Requests each user may make in a burst above the sustained rate.
    #[arg(long, env = "CONFAB_RATE_BURST", default_value_t = 200)]
    pub rate_burst: u32,

    /// Most messages one conversation may hold.
    #[arg(
        long,
        env = "CONFAB_MAX_CONVERSATION_MESSAGES",
        default_value_t = 10_000
    )]
    pub max_conversation_messages: u64,

    /// Most bytes of message content one conversation may hold (20 MiB).
    #[arg(long, env = "CONFAB_MAX_CONVERSATION_BYTES", default_value_t = 20 * 1024 * 1024)]
    pub max_conversation_bytes: u64,

    /// Redis for change events across proxy instances (`redis://host:6379`).
    /// Unset: events reach the streams of this instance only.
    #[arg(long, env = "CONFAB_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Anthropic API key: assistant replies use Claude. Unset (and no
    /// CONFAB_OPENAI_BASE_URL): replies are off, and say so.
    #[arg(long, env = "ANTHROPIC_API_KEY", hide_env_values = true)]
    pub anthropic_api_key: Option<String>,

    /// Anthropic's API, or a proxy in front of it.
    #[arg(long, env = "ANTHROPIC_BASE_URL", default_value = crate::assistant::provider::DEFAULT_ANTHROPIC_URL)]
    pub anthropic_base_url: String,

    /// An OpenAI-compatible chat-completions server instead (Ollama:
    /// `http://localhost:11434/v1`, llama.cpp server, vLLM). Needs CONFAB_MODELS.
    #[arg(long, env = "CONFAB_OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,

    /// The OpenAI-compatible server's key, when it wants one.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,

    /// The models users may choose, comma-separated, each `id` or
    /// `id=Display name`; the first is the default.
    #[arg(long, env = "CONFAB_MODELS")]
    pub models: Option<String>,

    /// Tokens (input plus output) each user may spend on replies per UTC
    /// day; 0 for no limit.
    #[arg(long, env = "CONFAB_DAILY_TOKENS", default_value_t = crate::assistant::DEFAULT_DAILY_TOKENS)]
    pub daily_tokens: u64,

    /// The longest reply, in tokens.
    #[arg(long, env = "CONFAB_MAX_TOKENS", default_value_t = 4096)]
    pub max_tokens: u32,

    /// The models' context window in tokens: the history sent is cut to fit.
    #[arg(long, env = "CONFAB_CONTEXT_TOKENS", default_value_t = 100_000)]
    pub context_tokens: u64,

    /// Seconds a client may take to send a request's headers (slow clients
    /// are disconnected).
    #[arg(long, env = "CONFAB_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,

    /// Connections open at once; past it, new ones wait until one closes.
    #[arg(long, env = "CONFAB_MAX_CONNECTIONS", default_value_t = 8192)]
    pub max_connections: usize,

    /// Log format: "text" for people, "json" for log collectors.
    #[arg(long, env = "CONFAB_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    Sqlite(PathBuf),
    DynamoDb { table: String },
}

#[derive(Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub identity: Identity,
    pub webhook_secret: Option<String>,
    pub rate_limit: crate::limits::RateLimit,
    pub redis_url: Option<String>,
    pub caps: crate::store::Caps,
    /// `Err`: replies are off, and why.
    pub assistant: Result<crate::assistant::Settings, String>,
    pub serve: crate::serve::Limits,
}

/// Claude models offered when CONFAB_MODELS is unset.
pub const DEFAULT_ANTHROPIC_MODELS: &str =
    "claude-sonnet-4-5=Claude Sonnet 4.5,claude-haiku-4-5=Claude Haiku 4.5";

/// `id` or `id=Name`, comma-separated, into the allow-list.
fn parse_models(raw: &str) -> Result<Vec<confab_wire::assistant::ModelInfo>, ConfigError> {
    let mut models: Vec<confab_wire::assistant::ModelInfo> = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (id, name) = match entry.split_once('=') {
            Some((id, name)) => (id.trim(), name.trim()),
            None => (entry, entry),
        };
        let plain = |c: char| c.is_ascii_alphanumeric() || "-_.:/@".contains(c);
        if id.is_empty() || id.len() > 128 || !id.chars().all(plain) {
            return Err(err(
                "CONFAB_MODELS",
                format!("`{id}` is not a model id (letters, digits and - _ . : / @)"),
            ));
        }
        if models.iter().any(|m| m.id == id) {
            return Err(err("CONFAB_MODELS", format!("`{id}` is listed twice")));
        }
        models.push(confab_wire::assistant::ModelInfo {
            id: id.to_owned(),
            name: if name.is_empty() { id } else { name }.to_owned(),
        });
    }
    if models.is_empty() {
        return Err(err("CONFAB_MODELS", "lists no model"));
    }
    Ok(models)
}

fn http_url(variable: &'static str, raw: &str) -> Result<String, ConfigError> {
    let url = reqwest::Url::parse(raw).map_err(|e| err(variable, format!("not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(url.host_str().unwrap_or_default()) => {}
        "http" => {
            return Err(err(
                variable,
                "plain http is accepted for a server on this machine only: use https",
            ));
        }
        _ => return Err(err(variable, "must be an http(s) URL")),
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

fn err(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

pub use confab_wire::auth::issuer_from_publishable_key;

/// Whether `host` (as a URL prints it) names this machine.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl ServeArgs {
    pub fn resolve(&self) -> Result<ServeConfig, ConfigError> {
        let store = store_config(self.store.as_deref(), &self.table)?;

        let issuer = match (&self.clerk_issuer, self.publishable_key()) {
            (Some(issuer), _) => issuer.clone(),
            (None, Some((variable, key))) => issuer_from_publishable_key(key).ok_or_else(|| {
                err(
                    variable,
                    "not a Clerk publishable key (pk_test_… or pk_live_…)",
                )
            })?,
            (None, None) => {
                return Err(err(
                    "CLERK_ISSUER",
                    "set it (or CLERK_PUBLISHABLE_KEY) so tokens can be verified",
                ));
            }
        };
        let parsed = reqwest::Url::parse(&issuer)
            .map_err(|e| err("CLERK_ISSUER", format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(err("CLERK_ISSUER", "must be an http(s) URL"));
        }
        // Plain http would let anyone on the path swap the signing keys: only
        // for an issuer on this machine (the local stack, tests).
        if parsed.scheme() == "http" && !is_loopback(parsed.host_str().unwrap_or_default()) {
            return Err(err(
                "CLERK_ISSUER",
                "plain http is accepted for an issuer on this machine only (localhost, 127.0.0.1, ::1): use https",
            ));
        }

        let clean = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let mut auth = AuthConfig::new(&issuer);
        auth.allowed_client_ids = clean(&self.clerk_oauth_client_ids);
        auth.allowed_parties = clean(&self.clerk_authorized_parties);
        if auth.allowed_client_ids.is_empty() && auth.allowed_parties.is_empty() {
            return Err(err(
                "CLERK_OAUTH_CLIENT_IDS",
                "list the OAuth client ids (or CLERK_AUTHORIZED_PARTIES) whose tokens are accepted",
            ));
        }
        auth.static_key_pem = self.clerk_jwt_key.clone().filter(|k| !k.trim().is_empty());

        let api = self.clerk_api_url.trim().trim_end_matches('/').to_owned();
        let parsed = reqwest::Url::parse(&api)
            .map_err(|e| err("CLERK_API_URL", format!("not a URL: {e}")))?;
        // The secret key travels in every call: plain http only on this machine.
        if parsed.scheme() != "https"
            && !(parsed.scheme() == "http" && is_loopback(parsed.host_str().unwrap_or_default()))
        {
            return Err(err(
                "CLERK_API_URL",
                "must be an https URL (plain http only for a host on this machine)",
            ));
        }
        auth.clerk_backend = match self.clerk_secret_key.as_deref().map(str::trim) {
            Some(secret) if !secret.is_empty() => Some(ClerkBackend {
                api,
                secret: Secret::new(secret.to_owned()),
            }),
            _ => None,
        };
        auth.opaque_cache = std::time::Duration::from_secs(self.clerk_token_cache_secs);
        let identity = match &auth.clerk_backend {
            Some(backend) => Identity::ClerkBackend(backend.clone()),
            None => Identity::Userinfo {
                url: format!("{}/oauth/userinfo", auth.issuer),
            },
        };

        let webhook_secret = self
            .clerk_webhook_signing_secret
            .clone()
            .filter(|s| !s.trim().is_empty());
        if let Some(secret) = &webhook_secret {
            crate::webhooks::WebhookVerifier::new(secret)
                .map_err(|_| err("CLERK_WEBHOOK_SIGNING_SECRET", "not a whsec_… secret"))?;
        }

        let redis_url = self.redis_url.clone().filter(|s| !s.trim().is_empty());
        if let Some(url) = &redis_url {
            redis::Client::open(url.as_str())
                .map_err(|e| err("CONFAB_REDIS_URL", format!("not a Redis URL: {e}")))?;
        }

        if self.max_conversation_messages == 0 {
            return Err(err(
                "CONFAB_MAX_CONVERSATION_MESSAGES",
                "must be at least 1",
            ));
        }
        if self.max_conversation_bytes == 0 {
            return Err(err("CONFAB_MAX_CONVERSATION_BYTES", "must be at least 1"));
        }

        let assistant = self.assistant()?;
        if self.header_timeout_secs == 0 {
            return Err(err("CONFAB_HEADER_TIMEOUT_SECS", "must be at least 1"));
        }
        if self.max_connections == 0 {
            return Err(err("CONFAB_MAX_CONNECTIONS", "must be at least 1"));
        }

        Ok(ServeConfig {
            assistant,
            serve: crate::serve::Limits {
                header_read_timeout: std::time::Duration::from_secs(self.header_timeout_secs),
                max_connections: self.max_connections,
            },
            listen: self.listen,
            store,
            auth,
            identity,
            webhook_secret,
            rate_limit: crate::limits::RateLimit {
                per_second: self.rate_limit,
                burst: self.rate_burst,
            },
            redis_url,
            caps: crate::store::Caps {
                messages: self.max_conversation_messages,
                bytes: self.max_conversation_bytes,
            },
        })
    }

    /// The assistant's settings, `Err(reason)` when no provider is set.
    fn assistant(&self) -> Result<Result<crate::assistant::Settings, String>, ConfigError> {
        use crate::assistant::{Provider, Settings};
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        let (provider, default_models) = match (
            nonempty(&self.anthropic_api_key),
            nonempty(&self.openai_base_url),
        ) {
            (Some(key), _) => (
                Provider::Anthropic {
                    base_url: http_url("ANTHROPIC_BASE_URL", &self.anthropic_base_url)?,
                    key: key.trim().to_owned(),
                },
                Some(DEFAULT_ANTHROPIC_MODELS),
            ),
            (None, Some(url)) => (
                Provider::OpenAi {
                    base_url: http_url("CONFAB_OPENAI_BASE_URL", &url)?,
                    key: nonempty(&self.openai_api_key).map(|k| k.trim().to_owned()),
                },
                None,
            ),
            (None, None) => {
                return Ok(Err(
                    "no model provider is configured (ANTHROPIC_API_KEY or CONFAB_OPENAI_BASE_URL)"
                        .into(),
                ));
            }
        };
        let models = match (nonempty(&self.models), default_models) {
            (Some(raw), _) => parse_models(&raw)?,
            (None, Some(defaults)) => parse_models(defaults)?,
            (None, None) => {
                return Err(err(
                    "CONFAB_MODELS",
                    "name the models of the OpenAI-compatible server (for example `llama3.2`)",
                ));
            }
        };
        if self.max_tokens == 0 {
            return Err(err("CONFAB_MAX_TOKENS", "must be at least 1"));
        }
        if self.context_tokens <= u64::from(self.max_tokens) + 1_000 {
            return Err(err(
                "CONFAB_CONTEXT_TOKENS",
                "must exceed CONFAB_MAX_TOKENS by more than 1000",
            ));
        }
        let mut settings = Settings::new(provider, models);
        settings.daily_tokens = (self.daily_tokens > 0).then_some(self.daily_tokens);
        settings.max_tokens = self.max_tokens;
        settings.context_tokens = self.context_tokens;
        Ok(Ok(settings))
    }

    fn publishable_key(&self) -> Option<(&'static str, &str)> {
        self.clerk_publishable_key
            .as_deref()
            .map(|k| ("CLERK_PUBLISHABLE_KEY", k))
            .or(self
                .next_public_clerk_publishable_key
                .as_deref()
                .map(|k| ("NEXT_PUBLIC_CLERK_PUBLISHABLE_KEY", k)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> ServeArgs {
        let mut argv = vec!["confab-proxy", "serve"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Serve(args) => *args,
            Command::Setup(_) | Command::Seed(_) => unreachable!(),
        }
    }

    #[test]
    fn listen_defaults_to_loopback_8787() {
        assert_eq!(
            args(&[]).listen,
            "127.0.0.1:8787".parse::<SocketAddr>().unwrap()
        );
    }

    #[test]
    fn invalid_listen_names_the_flag() {
        let err = Cli::try_parse_from(["confab-proxy", "serve", "--listen", "nowhere"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--listen"), "{err}");
    }

    #[test]
    fn issuer_comes_from_the_publishable_key() {
        // base64("clerk.example.com$")
        let key = "pk_test_Y2xlcmsuZXhhbXBsZS5jb20k";
        assert_eq!(
            issuer_from_publishable_key(key).as_deref(),
            Some("https://clerk.example.com")
        );
        assert_eq!(issuer_from_publishable_key("pk_test_!!!"), None);
        assert_eq!(
            issuer_from_publishable_key("sk_test_Y2xlcmsuZXhhbXBsZS5jb20k"),
            None
        );
        let cfg = args(&[
            "--next-public-clerk-publishable-key",
            key,
            "--clerk-oauth-client-ids",
            "abc, def",
        ])
        .resolve()
        .unwrap();
        assert_eq!(cfg.auth.issuer, "https://clerk.example.com");
        assert_eq!(
            cfg.auth.jwks_url,
            "https://clerk.example.com/.well-known/jwks.json"
        );
        assert_eq!(cfg.auth.allowed_client_ids, ["abc", "def"]);
        assert_eq!(
            cfg.store,
            StoreConfig::Sqlite("confab-data/confab.db".into())
        );
    }

    #[test]
    fn errors_name_the_variable() {
        let cases: &[(&[&str], &str)] = &[
            (&["--clerk-oauth-client-ids", "x"], "CLERK_ISSUER"),
            (
                &[
                    "--clerk-publishable-key",
                    "pk_test_bm9wZQ",
                    "--clerk-oauth-client-ids",
                    "x",
                ],
                "CLERK_PUBLISHABLE_KEY",
            ),
            (
                &["--clerk-issuer", "http://127.0.0.1:1"],
                "CLERK_OAUTH_CLIENT_IDS",
            ),
            (
                &["--clerk-issuer", "ftp://x", "--clerk-oauth-client-ids", "x"],
                "CLERK_ISSUER",
            ),
            (
                &[
                    "--clerk-issuer",
                    "http://x",
                    "--clerk-oauth-client-ids",
                    "x",
                    "--store",
                    "mysql:x",
                ],
                "CONFAB_STORE",
            ),
        ];
        for (argv, variable) in cases {
            let e = args(argv).resolve().unwrap_err();
            assert_eq!(e.variable, *variable, "{argv:?}: {e}");
        }
    }

    #[test]
    fn the_secret_key_turns_clerk_on_and_never_shows() {
        let base = [
            "--clerk-issuer",
            "http://127.0.0.1:1",
            "--clerk-oauth-client-ids",
            "x",
        ];
        assert!(args(&base).resolve().unwrap().auth.clerk_backend.is_none());
        let mut with_key = base.to_vec();
        with_key.extend(["--clerk-secret-key", "sk_test_sEcReT"]);
        let cfg = args(&with_key).resolve().unwrap();
        let backend = cfg.auth.clerk_backend.clone().unwrap();
        assert_eq!(backend.api, "https://api.clerk.com");
        assert_eq!(backend.secret.expose(), "sk_test_sEcReT");
        assert!(!format!("{cfg:?}").contains("sEcReT"), "the key in Debug");

        let mut local = with_key.clone();
        local.extend(["--clerk-api-url", "http://127.0.0.1:4010/"]);
        let cfg = args(&local).resolve().unwrap();
        assert_eq!(cfg.auth.clerk_backend.unwrap().api, "http://127.0.0.1:4010");
        for bad in ["http://clerk.example.com", "ftp://127.0.0.1", "not a url"] {
            let mut argv = with_key.clone();
            argv.extend(["--clerk-api-url", bad]);
            let e = args(&argv).resolve().unwrap_err();
            assert_eq!(e.variable, "CLERK_API_URL", "{bad}: {e}");
        }
    }

    #[test]
    fn the_assistant_is_off_without_a_provider() {
        let base = [
            "--clerk-issuer",
            "http://127.0.0.1:1",
            "--clerk-oauth-client-ids",
            "x",
        ];
        let off = args(&base).resolve().unwrap().assistant.unwrap_err();
        assert!(off.contains("ANTHROPIC_API_KEY"), "{off}");

        let mut anthropic = base.to_vec();
        anthropic.extend(["--anthropic-api-key", "sk-ant-x"]);
        let on = args(&anthropic).resolve().unwrap().assistant.unwrap();
        assert_eq!(on.models[0].id, "claude-sonnet-4-5");
        assert_eq!(
            on.daily_tokens,
            Some(crate::assistant::DEFAULT_DAILY_TOKENS)
        );

        let mut local = base.to_vec();
        local.extend([
            "--openai-base-url",
            "http://127.0.0.1:11434/v1/",
            "--models",
            "llama3.2=Llama 3.2, qwen3",
            "--daily-tokens",
            "0",
        ]);
        let on = args(&local).resolve().unwrap().assistant.unwrap();
        let ids: Vec<_> = on
            .models
            .iter()
            .map(|m| (m.id.as_str(), m.name.as_str()))
            .collect();
        assert_eq!(ids, [("llama3.2", "Llama 3.2"), ("qwen3", "qwen3")]);
        assert_eq!(on.daily_tokens, None);
        assert!(format!("{:?}", on.provider).contains("http://127.0.0.1:11434/v1)"));
    }

    #[test]
    fn assistant_settings_errors_name_the_variable() {
        let base = [
            "--clerk-issuer",
            "http://127.0.0.1:1",
            "--clerk-oauth-client-ids",
            "x",
        ];
        let cases: &[(&[&str], &str)] = &[
            (
                &["--openai-base-url", "http://127.0.0.1:1/v1"],
                "CONFAB_MODELS",
            ),
            (
                &["--anthropic-api-key", "k", "--models", "a b"],
                "CONFAB_MODELS",
            ),
            (
                &["--anthropic-api-key", "k", "--models", "a,a"],
                "CONFAB_MODELS",
            ),
            (
                &["--anthropic-api-key", "k", "--models", " , "],
                "CONFAB_MODELS",
            ),
            (
                &[
                    "--anthropic-api-key",
                    "k",
                    "--anthropic-base-url",
                    "http://api.example.com",
                ],
                "ANTHROPIC_BASE_URL",
            ),
            (
                &["--openai-base-url", "ftp://x", "--models", "m"],
                "CONFAB_OPENAI_BASE_URL",
            ),
            (
                &["--anthropic-api-key", "k", "--max-tokens", "0"],
                "CONFAB_MAX_TOKENS",
            ),
            (
                &["--anthropic-api-key", "k", "--context-tokens", "2000"],
                "CONFAB_CONTEXT_TOKENS",
            ),
        ];
        for (extra, variable) in cases {
            let mut argv = base.to_vec();
            argv.extend_from_slice(extra);
            let e = args(&argv).resolve().unwrap_err();
            assert_eq!(e.variable, *variable, "{extra:?}: {e}");
        }
    }

    #[test]
    fn plain_http_issuers_only_on_this_machine() {
        for issuer in [
            "http://127.0.0.1:8788",
            "http://localhost:8788",
            "http://[::1]:8788",
            "https://clerk.example.com",
        ] {
            let resolved =
                args(&["--clerk-issuer", issuer, "--clerk-oauth-client-ids", "x"]).resolve();
            assert!(resolved.is_ok(), "{issuer}: {:?}", resolved.err());
        }
        for issuer in [
            "http://clerk.example.com",
            "http://10.0.0.5",
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
        ] {
            let e = args(&["--clerk-issuer", issuer, "--clerk-oauth-client-ids", "x"])
                .resolve()
                .unwrap_err();
            assert_eq!(e.variable, "CLERK_ISSUER", "{issuer}");
            assert!(e.problem.contains("https"), "{issuer}: {e}");
        }
    }
}
