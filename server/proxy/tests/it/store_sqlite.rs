//! The conformance suite against the embedded SQLite store (a real file, WAL).

use crate::store_suite;

use std::sync::Arc;

use confab_proxy::store::SqliteStore;

#[allow(clippy::expect_used)] // a test that cannot open its store should stop there
async fn fresh() -> (store_suite::DynStore, tempfile::TempDir) {
    // The folder is the guard: removed when the test ends.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    (
        Arc::new(SqliteStore::open(&dir.path().join("confab.db")).expect("open store")),
        dir,
    )
}

store_conformance!(fresh());

/// Tombstones and change history older than the retention go; a cursor into
/// the pruned history is refused with the cursor to resume from.
#[tokio::test]
#[allow(clippy::unwrap_used, clippy::expect_used)]
async fn purge_prunes_old_history_and_expires_old_cursors() {
    use confab_proxy::ids::Id;
    use confab_proxy::store::{Store, StoreError};
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("confab.db");
    let store = SqliteStore::open(&path).unwrap();
    let ada = store_suite::user("user_ada");
    let kept = store_suite::conv("kept", vec![store_suite::msg("hi")]);
    let gone = store_suite::conv("gone", vec![store_suite::msg("bye")]);
    let (kept_id, gone_id): (Id, Id) = (kept.id, gone.id);
    store.create_conversation(&ada, kept, None).await.unwrap();
    store.create_conversation(&ada, gone, None).await.unwrap();
    store
        .delete_conversation(&ada, gone_id, None, None)
        .await
        .unwrap();
    assert_eq!(
        store.purge_expired().await.unwrap(),
        0,
        "nothing is old yet"
    );

    // Age everything by 31 days, as if the store had been idle that long.
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let month = 31 * 24 * 3600 * 1000_i64;
        conn.execute_batch(&format!(
            "UPDATE changes SET at = at - {month};
             UPDATE conversations SET deleted_at = deleted_at - {month} WHERE deleted_at IS NOT NULL;"
        ))
        .unwrap();
    }
    assert!(store.purge_expired().await.unwrap() >= 4);
    assert!(matches!(
        store.restore_conversation(&ada, gone_id, None).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store
            .get_conversation(&ada, kept_id)
            .await
            .unwrap()
            .messages
            .len(),
        1
    );
    match store.changes(&ada, 0, 10).await {
        Err(StoreError::CursorExpired { current }) => assert_eq!(current, 3),
        other => panic!("expected an expired cursor, got {other:?}"),
    }
    // Resuming from the current cursor works, and new changes flow again.
    assert!(store.changes(&ada, 3, 10).await.unwrap().items.is_empty());
    store
        .append_message(&ada, kept_id, store_suite::msg("again"), None)
        .await
        .unwrap();
    let next = store.changes(&ada, 3, 10).await.unwrap();
    assert_eq!(next.items.len(), 1);
    drop(dir);
}

#[tokio::test]
#[allow(clippy::unwrap_used)]
async fn a_store_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("confab.db");
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = SqliteStore::open(&path).err().expect("refused");
    assert!(err.to_string().contains("newer"), "{err}");
}

/// A file written by schema 1 (a frozen copy, not today's code) opens,
/// keeps its data and history, and records devices from then on.
#[tokio::test]
#[allow(clippy::unwrap_used)]
async fn a_schema_1_store_is_upgraded_in_place() {
    use confab_proxy::ids::Id;
    use confab_proxy::store::{DeviceId, Store};
    use confab_wire::conversations::Change;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("confab.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(include_str!("../fixtures/sqlite-v1.sql"))
        .unwrap();
    let store = SqliteStore::open(&path).unwrap();
    let ada = store_suite::user("user_ada");
    let id = Id::parse("01JDQ3ZJ6Y8W5X9V4T3S2R1Q0P").unwrap();
    let old = store.get_conversation(&ada, id).await.unwrap();
    let contents: Vec<_> = old.messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["first", "second"]);
    let history = store.changes(&ada, 0, 10).await.unwrap();
    assert_eq!(history.cursor, "2");
    match &history.items[..] {
        [Change::Updated(c)] => assert_eq!(c.device, None),
        other => panic!("{other:?}"),
    }
    // The content bytes were counted from the stored messages: 11 of them.
    let capped = store.clone().with_caps(confab_proxy::store::Caps {
        messages: 100,
        bytes: 15,
    });
    assert!(matches!(
        capped
            .append_message(&ada, id, store_suite::msg("abcde"), None)
            .await,
        Err(confab_proxy::store::StoreError::CapReached(_))
    ));
    let phone = DeviceId::parse("phone").unwrap();
    store
        .append_message(&ada, id, store_suite::msg("third"), Some(&phone))
        .await
        .unwrap();
    match &store.changes(&ada, 2, 10).await.unwrap().items[..] {
        [Change::Updated(c)] => {
            assert_eq!(c.device.as_ref(), Some(&phone));
            assert!(c.message_changes.is_some());
        }
        other => panic!("{other:?}"),
    }
    // Replies are stored on the upgraded file (schema 3's column).
    let question = store_suite::msg("a question");
    let after = question.id;
    store
        .append_message(&ada, id, question, None)
        .await
        .unwrap();
    let mut reply = store.get_conversation(&ada, id).await.unwrap().messages[0].clone();
    reply.id = after.offset(1 << 32).unwrap().to_string();
    reply.role = confab_wire::conversations::Role::Assistant;
    reply.content = String::new();
    reply.reply = Some(confab_wire::assistant::Reply {
        status: confab_wire::assistant::ReplyStatus::Streaming,
        model: "m".into(),
        after: after.to_string(),
        updated_at: reply.timestamp,
        usage: None,
        stop_reason: None,
        error: None,
    });
    let start = confab_proxy::store::ReplyWrite::Start {
        message: reply,
        regenerate: false,
    };
    store.write_reply(&ada, id, start, None).await.unwrap();
    let stored = store.get_conversation(&ada, id).await.unwrap();
    assert!(stored.messages.last().unwrap().reply.is_some());
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 3);
    // Opening again runs nothing twice.
    drop(store);
    SqliteStore::open(&path).unwrap();
}

#[tokio::test]
#[allow(clippy::unwrap_used)]
async fn caps_are_enforced() {
    use confab_proxy::store::Caps;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = SqliteStore::open(&dir.path().join("confab.db"))
        .unwrap()
        .with_caps(Caps {
            messages: 3,
            bytes: 100,
        });
    store_suite::caps_refuse_what_would_pass_them(Arc::new(store)).await;
}

/// What the shared limits accept, the store gives back exactly (titles and
/// message content of any characters: combining marks, emoji, NUL, RTL
/// marks, lone surrogates' replacements, very long lines).
#[test]
#[allow(clippy::unwrap_used, clippy::expect_used)]
fn what_validation_accepts_round_trips() {
    use confab_proxy::ids::Id;
    use confab_proxy::store::{NewConversation, NewMessage, Store};
    use confab_wire::conversations::Role;
    use confab_wire::limits;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = SqliteStore::open(&dir.path().join("confab.db")).unwrap();
    let ada = store_suite::user("user_ada");
    let text = prop_oneof![
        ".{0,600}",
        "[ \t\n\u{0}\u{200f}\u{301}é😀]{0,40}",
        any::<String>()
    ];
    let mut runner = TestRunner::new(Config::with_cases(256));
    let stored = std::cell::Cell::new(0);
    runner
        .run(&(text.clone(), text), |(title, content)| {
            let (Ok(title), Ok(())) = (limits::title(&title), limits::content(&content)) else {
                return Ok(());
            };
            let new = NewConversation {
                id: Id::new(),
                title: title.clone(),
                messages: vec![NewMessage {
                    id: Id::new(),
                    role: Role::User,
                    content: content.clone(),
                }],
            };
            let id = new.id;
            let back = runtime.block_on(async {
                store.create_conversation(&ada, new, None).await.unwrap();
                store.get_conversation(&ada, id).await.unwrap()
            });
            prop_assert_eq!(&back.conversation.title, &title);
            prop_assert_eq!(&back.messages[0].content, &content);
            stored.set(stored.get() + 1);
            Ok(())
        })
        .unwrap();
    assert!(stored.get() > 50, "only {} cases were valid", stored.get());
}
