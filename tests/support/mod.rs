//! Helpers shared by integration tests: real services started per test, no mocks.

pub mod browser;
pub mod docker;
pub mod git;
pub mod http;
pub mod postgres;
pub mod scenario;
pub mod server;
pub mod store;
