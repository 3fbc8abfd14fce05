//! The desktop's session ([`confab_session::Session`]) against the real OpenID
//! provider the suite starts (and the real proxy where the profile matters),
//! without a window: every path of design section 4 and issue 4's negative
//! cases. The secrets live in an in-memory store here; the window tests
//! (`e2e_sign_in.rs`) use the real keyring.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use confab_session::session::{ATTEMPT_KEY, REFRESH_KEY};
use confab_session::{AuthConfig, MemoryStore, Session, UnavailableStore, Vault};
use confab_tests::oidc::Provider;
use confab_tests::paths;
use confab_tests::proxy::Proxy;
use confab_wire::auth::{AuthState, NoticeLevel, SignOutOutcome};
use tempfile::TempDir;
use url::Url;

const WAIT: Duration = Duration::from_secs(20);

struct Fixture {
    provider: Provider,
    proxy_url: String,
    _proxy: Option<Proxy>,
    dir: TempDir,
}

impl Fixture {
    fn start(name: &str, provider_env: &[(&str, &str)], with_proxy: bool) -> anyhow::Result<Self> {
        let artifacts = paths::artifacts_dir(&format!("sign_in_flow/{name}"))?;
        let provider = Provider::start(&artifacts, provider_env)?;
        let proxy = with_proxy
            .then(|| Proxy::sqlite(&provider.issuer, &artifacts))
            .transpose()?;
        let proxy_url = proxy
            .as_ref()
            .map(|p| p.base.clone())
            // Nothing listens on the discard port: a proxy that is down.
            .unwrap_or_else(|| "http://127.0.0.1:9".into());
        Ok(Self {
            provider,
            proxy_url,
            _proxy: proxy,
            dir: tempfile::tempdir()?,
        })
    }

    #[allow(clippy::expect_used)] // the fixture's own values: a failure is a bug in the test
    fn config(&self) -> AuthConfig {
        let env: HashMap<&str, String> = HashMap::from([
            ("CONFAB_ISSUER", self.provider.issuer.clone()),
            ("CONFAB_CLIENT_ID", confab_tests::oidc::CLIENT_ID.to_owned()),
            ("CONFAB_PROXY_URL", self.proxy_url.clone()),
        ]);
        AuthConfig::load(Path::new("/nonexistent"), &|n| env.get(n).cloned())
            .expect("valid configuration")
    }

    /// A session as one launch of the app would have it, on `secrets`.
    async fn launch(&self, secrets: &MemoryStore) -> Session {
        let session = Session::new(
            Ok(self.config()),
            Vault::new(secrets.clone()),
            self.dir.path(),
        );
        session.start().await;
        session
    }

    /// Starts an attempt and plays the user at the provider: the callback link.
    async fn browser_round_trip(&self, session: &Session, login: &str) -> anyhow::Result<Url> {
        let authorize = session.begin_sign_in().await?;
        Ok(Url::parse(
            &self.provider.authorize(authorize.as_str(), login).await?,
        )?)
    }
}

async fn wait_for(
    session: &Session,
    what: &str,
    done: impl Fn(&AuthState) -> bool,
) -> anyhow::Result<AuthState> {
    let mut changes = session.subscribe();
    let result = tokio::time::timeout(WAIT, changes.wait_for(|s| done(s))).await;
    match result {
        Ok(Ok(state)) => Ok(state.clone()),
        _ => anyhow::bail!("{what}: still {:?}", session.state()),
    }
}

fn signed_in_name(state: &AuthState) -> Option<&str> {
    match state {
        AuthState::SignedIn { user, .. } => Some(&user.name),
        _ => None,
    }
}

fn notice_of(state: &AuthState) -> Option<(NoticeLevel, String)> {
    let notice = match state {
        AuthState::SignedOut { notice } | AuthState::SignedIn { notice, .. } => notice.as_ref(),
        AuthState::Waiting { notice, .. } => notice.as_ref(),
        _ => None,
    };
    notice.map(|n| (n.level, n.message.clone()))
}

/// Changes one field of the pending attempt kept in the keyring, as if it
/// had been stored so (a cold start then reads it).
fn edit_attempt(
    secrets: &MemoryStore,
    field: &str,
    value: serde_json::Value,
) -> anyhow::Result<()> {
    let mut stored = secrets.snapshot();
    let mut attempt: serde_json::Value = serde_json::from_str(&stored[ATTEMPT_KEY])?;
    attempt[field] = value;
    stored.insert(ATTEMPT_KEY.into(), attempt.to_string());
    secrets.replace(stored);
    Ok(())
}

fn set_param(url: &Url, name: &str, value: &str) -> Url {
    let mut out = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == name {
                value.to_owned()
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    out.query_pairs_mut().clear().extend_pairs(pairs);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_validates_the_id_token_and_creates_the_profile_at_the_proxy() -> anyhow::Result<()>
{
    let fx = Fixture::start("full", &[], true)?;
    let secrets = MemoryStore::default();
    let session = fx.launch(&secrets).await;
    assert_eq!(session.state(), AuthState::SignedOut { notice: None });

    let callback = fx.browser_round_trip(&session, "user_demo").await?;
    assert!(matches!(session.state(), AuthState::Waiting { .. }));
    assert!(
        secrets.snapshot().contains_key(ATTEMPT_KEY),
        "the attempt survives a restart"
    );
    session.handle_link(&callback).await;

    let state = wait_for(&session, "signed in", |s| signed_in_name(s).is_some()).await?;
    let AuthState::SignedIn { user, notice } = state else {
        unreachable!()
    };
    assert_eq!(user.id, "user_demo");
    assert_eq!(user.name, "Ada Lovelace");
    assert_eq!(user.email.as_deref(), Some("ada@example.com"));
    assert!(
        user.avatar
            .as_deref()
            .is_some_and(|a| a.starts_with("data:image/svg+xml;base64,"))
    );
    assert_eq!(notice, None);

    let stored = secrets.snapshot();
    let refresh = stored
        .get(REFRESH_KEY)
        .expect("refresh token in the keyring");
    assert!(refresh.len() > 20);
    assert!(
        !stored.contains_key(ATTEMPT_KEY),
        "a finished attempt is forgotten"
    );

    // The proxy accepted the session's token: it created the profile from the
    // provider's userinfo, which another client of the same user now reads.
    let token = fx.provider.sign_in("user_demo").await?.access_token;
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + WAIT;
    let profile: serde_json::Value = loop {
        let response = client
            .get(format!("{}/api/user", fx.proxy_url))
            .bearer_auth(&token)
            .send()
            .await?;
        if response.status() == 200 {
            break response.json().await?;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no profile at the proxy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(profile["clerkId"], "user_demo");
    assert_eq!(profile["email"], "ada@example.com");

    // The user shown is cached for an offline start, without any token in it.
    let cached = std::fs::read_to_string(fx.dir.path().join("user.json"))?;
    assert!(cached.contains("Ada"), "{cached}");
    assert!(!cached.contains(refresh.as_str()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_signs_in_silently_and_a_revoked_session_signs_out_cleanly() -> anyhow::Result<()>
{
    let fx = Fixture::start("restart", &[], true)?;
    let secrets = MemoryStore::default();
    let first = fx.launch(&secrets).await;
    let callback = fx.browser_round_trip(&first, "user_second").await?;
    first.handle_link(&callback).await;
    wait_for(&first, "signed in", |s| {
        signed_in_name(s) == Some("Grace Hopper")
    })
    .await?;
    drop(first);

    // Restart: signed in at once from the cache, then a refresh proves the session.
    let second = fx.launch(&secrets).await;
    assert_eq!(signed_in_name(&second.state()), Some("Grace Hopper"));
    let token = second.access_token().await?;
    let response = reqwest::Client::new()
        .get(format!("{}/api/conversations", fx.proxy_url))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    drop(second);

    // Revoked elsewhere (an administrator, another device): the next start ends
    // the session with a message and forgets everything.
    let refresh = secrets
        .snapshot()
        .get(REFRESH_KEY)
        .cloned()
        .expect("refresh token");
    fx.provider.revoke(&refresh).await?;
    let third = fx.launch(&secrets).await;
    let state = wait_for(&third, "signed out", |s| {
        matches!(s, AuthState::SignedOut { .. })
    })
    .await?;
    let (level, message) = notice_of(&state).expect("a notice");
    assert_eq!(level, NoticeLevel::Warning);
    assert!(message.contains("session has ended"), "{message}");
    assert!(
        secrets.snapshot().is_empty(),
        "{:?}",
        secrets.snapshot().keys()
    );
    assert!(!fx.dir.path().join("user.json").exists());
    assert!(matches!(
        third.access_token().await,
        Err(confab_session::AuthError::SignedOut)
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_and_replayed_states_are_ignored() -> anyhow::Result<()> {
    let fx = Fixture::start("states", &[], false)?;
    let secrets = MemoryStore::default();
    let session = fx.launch(&secrets).await;
    let callback = fx.browser_round_trip(&session, "user_demo").await?;

    // A forged state changes nothing: the attempt is still pending.
    session
        .handle_link(&set_param(&callback, "state", "forged"))
        .await;
    assert!(matches!(
        session.state(),
        AuthState::Waiting { notice: None, .. }
    ));
    // Malformed callbacks and other links neither.
    for link in [
        "app.confab.desktop://oauth/callback",
        "app.confab.desktop://oauth/callback?state=a&state=b&code=c",
        "app.confab.desktop://elsewhere?code=x&state=y",
    ] {
        session.handle_link(&Url::parse(link)?).await;
        assert!(
            matches!(session.state(), AuthState::Waiting { .. }),
            "{link}"
        );
    }

    session.handle_link(&callback).await;
    wait_for(&session, "signed in", |s| signed_in_name(s).is_some()).await?;
    let before = session.access_token().await?;

    // The same callback again: ignored, the session is untouched.
    session.handle_link(&callback).await;
    assert_eq!(signed_in_name(&session.state()), Some("Ada Lovelace"));
    assert_eq!(session.access_token().await?, before);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_finishes_the_attempt_but_not_with_a_wrong_verifier() -> anyhow::Result<()> {
    let fx = Fixture::start("verifier", &[], false)?;
    let secrets = MemoryStore::default();

    // Cold start: the app that started the attempt is gone; the one the link
    // launches picks the attempt up from the keyring and finishes it.
    let first = fx.launch(&secrets).await;
    let callback = fx.browser_round_trip(&first, "user_demo").await?;
    drop(first);
    let second = fx.launch(&secrets).await;
    assert!(matches!(second.state(), AuthState::Waiting { .. }));
    second.handle_link(&callback).await;
    wait_for(&second, "signed in", |s| signed_in_name(s).is_some()).await?;
    second.sign_out(false, 0).await;

    // The same, with the stored PKCE verifier replaced: the provider refuses.
    let third = fx.launch(&secrets).await;
    let callback = fx.browser_round_trip(&third, "user_demo").await?;
    drop(third);
    edit_attempt(&secrets, "verifier", "x".repeat(64).into())?;
    let fourth = fx.launch(&secrets).await;
    fourth.handle_link(&callback).await;
    let state = fourth.state();
    let (level, message) = notice_of(&state).expect("a notice");
    assert!(matches!(state, AuthState::SignedOut { .. }), "{state:?}");
    assert_eq!(level, NoticeLevel::Error);
    assert!(message.contains("refused the code"), "{message}");
    assert!(!secrets.snapshot().contains_key(REFRESH_KEY));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_code_is_refused() -> anyhow::Result<()> {
    let fx = Fixture::start("reused", &[], false)?;
    let secrets = MemoryStore::default();
    let first = fx.launch(&secrets).await;
    let callback = fx.browser_round_trip(&first, "user_demo").await?;
    // Another copy of the app holding the same attempt (as after a crash).
    let copy = MemoryStore::default();
    copy.replace(secrets.snapshot());

    first.handle_link(&callback).await;
    wait_for(&first, "signed in", |s| signed_in_name(s).is_some()).await?;

    let other_dir = tempfile::tempdir()?;
    let second = Session::new(Ok(fx.config()), Vault::new(copy.clone()), other_dir.path());
    second.start().await;
    second.handle_link(&callback).await;
    let state = second.state();
    assert!(matches!(state, AuthState::SignedOut { .. }), "{state:?}");
    let (_, message) = notice_of(&state).expect("a notice");
    assert!(message.contains("already used"), "{message}");
    assert!(!copy.snapshot().contains_key(REFRESH_KEY));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_code_is_refused() -> anyhow::Result<()> {
    let fx = Fixture::start("expired", &[("OIDC_CODE_TTL", "1")], false)?;
    let secrets = MemoryStore::default();
    let session = fx.launch(&secrets).await;
    let callback = fx.browser_round_trip(&session, "user_demo").await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    session.handle_link(&callback).await;
    let state = session.state();
    assert!(matches!(state, AuthState::SignedOut { .. }), "{state:?}");
    let (level, message) = notice_of(&state).expect("a notice");
    assert_eq!(level, NoticeLevel::Error);
    assert!(message.contains("expired"), "{message}");
    // The user can start again at once.
    assert!(session.begin_sign_in().await.is_ok());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_at_the_provider_or_in_the_app_ends_the_attempt() -> anyhow::Result<()> {
    let fx = Fixture::start("denied", &[], false)?;
    let secrets = MemoryStore::default();
    let session = fx.launch(&secrets).await;

    let authorize = session.begin_sign_in().await?;
    let callback = Url::parse(&fx.provider.deny(authorize.as_str()).await?)?;
    assert!(
        callback
            .query()
            .unwrap_or("")
            .contains("error=access_denied"),
        "{callback}"
    );
    session.handle_link(&callback).await;
    let state = session.state();
    assert!(matches!(state, AuthState::SignedOut { .. }), "{state:?}");
    let (_, message) = notice_of(&state).expect("a notice");
    assert!(message.contains("cancelled in the browser"), "{message}");

    // Cancelled in the app, then the browser finishes anyway: the late
    // callback is refused with a way forward.
    let callback = fx.browser_round_trip(&session, "user_demo").await?;
    session.cancel_sign_in().await;
    assert_eq!(session.state(), AuthState::SignedOut { notice: None });
    assert!(!secrets.snapshot().contains_key(ATTEMPT_KEY));
    session.handle_link(&callback).await;
    let state = session.state();
    assert!(matches!(state, AuthState::SignedOut { .. }), "{state:?}");
    let (_, message) = notice_of(&state).expect("a notice");
    assert!(message.contains("no longer valid"), "{message}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_revokes_at_the_provider_and_forgets_everything() -> anyhow::Result<()> {
    let fx = Fixture::start("sign_out", &[], false)?;
    let secrets = MemoryStore::default();
    let session = fx.launch(&secrets).await;
    let callback = fx.browser_round_trip(&session, "user_demo").await?;
    session.handle_link(&callback).await;
    wait_for(&session, "signed in", |s| signed_in_name(s).is_some()).await?;
    let refresh = secrets.snapshot()[REFRESH_KEY].clone();

    // Unsynced writes: nothing happens until the user confirms.
    assert_eq!(
        session.sign_out(false, 3).await,
        SignOutOutcome::NeedsConfirmation { pending: 3 }
    );
    assert!(signed_in_name(&session.state()).is_some());

    assert_eq!(session.sign_out(true, 3).await, SignOutOutcome::SignedOut);
    assert_eq!(session.state(), AuthState::SignedOut { notice: None });
    assert!(secrets.snapshot().is_empty());
    assert!(!fx.dir.path().join("user.json").exists());
    assert!(matches!(
        session.access_token().await,
        Err(confab_session::AuthError::SignedOut)
    ));

    // The provider no longer honours the refresh token.
    let provider =
        confab_session::oidc::Provider::discover(&fx.config(), confab_session::oidc::http_client())
            .await?;
    let refused = provider.refresh(&refresh).await.map(|_| ());
    assert!(
        matches!(
            refused,
            Err(confab_session::oidc::OidcError::InvalidGrant(_))
        ),
        "{refused:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_keyring_sign_in_works_for_this_run_with_a_notice() -> anyhow::Result<()> {
    let fx = Fixture::start("no_keyring", &[], false)?;
    let session = Session::new(Ok(fx.config()), Vault::new(UnavailableStore), fx.dir.path());
    session.start().await;
    let (level, message) = notice_of(&session.state()).expect("a notice at start");
    assert_eq!(level, NoticeLevel::Warning);
    assert!(message.contains("keyring"), "{message}");

    let authorize = session.begin_sign_in().await?;
    let callback = Url::parse(
        &fx.provider
            .authorize(authorize.as_str(), "user_demo")
            .await?,
    )?;
    session.handle_link(&callback).await;
    let state = wait_for(&session, "signed in", |s| signed_in_name(s).is_some()).await?;
    let (level, message) = notice_of(&state).expect("a keyring notice");
    assert_eq!(level, NoticeLevel::Warning);
    assert!(message.contains("only until Confab closes"), "{message}");
    assert!(session.access_token().await.is_ok());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_provider_is_a_message_not_a_browser() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let env: HashMap<&str, &str> = HashMap::from([
        ("CONFAB_ISSUER", "http://127.0.0.1:9"),
        ("CONFAB_CLIENT_ID", "confab-desktop"),
        ("CONFAB_PROXY_URL", "http://127.0.0.1:9"),
    ]);
    let config = AuthConfig::load(dir.path(), &|n| env.get(n).map(|v| (*v).to_owned()))?;
    let session = Session::new(Ok(config), Vault::new(MemoryStore::default()), dir.path());
    session.start().await;
    let err = session.begin_sign_in().await.expect_err("no provider");
    assert!(
        matches!(err, confab_session::AuthError::Unreachable(_)),
        "{err:?}"
    );
    let (level, message) = notice_of(&session.state()).expect("a notice");
    assert_eq!(level, NoticeLevel::Error);
    assert!(
        message.contains("Can't reach the sign-in service"),
        "{message}"
    );
    Ok(())
}

/// Short-lived access tokens (2 s) and rotating refresh tokens: requests keep
/// flowing across many refreshes, concurrent callers share each refresh (a
/// rotated token used twice would make the provider revoke the session), and
/// the keyring always holds the live refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_survive_token_refreshes() -> anyhow::Result<()> {
    let fx = Fixture::start("refresh", &[("OIDC_ACCESS_TTL", "2")], true)?;
    let secrets = MemoryStore::default();
    let session = fx.launch(&secrets).await;
    let callback = fx.browser_round_trip(&session, "user_demo").await?;
    session.handle_link(&callback).await;
    wait_for(&session, "signed in", |s| signed_in_name(s).is_some()).await?;
    let first_refresh = secrets.snapshot()[REFRESH_KEY].clone();

    let list = format!("{}/api/conversations", fx.proxy_url);
    let mut tasks = Vec::new();
    for worker in 0..6u64 {
        let session = session.clone();
        let list = list.clone();
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for round in 0..10u64 {
                tokio::time::sleep(Duration::from_millis(150 + 37 * ((worker + round) % 5))).await;
                let response = session
                    .send(|http, token| http.get(&list).bearer_auth(token))
                    .await;
                statuses.push(
                    response
                        .map(|r| r.status().as_u16())
                        .map_err(|e| e.to_string()),
                );
            }
            statuses
        }));
    }
    for task in tasks {
        for status in task.await? {
            assert_eq!(status, Ok(200));
        }
    }
    assert!(
        signed_in_name(&session.state()).is_some(),
        "{:?}",
        session.state()
    );
    let live = secrets.snapshot()[REFRESH_KEY].clone();
    assert_ne!(live, first_refresh, "the refresh token rotated");

    // The keyring's token is the live one: a restart continues the session.
    drop(session);
    let restarted = fx.launch(&secrets).await;
    assert!(
        restarted.access_token().await.is_ok(),
        "{:?}",
        restarted.state()
    );
    Ok(())
}

/// Offline start: the provider cannot be reached, yet the user is shown as
/// signed in from the cache, with a notice, and nothing is forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_start_keeps_the_session() -> anyhow::Result<()> {
    let fx = Fixture::start("offline", &[], false)?;
    let secrets = MemoryStore::default();
    let first = fx.launch(&secrets).await;
    let callback = fx.browser_round_trip(&first, "user_demo").await?;
    first.handle_link(&callback).await;
    wait_for(&first, "signed in", |s| signed_in_name(s).is_some()).await?;
    drop(first);
    let config = fx.config();
    let Fixture { provider, dir, .. } = fx;
    drop(provider); // the provider is gone: the network is down

    let session = Session::new(Ok(config), Vault::new(secrets.clone()), dir.path());
    session.start().await;
    let state = session.state();
    assert_eq!(signed_in_name(&state), Some("Ada Lovelace"), "{state:?}");
    let (level, message) = notice_of(&state).expect("an offline notice");
    assert_eq!(level, NoticeLevel::Info);
    assert!(message.contains("offline"), "{message}");
    assert!(
        secrets.snapshot().contains_key(REFRESH_KEY),
        "nothing forgotten"
    );
    assert!(matches!(
        session.access_token().await,
        Err(confab_session::AuthError::Unreachable(_))
    ));
    Ok(())
}

/// A nonce other than the attempt's (an ID token minted for another request)
/// fails validation: the sign-in is refused, nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_for_another_nonce_is_refused() -> anyhow::Result<()> {
    let fx = Fixture::start("nonce", &[], false)?;
    let secrets = MemoryStore::default();
    let first = fx.launch(&secrets).await;
    let callback = fx.browser_round_trip(&first, "user_demo").await?;
    drop(first);
    edit_attempt(&secrets, "nonce", "another-nonce".into())?;

    let session = fx.launch(&secrets).await;
    session.handle_link(&callback).await;
    let state = session.state();
    assert!(matches!(state, AuthState::SignedOut { .. }), "{state:?}");
    let (level, message) = notice_of(&state).expect("a notice");
    assert_eq!(level, NoticeLevel::Error);
    assert!(message.contains("failed verification"), "{message}");
    assert!(!secrets.snapshot().contains_key(REFRESH_KEY));
    assert!(!fx.dir.path().join("user.json").exists());
    Ok(())
}

/// An attempt left in the keyring expires by itself (the user never came
/// back), and one found already expired at start is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_attempts_expire() -> anyhow::Result<()> {
    let fx = Fixture::start("attempt_expiry", &[], false)?;
    let secrets = MemoryStore::default();
    let first = fx.launch(&secrets).await;
    let callback = fx.browser_round_trip(&first, "user_demo").await?;
    drop(first);
    let set_expiry = |seconds: i64| {
        let at = chrono::Utc::now() + chrono::Duration::seconds(seconds);
        edit_attempt(&secrets, "expires_at", at.to_rfc3339().into())
    };

    set_expiry(1)?;
    let session = fx.launch(&secrets).await;
    assert!(matches!(session.state(), AuthState::Waiting { .. }));
    let state = wait_for(&session, "expired", |s| {
        matches!(s, AuthState::SignedOut { .. })
    })
    .await?;
    let (_, message) = notice_of(&state).expect("a notice");
    assert!(message.contains("expired"), "{message}");
    assert!(!secrets.snapshot().contains_key(ATTEMPT_KEY));
    // Its callback, arriving late, signs nobody in.
    session.handle_link(&callback).await;
    assert!(matches!(session.state(), AuthState::SignedOut { .. }));
    drop(session);

    let session = fx.launch(&secrets).await;
    let callback = fx.browser_round_trip(&session, "user_demo").await?;
    drop(session);
    set_expiry(-5)?;
    let session = fx.launch(&secrets).await;
    assert_eq!(session.state(), AuthState::SignedOut { notice: None });
    assert!(!secrets.snapshot().contains_key(ATTEMPT_KEY));
    session.handle_link(&callback).await;
    assert!(matches!(session.state(), AuthState::SignedOut { .. }));
    assert!(!secrets.snapshot().contains_key(REFRESH_KEY));
    Ok(())
}

/// Offline at start (provider and proxy both down), then both come back: the
/// session retries by itself, without any request or click, and is still
/// signed in: the provider kept its grants across the restart, as Clerk does,
/// and the proxy takes the refreshed token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_start_recovers_when_the_provider_and_proxy_return() -> anyhow::Result<()> {
    let artifacts = paths::artifacts_dir("sign_in_flow/reconnect")?;
    let state = tempfile::tempdir()?;
    let provider = Provider::persistent(&artifacts, state.path(), 0, &[])?;
    let port = provider.port()?;
    let store = format!("--store=sqlite:{}", state.path().join("proxy.db").display());
    let proxy = Proxy::start(&provider.issuer, &artifacts, &store, &[])?;
    let listen = proxy.base.trim_start_matches("http://").to_owned();
    let fx = Fixture {
        provider,
        proxy_url: proxy.base.clone(),
        _proxy: Some(proxy),
        dir: tempfile::tempdir()?,
    };
    let secrets = MemoryStore::default();
    let first = fx.launch(&secrets).await;
    let callback = fx.browser_round_trip(&first, "user_demo").await?;
    first.handle_link(&callback).await;
    wait_for(&first, "signed in", |s| signed_in_name(s).is_some()).await?;
    drop(first);
    let config = fx.config();
    let issuer = fx.provider.issuer.clone();
    let Fixture {
        provider,
        dir,
        _proxy,
        ..
    } = fx;
    drop(provider);
    drop(_proxy);

    let session = Session::new(Ok(config), Vault::new(secrets.clone()), dir.path());
    session.start().await;
    let offline = session.state();
    assert_eq!(
        signed_in_name(&offline),
        Some("Ada Lovelace"),
        "{offline:?}"
    );
    assert!(notice_of(&offline).is_some_and(|(_, m)| m.contains("offline")));

    let again = paths::artifacts_dir("sign_in_flow/reconnect_again")?;
    let _provider = Provider::persistent(&again, state.path(), port, &[])?;
    let _proxy = Proxy::start_at(&issuer, &again, &store, &listen, &[])?;
    wait_for(&session, "signed in again, without a notice", |s| {
        signed_in_name(s).is_some() && notice_of(s).is_none()
    })
    .await?;
    assert!(secrets.snapshot().contains_key(REFRESH_KEY));
    let url = session
        .config()
        .map(|c| c.proxy_endpoint("api/conversations"))
        .ok_or_else(|| anyhow::anyhow!("configured"))?;
    let answer = session
        .send(|http, token| http.get(url.clone()).bearer_auth(token))
        .await?;
    assert_eq!(answer.status(), 200);
    Ok(())
}
