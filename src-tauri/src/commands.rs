//! Tauri commands: thin adapters from IPC to the session, the library and the
//! updater. What they add is input capping, link filtering and file export;
//! the behaviour lives in the crates under `desktop/` (see ARCHITECTURE.md).
//!
//! Each function's name is the `NAME` of its [`confab_wire::ipc::Command`], and
//! its signature matches that command's `Args` and `Output`. Errors cross IPC as
//! [`ErrorBody`].

pub mod assistant;
pub mod conversations;
pub mod updates;

use std::sync::Arc;

use confab_session::Session;
use confab_wire::auth::{AuthState, SignOutArgs, SignOutOutcome};
use confab_wire::{ErrorBody, ErrorCode, app::AppInfo};
use tauri::State;

use crate::build_info;
use crate::session::Browser;
use confab_library::Library;

#[tauri::command]
pub fn app_info<R: tauri::Runtime>(app: tauri::AppHandle<R>) -> Result<AppInfo, ErrorBody> {
    Ok(build_info::current(&app.package_info().version.to_string()))
}

#[tauri::command]
pub fn auth_state(session: State<'_, Session>) -> Result<AuthState, ErrorBody> {
    Ok(session.state())
}

/// Starts an attempt and opens the system browser at the provider; while an
/// attempt is pending, opens its URL again instead.
#[tauri::command]
pub async fn sign_in(
    session: State<'_, Session>,
    browser: State<'_, Browser>,
) -> Result<AuthState, ErrorBody> {
    let url = match (session.state(), session.pending_url()) {
        (AuthState::Waiting { .. }, Some(url)) => url,
        _ => session.begin_sign_in().await?.to_string(),
    };
    if let Err(err) = browser.open(url).await {
        // The attempt stays: the link works from any browser the user
        // pastes it into. The launcher's words are for the log only.
        log::warn!("the browser could not be opened: {err}");
        return Err(ErrorBody::new(
            ErrorCode::BrowserUnavailable,
            "Your browser could not be opened. Copy the sign-in link into any browser to continue.",
        ));
    }
    Ok(session.state())
}

#[tauri::command]
pub fn sign_in_link(session: State<'_, Session>) -> Option<String> {
    match session.state() {
        AuthState::Waiting { .. } => session.pending_url(),
        _ => None,
    }
}

#[tauri::command]
pub async fn cancel_sign_in(session: State<'_, Session>) -> Result<AuthState, ErrorBody> {
    session.cancel_sign_in().await;
    Ok(session.state())
}

/// Asks first when writes are not synced; an explicit sign-out also removes
/// the user's cache from this computer.
#[tauri::command]
pub async fn sign_out(
    session: State<'_, Session>,
    library: State<'_, Arc<Library>>,
    args: SignOutArgs,
) -> Result<SignOutOutcome, ErrorBody> {
    let user = match session.state() {
        AuthState::SignedIn { user, .. } => Some(user.id),
        _ => None,
    };
    let outcome = session
        .sign_out(args.discard_pending, library.unsynced())
        .await;
    if let (SignOutOutcome::SignedOut, Some(user)) = (&outcome, user) {
        library.forget_user(&user);
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use confab_session::{AuthConfig, MemoryStore, Vault};
    use confab_wire::auth::SignOutOutcome;
    use confab_wire::ipc::{
        AppendMessage, CancelSignIn, Command, CreateConversation, ExportConversation, GetAppInfo,
        GetAuthState, GetSyncStatus, ListConversations, OpenLink, SearchConversations, SignIn,
        SignOut,
    };
    use confab_wire::library::{ListItem, ListPage, SearchHit};
    use tauri::Manager;
    use tauri::ipc::{CallbackFn, InvokeBody};
    use tauri::test::{INVOKE_KEY, get_ipc_response, mock_builder, mock_context, noop_assets};
    use tauri::webview::InvokeRequest;

    use super::*;

    struct Mock {
        app: tauri::App<tauri::test::MockRuntime>,
        webview: tauri::WebviewWindow<tauri::test::MockRuntime>,
        opened: Arc<Mutex<Vec<String>>>,
        dir: tempfile::TempDir,
    }

    fn mock(config: Option<AuthConfig>) -> Mock {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config.ok_or_else(|| {
            AuthConfig::load(dir.path(), &|_| None).expect_err("nothing configured")
        });
        let opened = Arc::new(Mutex::new(Vec::new()));
        let recorder = opened.clone();
        let app = crate::with_commands(mock_builder())
            .build(mock_context(noop_assets()))
            .expect("mock app builds");
        app.manage(Session::new(
            config,
            Vault::new(MemoryStore::default()),
            dir.path(),
        ));
        app.manage(Arc::new(Library::new(dir.path().join("cache"))));
        app.manage(std::sync::Arc::new(confab_updates::Updates::<
            crate::updates::PluginSource,
        >::new(
            Err("Updates are off: this build has no update signing key.".into()),
            "0.1.0",
            confab_updates::Memory::load(&dir.path().join("updates.json")),
        )));
        app.manage(Browser(Arc::new(move |url| {
            recorder.lock().expect("lock").push(url.to_owned());
            Ok(())
        })));
        let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
            .build()
            .expect("mock window builds");
        Mock {
            app,
            webview,
            opened,
            dir,
        }
    }

    fn invoke(
        mock: &Mock,
        cmd: &str,
        args: serde_json::Value,
    ) -> Result<serde_json::Value, serde_json::Value> {
        get_ipc_response(
            &mock.webview,
            InvokeRequest {
                cmd: cmd.into(),
                callback: CallbackFn(0),
                error: CallbackFn(1),
                url: "tauri://localhost".parse().expect("static url"),
                body: InvokeBody::Json(args),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        )
        .map(|body| body.deserialize::<serde_json::Value>().expect("json body"))
    }

    #[test]
    fn app_info_answers_the_contract_type() {
        let mock = mock(None);
        let value =
            invoke(&mock, GetAppInfo::NAME, serde_json::json!({})).expect("app_info succeeds");
        let info: <GetAppInfo as Command>::Output =
            serde_json::from_value(value.clone()).expect("answer matches AppInfo");
        assert_eq!(info.name, "Confab");
        assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(info.os, std::env::consts::OS);
        assert!(!info.commit.is_empty());
        // camelCase on the wire, as the UI expects.
        assert!(value.get("tauriVersion").is_some(), "{value}");
    }

    #[test]
    fn unknown_commands_are_refused() {
        let mock = mock(None);
        let err = invoke(&mock, "definitely_not_a_command", serde_json::json!({}))
            .expect_err("must fail");
        assert!(err.to_string().contains("not found"), "{err}");
    }

    /// The command list exists once (`wire::ipc::COMMANDS`): every command
    /// on it is registered and granted by name, and nothing else is registered
    /// or granted.
    #[test]
    fn every_command_is_registered_and_granted_and_nothing_else() {
        let mock = mock(None);
        for name in confab_wire::ipc::COMMANDS {
            // `sign_in` would open the (recording) browser: any answer but
            // "not found" proves the handler is there.
            let answer = invoke(&mock, name, serde_json::json!({"args": {"probe": true}}));
            if let Err(err) = answer {
                assert!(
                    !err.to_string().contains("not found"),
                    "{name} is not registered: {err}"
                );
            }
        }
        let capability: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("capabilities/default.json"),
            )
            .expect("the capability file"),
        )
        .expect("JSON");
        let granted: std::collections::BTreeSet<String> = capability["permissions"]
            .as_array()
            .expect("a permission list")
            .iter()
            .filter_map(|p| p.as_str())
            .filter(|p| !p.starts_with("core:"))
            .map(str::to_owned)
            .collect();
        let listed: std::collections::BTreeSet<String> = confab_wire::ipc::COMMANDS
            .iter()
            .map(|c| format!("allow-{}", c.replace('_', "-")))
            .collect();
        assert_eq!(granted, listed);

        // And no handler is registered that the list lacks: the macro's
        // entries, read from the source, are exactly the list.
        let source = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs"),
        )
        .expect("lib.rs");
        let (_, after) = source
            .split_once("generate_handler![")
            .expect("one handler list");
        let (entries, _) = after.split_once(']').expect("the list ends");
        let registered: Vec<&str> = entries
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| e.rsplit("::").next().unwrap_or(e))
            .collect();
        let mut sorted = registered.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), registered.len(), "a handler twice");
        let mut commands = confab_wire::ipc::COMMANDS.to_vec();
        commands.sort_unstable();
        assert_eq!(sorted, commands);
    }

    #[test]
    fn an_unconfigured_app_says_what_to_set_and_opens_nothing() {
        let mock = mock(None);
        let state: <GetAuthState as Command>::Output = serde_json::from_value(
            invoke(&mock, GetAuthState::NAME, serde_json::json!({})).expect("auth_state"),
        )
        .expect("an AuthState");
        let AuthState::NotConfigured { message } = state else {
            panic!("expected notConfigured, got {state:?}");
        };
        assert!(message.contains("CONFAB_ISSUER"), "{message}");

        let err = invoke(&mock, SignIn::NAME, serde_json::json!({})).expect_err("sign_in fails");
        let err: ErrorBody = serde_json::from_value(err).expect("an ErrorBody");
        assert_eq!(err.code, ErrorCode::InvalidInput);
        assert!(mock.opened.lock().expect("lock").is_empty());
    }

    #[test]
    fn an_unreachable_provider_is_an_error_and_a_notice_not_a_browser() {
        // Port 9 (discard) on loopback: nothing listens, the connection is refused.
        let config = AuthConfig::load(std::path::Path::new("/nonexistent"), &|name| match name {
            "CONFAB_ISSUER" => Some("http://127.0.0.1:9".into()),
            "CONFAB_CLIENT_ID" => Some("confab-desktop".into()),
            "CONFAB_PROXY_URL" => Some("http://127.0.0.1:9".into()),
            _ => None,
        })
        .expect("valid config");
        let mock = mock(Some(config));
        let err = invoke(&mock, SignIn::NAME, serde_json::json!({})).expect_err("sign_in fails");
        let err: ErrorBody = serde_json::from_value(err).expect("an ErrorBody");
        assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
        let state: AuthState = serde_json::from_value(
            invoke(&mock, GetAuthState::NAME, serde_json::json!({})).expect("auth_state"),
        )
        .expect("an AuthState");
        let AuthState::SignedOut {
            notice: Some(notice),
        } = state
        else {
            panic!("expected signedOut with a notice, got {state:?}");
        };
        assert!(
            notice.message.contains("Can't reach the sign-in service"),
            "{notice:?}"
        );
        assert!(mock.opened.lock().expect("lock").is_empty());
        // Cancelling afterwards is harmless.
        let state: AuthState = serde_json::from_value(
            invoke(&mock, CancelSignIn::NAME, serde_json::json!({})).expect("cancel"),
        )
        .expect("an AuthState");
        assert_eq!(state, AuthState::SignedOut { notice: None });
    }

    #[test]
    fn conversation_commands_need_a_signed_in_user() {
        let mock = mock(None);
        for (cmd, args) in [
            (
                ListConversations::NAME,
                serde_json::json!({"args": {"limit": 50}}),
            ),
            (
                CreateConversation::NAME,
                serde_json::json!({"args": {"title": "x"}}),
            ),
            (
                AppendMessage::NAME,
                serde_json::json!({"args": {"conversationId": "01JD0000000000000000000001", "content": "hi"}}),
            ),
            (
                SearchConversations::NAME,
                serde_json::json!({"args": {"query": "x"}}),
            ),
            (GetSyncStatus::NAME, serde_json::json!({"args": {}})),
        ] {
            let err: ErrorBody =
                serde_json::from_value(invoke(&mock, cmd, args).expect_err("refused"))
                    .expect("an ErrorBody");
            assert_eq!(err.code, ErrorCode::Unauthenticated, "{cmd}");
            assert!(err.message.contains("Sign in"), "{cmd}: {err:?}");
        }
    }

    /// The conversation commands on a real cache (not synced), and export
    /// through a stand-in for the save dialog.
    #[test]
    fn conversations_round_trip_through_the_commands_and_export() {
        let mock = mock(None);
        let saved = mock.dir.path().join("export.md");
        let answer = Arc::new(Mutex::new(Some(saved.clone())));
        let chosen = answer.clone();
        mock.app
            .manage(crate::session::SaveDialog(Box::new(move |_name| {
                let path = chosen.lock().expect("lock").clone();
                Box::pin(async move { path })
            })));
        let session = mock.app.state::<Session>().inner().clone();
        mock.app
            .state::<Arc<Library>>()
            .open_offline("user_demo", &session)
            .expect("cache opens");

        // Signed in: malformed arguments are refused by their shape, before
        // anything runs (not for want of a user), and the same call well
        // formed answers.
        for (cmd, bad) in [
            (
                ListConversations::NAME,
                serde_json::json!({"args": {"limit": 50, "userId": "someone"}}),
            ),
            (
                ListConversations::NAME,
                serde_json::json!({"args": {"limit": -1}}),
            ),
            (ListConversations::NAME, serde_json::json!({})),
            (
                confab_wire::ipc::AskReply::NAME,
                serde_json::json!({"args": {"conversationId": "x", "after": "y", "stream": true}}),
            ),
            (
                confab_wire::ipc::StopReply::NAME,
                serde_json::json!({"args": {"conversationId": "x"}}),
            ),
        ] {
            let err = invoke(&mock, cmd, bad.clone()).expect_err("refused");
            let as_body = serde_json::from_value::<ErrorBody>(err.clone());
            assert!(
                as_body.is_err() || as_body.is_ok_and(|b| b.code != ErrorCode::Unauthenticated),
                "{cmd} {bad}: refused for another reason: {err}"
            );
            assert!(
                err.to_string().contains("args") || err.to_string().contains("invalid"),
                "{cmd} {bad}: {err}"
            );
        }
        let listed: ListPage = serde_json::from_value(
            invoke(
                &mock,
                ListConversations::NAME,
                serde_json::json!({"args": {"limit": 50}}),
            )
            .expect("well formed, it answers"),
        )
        .expect("a ListPage");
        assert!(listed.items.is_empty());

        let created: ListItem = serde_json::from_value(
            invoke(
                &mock,
                CreateConversation::NAME,
                serde_json::json!({"args": {"title": "Plans"}}),
            )
            .expect("created"),
        )
        .expect("a ListItem");
        let id = created.conversation.id.clone();
        for text in ["first **bold**", "second"] {
            invoke(
                &mock,
                AppendMessage::NAME,
                serde_json::json!({"args": {"conversationId": id, "content": text}}),
            )
            .expect("appended");
        }
        let page: ListPage = serde_json::from_value(
            invoke(
                &mock,
                ListConversations::NAME,
                serde_json::json!({"args": {"limit": 10}}),
            )
            .expect("listed"),
        )
        .expect("a ListPage");
        assert_eq!(page.total, 1);
        assert_eq!(page.items[0].pending, 3);
        let hits: Vec<SearchHit> = serde_json::from_value(
            invoke(
                &mock,
                SearchConversations::NAME,
                serde_json::json!({"args": {"query": "seco"}}),
            )
            .expect("searched"),
        )
        .expect("hits");
        assert_eq!(hits.len(), 1);
        let err = invoke(
            &mock,
            AppendMessage::NAME,
            serde_json::json!({"args": {"conversationId": id, "content": "  "}}),
        )
        .expect_err("empty refused");
        assert!(err.to_string().contains("content"), "{err}");

        let path: Option<String> = serde_json::from_value(
            invoke(
                &mock,
                ExportConversation::NAME,
                serde_json::json!({"args": {"id": id, "format": "markdown"}}),
            )
            .expect("exported"),
        )
        .expect("a path");
        assert_eq!(path.as_deref(), Some(saved.to_string_lossy().as_ref()));
        let text = std::fs::read_to_string(&saved).expect("file written");
        assert!(text.starts_with("# Plans\n"), "{text}");
        assert!(
            text.contains("first **bold**") && text.contains("second"),
            "{text}"
        );

        // Cancelled in the dialog: nothing written, no error.
        *answer.lock().expect("lock") = None;
        std::fs::remove_file(&saved).expect("removed");
        let cancelled = invoke(
            &mock,
            ExportConversation::NAME,
            serde_json::json!({"args": {"id": id, "format": "json"}}),
        )
        .expect("no error");
        assert_eq!(cancelled, serde_json::Value::Null);
        assert!(!saved.exists());
    }

    #[test]
    fn only_web_and_mail_links_leave_the_app() {
        let mock = mock(None);
        for bad in [
            "javascript:alert(1)",
            "file:///etc/passwd",
            "data:text/html,<script>",
            "app.confab.desktop://oauth/callback?code=x&state=y",
            "not a url",
        ] {
            let err = invoke(
                &mock,
                OpenLink::NAME,
                serde_json::json!({"args": {"url": bad}}),
            )
            .expect_err("refused");
            assert!(err.to_string().contains("url"), "{bad}: {err}");
        }
        for good in [
            "https://example.com/a?b=c",
            "mailto:ada@example.com",
            "mailto:eve@example.com?attach=/home/ada/.ssh/id_ed25519&body=hi#x",
        ] {
            invoke(
                &mock,
                OpenLink::NAME,
                serde_json::json!({"args": {"url": good}}),
            )
            .expect("opened");
        }
        assert_eq!(
            *mock.opened.lock().expect("lock"),
            vec![
                "https://example.com/a?b=c",
                "mailto:ada@example.com",
                "mailto:eve@example.com"
            ]
        );
    }

    #[test]
    fn sign_out_takes_only_its_documented_argument() {
        let mock = mock(None);
        let out: SignOutOutcome = serde_json::from_value(
            invoke(
                &mock,
                SignOut::NAME,
                serde_json::json!({"args": {"discardPending": true}}),
            )
            .expect("sign_out"),
        )
        .expect("an outcome");
        assert_eq!(out, SignOutOutcome::SignedOut);
        for bad in [
            serde_json::json!({"args": {"discardPending": "yes"}}),
            serde_json::json!({"args": {"discard": true}}),
            serde_json::json!({}),
        ] {
            let err = invoke(&mock, SignOut::NAME, bad.clone()).expect_err("refused");
            assert!(err.to_string().contains("args"), "{bad}: {err}");
        }
    }

    #[test]
    fn an_app_without_a_signing_key_says_updates_are_off_and_installs_nothing() {
        use confab_wire::ipc::{CheckForUpdates, GetUpdateState, InstallUpdate};
        use confab_wire::updates::UpdateState;
        let mock = mock(None);
        for name in [GetUpdateState::NAME, CheckForUpdates::NAME] {
            let state: UpdateState =
                serde_json::from_value(invoke(&mock, name, serde_json::json!({})).expect(name))
                    .expect("an UpdateState");
            let UpdateState::Disabled { reason, current } = state else {
                panic!("{name}: expected disabled, got {state:?}");
            };
            assert!(reason.contains("signing key"), "{reason}");
            assert_eq!(current, "0.1.0");
        }
        let err: ErrorBody = serde_json::from_value(
            invoke(&mock, InstallUpdate::NAME, serde_json::json!({})).expect_err("refused"),
        )
        .expect("an ErrorBody");
        assert_eq!(err.code, ErrorCode::Unavailable);
    }
}
