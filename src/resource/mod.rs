//! Domain types: resource kinds, their specs, validation, manifest parsing and the
//! Fast-Flow import. Nothing in here performs I/O beyond reading files it is pointed at;
//! it never touches sqlx, bollard, git2 or axum.

pub mod kind;
pub mod object;

pub use kind::{API_VERSION, GROUP, Kind, VERSION};
pub use object::{Change, DEFAULT_NAMESPACE, DesiredObject, ObjectKey, StoredObject};
pub mod quantity;
pub mod types;
pub mod error;
pub mod manifest;
pub mod schedule_time;
pub mod validate;
// TEMPORARY until fastflow.rs lands.
#[doc(hidden)]
pub fn fastflow_pending(_: &std::path::Path, folder: &str) -> Result<FastFlowPending, error::ManifestError> {
    Err(error::ManifestError::file(folder, "Fast-Flow import pending"))
}
#[doc(hidden)]
pub struct FastFlowPending { pub documents: Vec<manifest::Document>, pub warnings: Vec<String> }
