//! Tauri commands: argument mapping only, no logic (see ARCHITECTURE.md).
//!
//! Each function's name is the `NAME` of its [`confab_wire::ipc::Command`], and
//! its signature matches that command's `Args` and `Output`. Errors cross IPC as
//! [`ErrorBody`].

use confab_wire::{ErrorBody, app::AppInfo};

use crate::build_info;

#[tauri::command]
pub fn app_info() -> Result<AppInfo, ErrorBody> {
    Ok(build_info::current())
}

#[cfg(test)]
mod tests {
    use confab_wire::ipc::{Command, GetAppInfo};
    use tauri::ipc::{CallbackFn, InvokeBody};
    use tauri::test::{INVOKE_KEY, get_ipc_response, mock_builder, mock_context, noop_assets};
    use tauri::webview::InvokeRequest;

    fn invoke(cmd: &str) -> Result<serde_json::Value, serde_json::Value> {
        let app = crate::with_commands(mock_builder())
            .build(mock_context(noop_assets()))
            .expect("mock app builds");
        let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
            .build()
            .expect("mock window builds");
        get_ipc_response(
            &webview,
            InvokeRequest {
                cmd: cmd.into(),
                callback: CallbackFn(0),
                error: CallbackFn(1),
                url: "tauri://localhost".parse().expect("static url"),
                body: InvokeBody::Json(serde_json::json!({})),
                headers: Default::default(),
                invoke_key: INVOKE_KEY.to_string(),
            },
        )
        .map(|body| body.deserialize::<serde_json::Value>().expect("json body"))
    }

    #[test]
    fn app_info_answers_the_contract_type() {
        let value = invoke(GetAppInfo::NAME).expect("app_info succeeds");
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
        let err = invoke("definitely_not_a_command").expect_err("must fail");
        assert!(err.to_string().contains("not found"), "{err}");
    }
}
