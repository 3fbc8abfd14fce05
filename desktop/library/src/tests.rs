//! The library against real caches in a temporary folder, with a session
//! that has no provider (nothing signs in; the engines run and find nobody).

use std::time::Duration;

use confab_session::{AuthConfig, MemoryStore, Vault};
use confab_wire::conversations::Role;

use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    library: Arc<Library>,
    session: Session,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let unconfigured = AuthConfig::load(dir.path(), &|_| None).expect_err("nothing configured");
    let session = Session::new(
        Err(unconfigured),
        Vault::new(MemoryStore::default()),
        dir.path(),
    );
    let library = Arc::new(Library::new(dir.path().join("cache")));
    Fixture {
        dir,
        library,
        session,
    }
}

/// Waits for `done`, polling; the tasks it watches run on other workers.
async fn eventually(what: &str, done: impl Fn() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: still not after 2 s");
}

#[tokio::test]
async fn nobody_open_means_signed_out() {
    let f = fixture();
    let err = f.library.engine().err().expect("nobody is open");
    assert!(matches!(err, LibraryError::SignedOut));
    let body = ErrorBody::from(err);
    assert_eq!(body.code, ErrorCode::Unauthenticated);
    assert_eq!(f.library.unsynced(), 0);
    assert_eq!(
        f.library.subscribe_status().borrow().connection,
        Connection::SignedOut
    );
}

#[test]
fn hostile_user_ids_stay_in_the_folder() {
    let f = fixture();
    let dir = f.dir.path().join("cache");
    let long = "u".repeat(129);
    for id in [
        "../../etc/passwd",
        "",
        "/abs",
        "a\\b",
        "user_1\0",
        "ü",
        &long,
    ] {
        let path = f.library.path_for(id);
        assert_eq!(path.parent(), Some(dir.as_path()), "{id:?} → {path:?}");
        let name = path.file_name().and_then(|n| n.to_str()).expect("a name");
        assert!(
            name.trim_end_matches(".db")
                .chars()
                .all(|c| c.is_ascii_hexdigit()),
            "{id:?} is hex-encoded, got {name}"
        );
    }
    // Two different ids never share a file.
    assert_ne!(f.library.path_for("ab"), f.library.path_for("6162"));
    assert_eq!(
        f.library
            .path_for("user_2abc")
            .file_name()
            .and_then(|n| n.to_str()),
        Some("user_2abc.db")
    );
}

#[test]
fn ids_keep_their_order_within_a_millisecond() {
    let f = fixture();
    let ids: Vec<String> = (0..1_000).map(|_| f.library.new_id()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in order");
}

#[tokio::test]
async fn opening_a_user_starts_their_engine_and_tells_the_readers() {
    let f = fixture();
    let mut changes = f.library.subscribe_changes();
    let status = f.library.subscribe_status();
    f.library.open("user_a", &f.session).expect("opens");
    let everything = tokio::time::timeout(Duration::from_secs(2), changes.next())
        .await
        .expect("announced")
        .expect("library alive");
    assert!(everything.conversation_ids.is_empty(), "read everything");
    assert_eq!(f.library.user_id().as_deref(), Some("user_a"));

    // A local write is announced through the library, with its id.
    let engine = f.library.engine().expect("open");
    let id = f.library.new_id();
    engine
        .cache()
        .create(&id, Some("hello"), confab_cache::now())
        .expect("written");
    engine.local_change(&id);
    let change = tokio::time::timeout(Duration::from_secs(2), changes.next())
        .await
        .expect("announced")
        .expect("library alive");
    assert_eq!(change.conversation_ids, vec![id]);
    assert_eq!(f.library.unsynced(), 1, "the create waits in the outbox");
    // The engine's status, with that pending write, reaches the library's
    // channel.
    eventually("the engine's status is carried", || {
        status.borrow().pending == 1
    })
    .await;
}

#[tokio::test]
async fn opening_the_same_user_again_keeps_their_engine() {
    let f = fixture();
    f.library.open("user_a", &f.session).expect("opens");
    let first = f.library.engine().expect("open");
    f.library.open("user_a", &f.session).expect("opens");
    assert!(Arc::ptr_eq(&first, &f.library.engine().expect("open")));
}

#[tokio::test]
async fn closing_or_switching_stops_the_previous_users_tasks() {
    let f = fixture();
    f.library.open("user_a", &f.session).expect("opens");
    let a = Arc::downgrade(&f.library.engine().expect("open"));
    f.library.open("user_b", &f.session).expect("opens");
    assert_eq!(f.library.user_id().as_deref(), Some("user_b"));
    // Every task holding user A's engine was aborted and dropped it.
    eventually("user A's engine is gone", || a.upgrade().is_none()).await;

    let b = Arc::downgrade(&f.library.engine().expect("open"));
    let status = f.library.subscribe_status();
    f.library.close();
    assert!(f.library.engine().is_err());
    eventually("user B's engine is gone", || b.upgrade().is_none()).await;
    assert_eq!(status.borrow().connection, Connection::SignedOut);
}

#[tokio::test]
async fn a_users_writes_survive_closing_and_leave_with_forget() {
    let f = fixture();
    f.library.open_offline("user_a", &f.session).expect("opens");
    let engine = f.library.engine().expect("open");
    let id = f.library.new_id();
    engine
        .cache()
        .create(&id, None, confab_cache::now())
        .expect("written");
    engine
        .cache()
        .append(
            &id,
            &f.library.new_id(),
            Role::User,
            "kept",
            confab_cache::now(),
        )
        .expect("written");
    drop(engine);
    f.library.close();

    // Another user sees none of it; the first finds it again.
    f.library.open_offline("user_b", &f.session).expect("opens");
    assert_eq!(f.library.unsynced(), 0);
    f.library.open_offline("user_a", &f.session).expect("opens");
    assert_eq!(f.library.unsynced(), 2);

    f.library.forget_user("user_a");
    assert!(f.library.engine().is_err(), "forgetting closes them");
    let left: Vec<_> = std::fs::read_dir(f.dir.path().join("cache"))
        .expect("folder")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter().all(|name| !name.starts_with("user_a")),
        "user A's files are gone: {left:?}"
    );
    assert!(left.iter().any(|name| name == "user_b.db"), "{left:?}");

    // Forgetting someone who is not open leaves the open user alone.
    f.library.open_offline("user_b", &f.session).expect("opens");
    f.library.forget_user("user_c");
    assert_eq!(f.library.user_id().as_deref(), Some("user_b"));
}

#[tokio::test]
async fn a_reader_that_lagged_is_told_to_read_everything() {
    let f = fixture();
    let mut changes = f.library.subscribe_changes();
    for n in 0..(EVENT_BACKLOG + 10) {
        let _ = f.library.changes.send(LibraryChanged {
            conversation_ids: vec![n.to_string()],
        });
    }
    let first = changes.next().await.expect("library alive");
    assert!(first.conversation_ids.is_empty(), "everything, after a lag");
    let next = changes.next().await.expect("library alive");
    assert_eq!(next.conversation_ids, vec!["10".to_owned()]);

    let mut replies = f.library.subscribe_replies();
    drop(f);
    assert!(replies.next().await.is_none(), "ends with the library");
}
