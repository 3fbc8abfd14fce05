//! The conformance suite against the DynamoDB store, on a real moto server
//! (one per test, so tests stay independent and can run in parallel).

use crate::store_suite;

use std::sync::Arc;

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use confab_proxy::store::DynamoStore;
use confab_tests::moto::Moto;

pub fn client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

#[allow(clippy::expect_used)] // a test that cannot start its server should stop there
pub async fn fresh() -> (store_suite::DynStore, (Moto, tempfile::TempDir)) {
    // Removed when the guard goes (after moto, which logs into it).
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let moto = Moto::start(dir.path()).expect("moto starts");
    let store = DynamoStore::new(client(&moto.endpoint()), "confab");
    store.setup().await.expect("table setup");
    // Setting up twice is harmless (the template's setup script is idempotent).
    store.setup().await.expect("second setup");
    (Arc::new(store), (moto, dir))
}

store_conformance!(fresh());

/// TTL pruned the start of the change history: a cursor into it is refused
/// with the cursor to resume from.
#[tokio::test]
#[allow(clippy::unwrap_used, clippy::expect_used)]
async fn pruned_history_expires_old_cursors() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use confab_proxy::store::StoreError;
    let (store, (moto, _dir)) = fresh().await;
    let ada = store_suite::user("user_ada");
    for i in 0..3 {
        store
            .create_conversation(&ada, store_suite::conv(&format!("{i}"), vec![]), None)
            .await
            .unwrap();
    }
    // What DynamoDB's TTL does after 30 days: the oldest entry disappears.
    client(&moto.endpoint())
        .delete_item()
        .table_name("confab")
        .key("pk", AttributeValue::S("USER#user_ada".into()))
        .key("sk", AttributeValue::S(format!("CHG#{:020}", 1)))
        .send()
        .await
        .unwrap();
    match store.changes(&ada, 0, 10).await {
        Err(StoreError::CursorExpired { current }) => assert_eq!(current, 3),
        other => panic!("expected an expired cursor, got {other:?}"),
    }
    assert_eq!(store.changes(&ada, 1, 10).await.unwrap().items.len(), 2);
}

/// A tombstone's messages carry its TTL, so DynamoDB removes them with it; a
/// restore takes the TTL off again.
#[tokio::test]
#[allow(clippy::unwrap_used)]
async fn deleted_conversations_messages_expire_with_the_tombstone() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let (store, (moto, _dir)) = fresh().await;
    let ada = store_suite::user("user_ada");
    let new = store_suite::conv("x", vec![store_suite::msg("one"), store_suite::msg("two")]);
    let id = new.id;
    store.create_conversation(&ada, new, None).await.unwrap();
    let ttl_of_messages = || async {
        client(&moto.endpoint())
            .query()
            .table_name("confab")
            .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
            .expression_attribute_values(":pk", AttributeValue::S("USER#user_ada".into()))
            .expression_attribute_values(":p", AttributeValue::S(format!("MSG#{id}#")))
            .send()
            .await
            .unwrap()
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| item.contains_key("expiresAt"))
            .collect::<Vec<_>>()
    };
    assert_eq!(ttl_of_messages().await, [false, false]);
    store
        .delete_conversation(&ada, id, None, None)
        .await
        .unwrap();
    assert_eq!(ttl_of_messages().await, [true, true]);
    store.restore_conversation(&ada, id, None).await.unwrap();
    assert_eq!(ttl_of_messages().await, [false, false]);
    assert_eq!(
        store
            .get_conversation(&ada, id)
            .await
            .unwrap()
            .messages
            .len(),
        2
    );
}

#[tokio::test]
#[allow(clippy::unwrap_used)]
async fn caps_are_enforced() {
    use confab_proxy::store::Caps;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let moto = Moto::start(dir.path()).unwrap();
    let store = DynamoStore::new(client(&moto.endpoint()), "confab").with_caps(Caps {
        messages: 3,
        bytes: 100,
    });
    store.setup().await.unwrap();
    store_suite::caps_refuse_what_would_pass_them(Arc::new(store)).await;
}

/// Conversations stored before the byte counter existed count their bytes
/// from their messages when first needed, then keep the counter.
#[tokio::test]
#[allow(clippy::unwrap_used)]
async fn items_without_a_byte_count_are_counted_from_their_messages() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use confab_proxy::store::{Caps, Store, StoreError};
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let moto = Moto::start(dir.path()).unwrap();
    let dynamo = client(&moto.endpoint());
    let store = DynamoStore::new(dynamo.clone(), "confab").with_caps(Caps {
        messages: 10,
        bytes: 100,
    });
    store.setup().await.unwrap();
    let ada = store_suite::user("user_ada");
    let new = store_suite::conv("Old", vec![store_suite::msg(&"x".repeat(98))]);
    let id = new.id;
    store.create_conversation(&ada, new, None).await.unwrap();
    let key = |sk: String| {
        std::collections::HashMap::from([
            ("pk".to_owned(), AttributeValue::S("USER#user_ada".into())),
            ("sk".to_owned(), AttributeValue::S(sk)),
        ])
    };
    dynamo
        .update_item()
        .table_name("confab")
        .set_key(Some(key(format!("CONV#{id}"))))
        .update_expression("REMOVE contentBytes")
        .send()
        .await
        .unwrap();
    assert!(matches!(
        store
            .append_message(&ada, id, store_suite::msg("abc"), None)
            .await,
        Err(StoreError::CapReached(_))
    ));
    store
        .append_message(&ada, id, store_suite::msg("ab"), None)
        .await
        .unwrap();
    let item = dynamo
        .get_item()
        .table_name("confab")
        .set_key(Some(key(format!("CONV#{id}"))))
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    assert_eq!(item["contentBytes"], AttributeValue::N("100".into()));
}
