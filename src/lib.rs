//! Flotilla: a Kubernetes-style reconciling operator for Python pipelines on Docker hosts.
//!
//! The modules follow the data flow of `DESIGN.md`: [`resource`] (domain types and
//! validation) → [`store`] (sqlx) ← [`server`] (axum API); [`cli`] is a client of the API.

pub mod cli;
pub mod controller;
pub mod docker;
pub mod failpoint;
pub mod metrics;
pub mod migrate;
pub mod private_fs;
pub mod resource;
pub mod secrets;
pub mod server;
pub mod source;
pub mod store;
