//! The HTTP API through the router (`oneshot`), over a real SQLite store.

use std::sync::Arc;

use crate::support::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn jwt_attacks_are_refused_without_touching_the_store() {
    let api = Api::new();
    let good = claims("user_ada");
    let mut attacks: Vec<(&str, Option<String>)> = vec![("no token", None)];

    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good)
    );
    attacks.push(("alg none", Some(none)));

    let hs256 = {
        let key = jsonwebtoken::EncodingKey::from_secret(SIGNING_PUB_PEM.as_bytes());
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(KID.into());
        jsonwebtoken::encode(&header, &good, &key).unwrap()
    };
    attacks.push(("HS256 signed with the public key", Some(hs256)));

    let mut c = good.clone();
    c["iss"] = json!("https://evil.example.com");
    attacks.push(("wrong issuer", Some(sign(&c))));

    let mut c = good.clone();
    c["exp"] = json!(now() - 60);
    c["iat"] = json!(now() - 400);
    attacks.push(("expired", Some(sign(&c))));

    let mut c = good.clone();
    c["nbf"] = json!(now() + 60);
    attacks.push(("not yet valid", Some(sign(&c))));

    attacks.push((
        "unknown key",
        Some(sign_with(&good, OTHER_PEM, "test-key-other")),
    ));
    attacks.push((
        "another key under our kid",
        Some(sign_with(&good, OTHER_PEM, KID)),
    ));

    let tampered = {
        let token = sign(&good);
        let parts: Vec<&str> = token.split('.').collect();
        let mut c = good.clone();
        c["sub"] = json!("user_bob");
        format!("{}.{}.{}", parts[0], b64(&c), parts[2])
    };
    attacks.push(("tampered payload", Some(tampered)));

    let mut c = good.clone();
    c["client_id"] = json!("someone-else");
    attacks.push(("wrong client_id", Some(sign(&c))));

    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("client_id");
    c["azp"] = json!("https://evil.example.com");
    attacks.push(("wrong azp", Some(sign(&c))));

    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("client_id");
    attacks.push(("neither client_id nor azp", Some(sign(&c))));

    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("sub");
    attacks.push(("missing sub", Some(sign(&c))));

    let mut c = good.clone();
    c["sub"] = json!("USER#other");
    attacks.push(("sub that is not a user id", Some(sign(&c))));

    attacks.push(("garbage", Some("not.a.jwt".into())));

    for (name, token) in &attacks {
        for (method, path) in [
            ("GET", "/api/conversations"),
            ("GET", "/api/user"),
            ("GET", "/api/changes"),
        ] {
            let reply = api.call(method, path, token.as_deref(), None).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name} on {path}");
            assert_eq!(reply.code(), "unauthenticated", "{name}");
            assert_eq!(
                reply.headers["www-authenticate"], r#"Bearer error="invalid_token""#,
                "{name}"
            );
        }
    }
    assert_eq!(api.store_calls(), 0, "a refused request reached the store");

    // The control: the same claims, properly signed, are accepted; so is a web
    // session token with an allowed azp, and a token inside the 5 s leeway.
    let ok = api
        .call("GET", "/api/conversations", Some(&sign(&good)), None)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let mut web = good.clone();
    web.as_object_mut().unwrap().remove("client_id");
    web["azp"] = json!(WEB_PARTY);
    let ok = api
        .call("GET", "/api/conversations", Some(&sign(&web)), None)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let mut late = good.clone();
    late["exp"] = json!(now() - 2);
    let ok = api
        .call("GET", "/api/conversations", Some(&sign(&late)), None)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

/// A's conversation, B's token: every route answers 404 and A's data is unchanged.
#[tokio::test]
async fn cross_user_matrix() {
    let api = Api::new();
    let ada = token_for("user_ada");
    let bob = token_for("user_bob");
    let created = api
        .call(
            "POST",
            "/api/conversations",
            Some(&ada),
            Some(json!({"title": "Ada's", "messages": [{"role": "user", "content": "secret"}]})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.json["id"].as_str().unwrap().to_owned();
    let before = api
        .call("GET", &format!("/api/conversations/{id}"), Some(&ada), None)
        .await
        .json;

    let attempts: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/api/conversations/{id}"), None),
        (
            "PUT",
            format!("/api/conversations/{id}"),
            Some(json!({"title": "Bob's now"})),
        ),
        (
            "PUT",
            "/api/conversations".into(),
            Some(json!({"id": id, "title": "Bob's now"})),
        ),
        ("DELETE", format!("/api/conversations/{id}"), None),
        ("DELETE", format!("/api/conversations?id={id}"), None),
        ("POST", format!("/api/conversations/{id}/restore"), None),
        (
            "POST",
            format!("/api/conversations/{id}/messages"),
            Some(json!({"role": "user", "content": "intrusion"})),
        ),
    ];
    for (method, path, body) in attempts {
        let reply = api.call(method, &path, Some(&bob), body).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(reply.code(), "not_found", "{method} {path}");
    }
    let list = api
        .call("GET", "/api/conversations", Some(&bob), None)
        .await;
    assert_eq!(list.json["items"], json!([]));
    let changes = api.call("GET", "/api/changes", Some(&bob), None).await;
    assert_eq!(changes.json["items"], json!([]));

    let after = api
        .call("GET", &format!("/api/conversations/{id}"), Some(&ada), None)
        .await
        .json;
    assert_eq!(after, before);
}

#[tokio::test]
async fn hostile_input_never_yields_a_500() {
    let api = Api::new();
    let ada = token_for("user_ada");
    let long_id = "A".repeat(10 * 1024);
    for raw in [
        "%23",
        "a%2Fb",
        "..",
        "%2E%2E",
        "%C3%BCn%C3%AFc%C3%B6de",
        "01J0000000000000000000000%23",
        long_id.as_str(),
        "%FF%FE",
    ] {
        for (method, suffix) in [("GET", ""), ("DELETE", ""), ("POST", "/restore")] {
            let reply = api
                .call(
                    method,
                    &format!("/api/conversations/{raw}{suffix}"),
                    Some(&ada),
                    None,
                )
                .await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {raw}");
        }
    }

    let cases: Vec<(&str, &str, String, StatusCode, &str)> = vec![
        (
            "POST",
            "/api/conversations",
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "POST",
            "/api/conversations",
            r#"{"title": 42}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "POST",
            "/api/conversations",
            r#"{"title": "x", "userId": "user_bob"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "POST",
            "/api/conversations",
            r#"{"id": "x#y"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "POST",
            "/api/conversations",
            format!(r#"{{"id": "{long_id}"}}"#),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "POST",
            "/api/conversations",
            r#"{"title": ""}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "POST",
            "/api/conversations",
            r#"{"title": "   "}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "POST",
            "/api/conversations",
            format!(r#"{{"title": "{}"}}"#, "t".repeat(501)),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "POST",
            "/api/conversations",
            r#"{"messages": [{"role": "admin", "content": "x"}]}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "POST",
            "/api/conversations",
            format!(
                r#"{{"messages": [{{"role": "user", "content": "{}"}}]}}"#,
                "m".repeat(300 * 1024)
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            "POST",
            "/api/conversations",
            format!(r#"{{"title": "{}"}}"#, "b".repeat(3 * 1024 * 1024)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            "POST",
            "/api/conversations",
            "[]".into(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "POST",
            "/api/conversations",
            "null".into(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "GET",
            "/api/conversations?limit=0",
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "GET",
            "/api/conversations?limit=abc",
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "GET",
            "/api/conversations?cursor=%00%01",
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "GET",
            "/api/changes?since=-1",
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "GET",
            "/api/changes?since=99999999999999999999999",
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "PUT",
            "/api/conversations",
            r#"{"title": "no id"}"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            "DELETE",
            "/api/conversations",
            String::new(),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {ada}"));
        if !body.is_empty() {
            request = request.header("content-type", "application/json");
        }
        let reply = api
            .send(request.body(Body::from(body.clone())).unwrap())
            .await;
        let shown: String = body.chars().take(60).collect();
        assert_eq!(
            reply.status, status,
            "{method} {path} {shown}: {:?}",
            reply.json
        );
        assert_eq!(reply.code(), code, "{method} {path} {shown}");
        assert!(
            reply.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{method} {path}: no message"
        );
    }

    // A body without the JSON content type is refused clearly, not parsed.
    let reply = api
        .send(
            Request::post("/api/conversations")
                .header("authorization", format!("Bearer {ada}"))
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);

    // Nothing above created anything.
    let list = api
        .call("GET", "/api/conversations", Some(&ada), None)
        .await;
    assert_eq!(list.json["items"], json!([]));
}

#[tokio::test]
async fn conversation_lifecycle_over_http() {
    let api = Api::new();
    let ada = token_for("user_ada");
    let id = "01JDQ3ZJ6Y8W5X9V4T3S2R1Q0P";

    let first = api
        .call(
            "POST",
            "/api/conversations",
            Some(&ada),
            Some(json!({"id": id, "title": "Trip"})),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.json["id"], id);
    assert_eq!(first.json["version"], 1);
    assert_eq!(first.json["messages"], json!([]));
    assert_eq!(first.headers["etag"], "\"1\"");
    let replay = api
        .call(
            "POST",
            "/api/conversations",
            Some(&ada),
            Some(json!({"id": id, "title": "Trip"})),
        )
        .await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.json, first.json);

    let appended = api
        .call(
            "POST",
            &format!("/api/conversations/{id}/messages"),
            Some(&ada),
            Some(json!({"role": "user", "content": "Where to?"})),
        )
        .await;
    assert_eq!(appended.status, StatusCode::CREATED);
    assert_eq!(appended.json["message"]["role"], "user");
    assert_eq!(appended.json["conversation"]["messageCount"], 1);
    assert_eq!(appended.json["conversation"]["version"], 2);

    // Optimistic concurrency, by body version and by If-Match.
    let stale = api
        .call(
            "PUT",
            &format!("/api/conversations/{id}"),
            Some(&ada),
            Some(json!({"title": "Old view", "version": 1})),
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    assert_eq!(stale.json["current"]["version"], 2);
    let stale = api
        .send(
            Request::put(format!("/api/conversations/{id}"))
                .header("authorization", format!("Bearer {ada}"))
                .header("content-type", "application/json")
                .header("if-match", "\"1\"")
                .body(Body::from(r#"{"pinned": true}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT);
    let renamed = api
        .call(
            "PUT",
            "/api/conversations",
            Some(&ada),
            Some(json!({"id": id, "title": "Lisbon", "pinned": true, "version": 2})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{:?}", renamed.json);
    assert_eq!(renamed.json["title"], "Lisbon");
    assert_eq!(renamed.json["pinned"], true);

    let deleted = api
        .call(
            "DELETE",
            &format!("/api/conversations?id={id}"),
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = api
        .call("GET", &format!("/api/conversations/{id}"), Some(&ada), None)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let changes = api
        .call("GET", "/api/changes?since=0", Some(&ada), None)
        .await;
    assert_eq!(changes.json["items"][0]["deleted"], true);
    assert_eq!(changes.json["hasMore"], false);
    let restored = api
        .call(
            "POST",
            &format!("/api/conversations/{id}/restore"),
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(restored.status, StatusCode::OK);
    let back = api
        .call("GET", &format!("/api/conversations/{id}"), Some(&ada), None)
        .await;
    assert_eq!(back.json["messages"][0]["content"], "Where to?");
    assert_eq!(back.json["title"], "Lisbon");
}

#[tokio::test]
async fn health_and_unknown_routes() {
    let api = Api::new();
    let health = api.call("GET", "/healthz", None, None).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json["status"], "ok");
    let ready = api.call("GET", "/readyz", None, None).await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json["status"], "ready");
    for path in ["/nope", "/api/../etc/passwd", "/healthz/extra"] {
        let reply = api.call("GET", path, None, None).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply.code(), "not_found", "{path}");
    }
    let profile = api
        .call("GET", "/api/user", Some(&token_for("user_new")), None)
        .await;
    assert_eq!(profile.status, StatusCode::NOT_FOUND);
}

/// Opens an event stream with `token`, without reading it.
async fn open_events(api: &Api, token: &str) -> axum::response::Response {
    use tower::ServiceExt;
    api.router
        .clone()
        .oneshot(
            Request::get("/api/events")
                .header("authorization", format!("Bearer {token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap()
}

/// Reads the next SSE event (skipping heartbeat comments) from a streaming body.
async fn next_event(body: &mut axum::body::Body) -> Option<String> {
    use http_body_util::BodyExt;
    let mut text = String::new();
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_millis(500), body.frame())
            .await
            .ok()??
            .ok()?;
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
            if text.contains("\n\n") {
                if text.starts_with(':') {
                    text.clear();
                    continue;
                }
                return Some(text);
            }
        }
    }
}

#[tokio::test]
async fn events_notify_the_callers_other_connections_only() {
    let api = Api::new();
    let ada = token_for("user_ada");
    let bob = token_for("user_bob");
    let ada_stream = open_events(&api, &ada).await;
    assert_eq!(ada_stream.status(), StatusCode::OK);
    assert_eq!(ada_stream.headers()["content-type"], "text/event-stream");
    let mut ada_body = ada_stream.into_body();
    assert!(
        next_event(&mut ada_body)
            .await
            .unwrap()
            .contains("event: ready")
    );
    let mut bob_body = open_events(&api, &bob).await.into_body();
    assert!(
        next_event(&mut bob_body)
            .await
            .unwrap()
            .contains("event: ready")
    );

    let created = api
        .call(
            "POST",
            "/api/conversations",
            Some(&ada),
            Some(json!({"title": "Live"})),
        )
        .await;
    let id = created.json["id"].as_str().unwrap().to_owned();
    let event = next_event(&mut ada_body).await.expect("a change event");
    assert!(event.contains("event: change"), "{event}");
    assert!(event.contains(&id), "{event}");
    assert!(event.contains(r#""version":1"#), "{event}");
    assert!(!event.contains("device"), "{event}");
    // A change from a named device carries its name, so it can skip its echo.
    api.send(from_device(
        "PUT",
        &format!("/api/conversations/{id}"),
        &ada,
        "01JPHONE",
        Some(json!({"pinned": true})),
    ))
    .await;
    let event = next_event(&mut ada_body).await.expect("a change event");
    assert!(event.contains(r#""device":"01JPHONE""#), "{event}");
    assert_eq!(
        next_event(&mut bob_body).await,
        None,
        "Bob heard Ada's change"
    );

    // A replayed create changes nothing and announces nothing.
    api.call(
        "POST",
        "/api/conversations",
        Some(&ada),
        Some(json!({"id": id, "title": "Live"})),
    )
    .await;
    assert_eq!(next_event(&mut ada_body).await, None);

    // Streams per user are capped; the refusal says when to retry.
    let mut extra = Vec::new();
    for _ in 1..confab_proxy::events::MAX_STREAMS_PER_USER {
        let response = open_events(&api, &ada).await;
        assert_eq!(response.status(), StatusCode::OK);
        extra.push(response);
    }
    let refused = open_events(&api, &ada).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(refused.headers().contains_key("retry-after"));
    drop(extra);
    drop(ada_body);
    assert_eq!(open_events(&api, &ada).await.status(), StatusCode::OK);
}

async fn deliver(api: &Api, id: &str, body: &Value, signature: Option<String>) -> Reply {
    let verifier = confab_proxy::webhooks::WebhookVerifier::new(WEBHOOK_SECRET).unwrap();
    let bytes = body.to_string();
    let ts = now();
    let signature = signature.unwrap_or_else(|| verifier.sign(id, ts, bytes.as_bytes()));
    api.send(
        Request::post("/api/webhooks/clerk")
            .header("content-type", "application/json")
            .header("svix-id", id)
            .header("svix-timestamp", ts.to_string())
            .header("svix-signature", signature)
            .body(Body::from(bytes))
            .unwrap(),
    )
    .await
}

/// A webhook request with a huge `svix-signature` header and a body near the limit.
fn hostile_delivery(values: usize, body_bytes: usize) -> Request<Body> {
    let signatures = vec!["v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; values].join(" ");
    Request::post("/api/webhooks/clerk")
        .header("content-type", "application/json")
        .header("svix-id", "msg_flood")
        .header("svix-timestamp", now().to_string())
        .header("svix-signature", signatures)
        .body(Body::from(" ".repeat(body_bytes)))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_floods_are_refused_cheaply_and_others_keep_being_served() {
    let api = std::sync::Arc::new(Api::new());
    let limit = confab_proxy::webhooks::MAX_WEBHOOK_BODY_BYTES;

    let request = hostile_delivery(50_000, limit - 1);
    let started = std::time::Instant::now();
    let flood = api.send(request).await;
    let took = started.elapsed();
    assert_eq!(flood.status, StatusCode::BAD_REQUEST, "{:?}", flood.json);
    let message = flood.json["error"]["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("svix-signature:"), "{message}");
    assert!(took < std::time::Duration::from_millis(50), "took {took:?}");

    let oversized = api.send(hostile_delivery(1, limit + 1)).await;
    assert_eq!(oversized.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(oversized.code(), "too_large");

    // While floods keep arriving on both workers, a user's requests are served.
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    let reply = api.send(hostile_delivery(50_000, limit - 1)).await;
                    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
                }
            })
        })
        .collect();
    let ada = token_for("user_ada");
    for _ in 0..20 {
        let started = std::time::Instant::now();
        let list = api
            .call("GET", "/api/conversations", Some(&ada), None)
            .await;
        assert_eq!(list.status, StatusCode::OK);
        let took = started.elapsed();
        assert!(took < std::time::Duration::from_secs(1), "took {took:?}");
    }
    for attacker in attackers {
        attacker.await.unwrap();
    }
}

fn clerk_user(id: &str, email: &str, first: &str) -> Value {
    json!({
        "id": id,
        "first_name": first,
        "last_name": "Lovelace",
        "image_url": "https://img.clerk.com/x.png",
        "primary_email_address_id": "idn_2",
        "email_addresses": [
            {"id": "idn_1", "email_address": "old@example.com"},
            {"id": "idn_2", "email_address": email}
        ]
    })
}

/// `POST /api/user` asks the provider at most once a minute per user; in
/// between it answers the stored profile (which a webhook may have updated).
#[tokio::test]
async fn profile_reads_from_the_provider_are_spared() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let userinfo = axum::Router::new().route(
        "/oauth/userinfo",
        axum::routing::get(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async {
                axum::Json(
                    json!({"sub": "user_ada", "email": "ada@example.com", "given_name": "Ada"}),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/oauth/userinfo", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, userinfo).await });

    let api = Api::with_userinfo(&url);
    let ada = token_for("user_ada");
    let first = api.call("POST", "/api/user", Some(&ada), None).await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.json);
    assert_eq!(first.json["firstName"], "Ada");
    // A webhook changes the profile; the next POST answers it, unasked.
    let updated = deliver(
        &api,
        "msg_profile",
        &json!({"type": "user.updated", "data": clerk_user("user_ada", "ada@lovelace.org", "Augusta")}),
        None,
    )
    .await;
    assert_eq!(updated.status, StatusCode::NO_CONTENT);
    for _ in 0..5 {
        let again = api.call("POST", "/api/user", Some(&ada), None).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.json["firstName"], "Augusta");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the provider was asked once"
    );
}

#[tokio::test]
async fn clerk_webhooks_sync_profiles_and_erase_users() {
    let api = Api::new();
    let ada = token_for("user_ada");
    let bob = token_for("user_bob");

    let created = deliver(
        &api,
        "msg_1",
        &json!({"type": "user.created", "data": clerk_user("user_ada", "ada@example.com", "Ada")}),
        None,
    )
    .await;
    assert_eq!(created.status, StatusCode::NO_CONTENT, "{:?}", created.json);
    let profile = api.call("GET", "/api/user", Some(&ada), None).await;
    assert_eq!(profile.json["email"], "ada@example.com");
    assert_eq!(profile.json["firstName"], "Ada");

    // A forged signature changes nothing.
    let forged = deliver(
        &api,
        "msg_2",
        &json!({"type": "user.updated", "data": clerk_user("user_ada", "evil@example.com", "Eve")}),
        Some("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()),
    )
    .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    let missing = api
        .send(
            Request::post("/api/webhooks/clerk")
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    let profile = api.call("GET", "/api/user", Some(&ada), None).await;
    assert_eq!(profile.json["firstName"], "Ada");

    let updated = deliver(
        &api,
        "msg_3",
        &json!({"type": "user.updated", "data": clerk_user("user_ada", "ada@lovelace.org", "Augusta")}),
        None,
    )
    .await;
    assert_eq!(updated.status, StatusCode::NO_CONTENT);
    let profile = api.call("GET", "/api/user", Some(&ada), None).await;
    assert_eq!(profile.json["firstName"], "Augusta");
    assert_eq!(profile.json["email"], "ada@lovelace.org");

    // A replay of the first delivery is acknowledged and not applied again,
    // also when it reaches another instance: the memory is the store's.
    let replay = deliver(
        &api.another_instance(),
        "msg_1",
        &json!({"type": "user.created", "data": clerk_user("user_ada", "ada@example.com", "Ada")}),
        None,
    )
    .await;
    assert_eq!(replay.status, StatusCode::NO_CONTENT);
    let profile = api.call("GET", "/api/user", Some(&ada), None).await;
    assert_eq!(profile.json["firstName"], "Augusta");

    // Hostile payloads are 400, never a 500.
    for (i, data) in [json!({"id": "USER#x"}), json!("nope"), json!({"id": 5})]
        .iter()
        .enumerate()
    {
        let reply = deliver(
            &api,
            &format!("msg_bad_{i}"),
            &json!({"type": "user.deleted", "data": data}),
            None,
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{data}");
    }

    for token in [&ada, &bob] {
        api.call(
            "POST",
            "/api/conversations",
            Some(token),
            Some(json!({"messages": [{"role": "user", "content": "hello"}]})),
        )
        .await;
    }
    let deleted = deliver(
        &api,
        "msg_4",
        &json!({"type": "user.deleted", "data": {"id": "user_ada", "deleted": true}}),
        None,
    )
    .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.call("GET", "/api/user", Some(&ada), None).await.status,
        StatusCode::NOT_FOUND
    );
    // Writes with a token from before the erasure do not recreate the account.
    let late = api
        .call(
            "POST",
            "/api/conversations",
            Some(&ada),
            Some(json!({"title": "after the deletion"})),
        )
        .await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED, "{:?}", late.json);
    assert!(
        late.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deleted")
    );
    let list = api
        .call("GET", "/api/conversations", Some(&ada), None)
        .await;
    assert_eq!(list.json["items"], json!([]));
    let changes = api.call("GET", "/api/changes", Some(&ada), None).await;
    assert_eq!(changes.json["items"], json!([]));
    let bobs = api
        .call("GET", "/api/conversations", Some(&bob), None)
        .await;
    assert_eq!(bobs.json["items"].as_array().map(Vec::len), Some(1));

    // Other event types are acknowledged and ignored.
    let other = deliver(
        &api,
        "msg_5",
        &json!({"type": "session.created", "data": {}}),
        None,
    )
    .await;
    assert_eq!(other.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn per_user_rate_limit_answers_429_with_retry_after() {
    let api = Api::with_limit(Some(confab_proxy::limits::RateLimit {
        per_second: 1,
        burst: 2,
    }));
    let ada = token_for("user_ada");
    for _ in 0..2 {
        let ok = api
            .call("GET", "/api/conversations", Some(&ada), None)
            .await;
        assert_eq!(ok.status, StatusCode::OK);
    }
    let limited = api
        .call("GET", "/api/conversations", Some(&ada), None)
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Another user is not affected.
    let bob = api
        .call(
            "GET",
            "/api/conversations",
            Some(&token_for("user_bob")),
            None,
        )
        .await;
    assert_eq!(bob.status, StatusCode::OK);
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let api = Api::new();
    let reply = api.call("GET", "/healthz", None, None).await;
    let id = reply.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "{id}");
    let given = api
        .send(
            Request::get("/nope")
                .header("x-request-id", "trace-me-123")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(given.headers["x-request-id"], "trace-me-123");
}

/// A request with `X-Confab-Device`.
fn from_device(
    method: &str,
    path: &str,
    token: &str,
    device: &str,
    body: Option<Value>,
) -> Request<Body> {
    let builder = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("x-confab-device", device);
    match body {
        Some(body) => builder
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .unwrap()
}

#[tokio::test]
async fn message_deltas_and_device_echoes_over_http() {
    let api = Api::new();
    let ada = token_for("user_ada");
    let messages: Vec<Value> = (0..5)
        .map(|i| json!({"role": "user", "content": format!("m{i}")}))
        .collect();
    let created = api
        .call(
            "POST",
            "/api/conversations",
            Some(&ada),
            Some(json!({"title": "Long", "messages": messages})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.json["id"].as_str().unwrap().to_owned();
    let ids: Vec<String> = created.json["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    let contents = |reply: &Reply, key: &str| -> Vec<String> {
        reply.json[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap().to_owned())
            .collect()
    };

    // The newest page of a conversation, and a cursor for earlier ones.
    let newest = api
        .call(
            "GET",
            &format!("/api/conversations/{id}?limit=2"),
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(newest.status, StatusCode::OK);
    assert_eq!(contents(&newest, "messages"), ["m3", "m4"]);
    assert_eq!(newest.json["messageCount"], 5);
    let cursor = newest.json["nextCursor"].as_str().unwrap().to_owned();
    let earlier = api
        .call(
            "GET",
            &format!("/api/conversations/{id}/messages?before={cursor}&limit=2"),
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(contents(&earlier, "items"), ["m1", "m2"]);
    // Without a limit: the template's shape, every message and no cursor.
    let whole = api
        .call("GET", &format!("/api/conversations/{id}"), Some(&ada), None)
        .await;
    assert_eq!(contents(&whole, "messages").len(), 5);
    assert!(whole.json.get("nextCursor").is_none());

    // Deltas: after a message, oldest first; paged with nextCursor.
    let after = api
        .call(
            "GET",
            &format!("/api/conversations/{id}/messages?after={}", ids[2]),
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(contents(&after, "items"), ["m3", "m4"]);
    assert_eq!(after.json["nextCursor"], Value::Null);
    let first = api
        .call(
            "GET",
            &format!("/api/conversations/{id}/messages?limit=2"),
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(contents(&first, "items"), ["m0", "m1"]);
    assert_eq!(first.json["nextCursor"], ids[1].as_str());

    // Bad input names the field; strangers see nothing.
    let bad = [
        (
            format!("/api/conversations/{id}/messages?after=nope"),
            "after",
        ),
        (
            format!("/api/conversations/{id}/messages?before=01j"),
            "before",
        ),
        (
            format!(
                "/api/conversations/{id}/messages?after={}&before={}",
                ids[0], ids[1]
            ),
            "before",
        ),
        (
            format!("/api/conversations/{id}/messages?limit=1001"),
            "limit",
        ),
        (format!("/api/conversations/{id}/messages?limit=0"), "limit"),
        (format!("/api/conversations/{id}?limit=abc"), "limit"),
    ];
    for (path, field) in bad {
        let reply = api.call("GET", &path, Some(&ada), None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}");
        let message = reply.json["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{path}: {message}");
    }
    let bob = token_for("user_bob");
    let stranger = api
        .call(
            "GET",
            &format!("/api/conversations/{id}/messages"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(stranger.status, StatusCode::NOT_FOUND);

    // A device names itself; the feed and the notices carry it.
    let before = api.call("GET", "/api/changes", Some(&ada), None).await;
    let since = before.json["cursor"].as_str().unwrap().to_owned();
    let appended = api
        .send(from_device(
            "POST",
            &format!("/api/conversations/{id}/messages"),
            &ada,
            "01JLAPTOP",
            Some(json!({"role": "user", "content": "from the laptop"})),
        ))
        .await;
    assert_eq!(appended.status, StatusCode::CREATED);
    let new_id = appended.json["message"]["id"].as_str().unwrap().to_owned();
    let feed = api
        .call(
            "GET",
            &format!("/api/changes?since={since}"),
            Some(&ada),
            None,
        )
        .await;
    let entry = &feed.json["items"][0];
    assert_eq!(entry["id"], id.as_str());
    assert_eq!(entry["device"], "01JLAPTOP");
    assert_eq!(entry["messageChanges"]["from"], new_id.as_str());
    assert_eq!(entry["messageChanges"]["all"], false);

    // A malformed device id is refused and writes nothing.
    for device in ["two words", "x".repeat(65).as_str(), "../../etc"] {
        let refused = api
            .send(from_device(
                "POST",
                &format!("/api/conversations/{id}/messages"),
                &ada,
                device,
                Some(json!({"role": "user", "content": "never stored"})),
            ))
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{device}");
        assert!(
            refused.json["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("x-confab-device")
        );
    }
    let count = api
        .call(
            "GET",
            &format!("/api/conversations/{id}?limit=1"),
            Some(&ada),
            None,
        )
        .await;
    assert_eq!(count.json["messageCount"], 6);
}

/// Waits for a streaming body to end; false if it is still open at `within`.
async fn ends_within(body: &mut axum::body::Body, within: std::time::Duration) -> bool {
    use http_body_util::BodyExt;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test]
async fn event_streams_end_with_their_token_and_their_account() {
    let api = Api::new();
    // A token about to expire: the stream ends with it (plus the leeway).
    let mut short = claims("user_ada");
    short["exp"] = json!(now() + 1);
    let stream = open_events(&api, &sign(&short)).await;
    assert_eq!(stream.status(), StatusCode::OK);
    let mut body = stream.into_body();
    let leeway = confab_proxy::auth::LEEWAY_SECS;
    assert!(
        !ends_within(&mut body, std::time::Duration::from_millis(500)).await,
        "ended before its token expired"
    );
    assert!(
        ends_within(&mut body, std::time::Duration::from_secs(leeway + 4)).await,
        "outlived its token"
    );

    // The account is deleted: its streams end at once, others stay.
    let mut ada = open_events(&api, &token_for("user_ada")).await.into_body();
    let mut bob = open_events(&api, &token_for("user_bob")).await.into_body();
    let erased = deliver(
        &api,
        "msg_erase",
        &json!({"type": "user.deleted", "data": {"id": "user_ada"}}),
        None,
    )
    .await;
    assert_eq!(erased.status, StatusCode::NO_CONTENT);
    assert!(ends_within(&mut ada, std::time::Duration::from_secs(2)).await);
    assert!(!ends_within(&mut bob, std::time::Duration::from_millis(500)).await);
}

#[tokio::test]
async fn openapi_document_describes_every_route() {
    let api = Api::new();
    let doc = api.call("GET", "/api/openapi.json", None, None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(doc.json["openapi"].as_str().unwrap().starts_with("3."));
    let routes = [
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/api/user"),
        ("post", "/api/user"),
        ("get", "/api/conversations"),
        ("post", "/api/conversations"),
        ("put", "/api/conversations"),
        ("delete", "/api/conversations"),
        ("get", "/api/conversations/{id}"),
        ("put", "/api/conversations/{id}"),
        ("delete", "/api/conversations/{id}"),
        ("post", "/api/conversations/{id}/restore"),
        ("post", "/api/conversations/{id}/messages"),
        ("get", "/api/conversations/{id}/messages"),
        ("get", "/api/changes"),
        ("get", "/api/events"),
        ("post", "/api/webhooks/clerk"),
        ("get", "/api/assistant"),
        ("post", "/api/conversations/{id}/replies"),
        ("post", "/api/conversations/{id}/replies/{messageId}/stop"),
    ];
    for schema in [
        "ReplyDelta",
        "ReplyDone",
        "ReplyMessage",
        "AssistantInfo",
        "StartReply",
    ] {
        assert!(
            doc.json["components"]["schemas"][schema].is_object(),
            "{schema} is not described"
        );
    }
    let paths = doc.json["paths"].as_object().unwrap();
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, routes.len(), "{:?}", paths.keys());
    for (method, path) in routes {
        assert!(
            doc.json["paths"][path][method].is_object(),
            "{method} {path} is not documented"
        );
        // Each documented route really exists: it does not answer the router's
        // fallback "no such route". (The event stream never ends; its own test
        // covers it.)
        if path == "/api/events" {
            continue;
        }
        let path = path
            .replace("{id}", "01JDQ3ZJ6Y8W5X9V4T3S2R1Q0P")
            .replace("{messageId}", "01JDQ3ZJ6Y8W5X9V4T3S2R1Q0Q");
        let reply = api
            .call(
                &method.to_uppercase(),
                &path,
                Some(&token_for("user_doc")),
                None,
            )
            .await;
        assert!(
            reply.json["error"]["message"] != "no such route",
            "{method} {path} is documented but not routed"
        );
    }
    let schemas = doc.json["components"]["schemas"].as_object().unwrap();
    for name in [
        "Conversation",
        "ConversationDetail",
        "Message",
        "Profile",
        "Changes",
        "HttpError",
        "ErrorCode",
    ] {
        assert!(
            schemas.contains_key(name),
            "schema {name} missing: {:?}",
            schemas.keys()
        );
    }
    assert_eq!(
        doc.json["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}
