//! Validated identifiers: `confab_wire::ids`, the one definition every side
//! shares. Store keys are only ever built from these types.

pub use confab_wire::ids::{Id, IdError, UserId};
