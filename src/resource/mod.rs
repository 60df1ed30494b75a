//! Domain types: resource kinds, their specs, validation, manifest parsing and the
//! Fast-Flow import. Nothing in here performs I/O beyond reading files it is pointed at;
//! it never touches sqlx, bollard, git2 or axum.

pub mod kind;
pub mod object;

pub use kind::{API_VERSION, GROUP, Kind, VERSION};
pub use object::{
    Change, DEFAULT_NAMESPACE, DesiredObject, JsonText, ObjectKey, RawObject, StoredObject,
};
pub mod error;
pub mod fastflow;
pub mod graph;
pub mod manifest;
pub mod path;
pub mod quantity;
pub mod schedule_time;
pub mod types;
pub mod validate;
pub mod validate_notifier;
