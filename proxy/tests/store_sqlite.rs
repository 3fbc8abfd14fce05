//! The conformance suite against the embedded SQLite store (a real file, WAL).

#[path = "suite/store_suite.rs"]
mod store_suite;

use std::sync::Arc;

use confab_proxy::store::SqliteStore;

#[allow(clippy::expect_used)] // a test that cannot open its store should stop there
async fn fresh() -> (store_suite::DynStore, ()) {
    // Under the target dir (cleaned by `cargo clean`): the file must outlive the
    // test's store, which the suite owns.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
        .keep();
    (
        Arc::new(SqliteStore::open(&dir.join("confab.db")).expect("open store")),
        (),
    )
}

store_conformance!(fresh());
