//! The conformance suite against the DynamoDB store, on a real moto server
//! (one per test, so tests stay independent and can run in parallel).

#[path = "suite/store_suite.rs"]
mod store_suite;

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
async fn fresh() -> (store_suite::DynStore, Moto) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep();
    let moto = Moto::start(&dir).expect("moto starts");
    let store = DynamoStore::new(client(&moto.endpoint()), "confab");
    store.setup().await.expect("table setup");
    // Setting up twice is harmless (the template's setup script is idempotent).
    store.setup().await.expect("second setup");
    (Arc::new(store), moto)
}

store_conformance!(fresh());
