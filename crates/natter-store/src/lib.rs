//! natter's persistent state: accounts, sessions and the message log, in SQLite by default,
//! in memory for throwaway servers, or in PostgreSQL for a cluster.
//!
//! One thread owns the database connection. Requests reach it through a bounded queue, and
//! it commits as many as are waiting in one transaction (group commit), answering each only
//! once its transaction is committed. The server's tasks never touch the database.

mod account;
mod backend;
mod error;
mod location;
mod message;
mod postgres;
mod schema;
mod sqlite;
mod store;
#[cfg(feature = "throwaway")]
pub mod throwaway;
mod writer;

pub use account::Account;
pub use error::{OpenError, StoreError};
pub use location::{BadLocation, Location};
pub use message::{EVERYONE, Logged, MessageId, Range, dm_includes, dm_target};
pub use schema::LATEST as SCHEMA_VERSION;
pub use store::{Options, Store, StoreStats};
