//! Controllers: reconcilers that converge stored desired state with the world.
//! The decision functions are pure; adapters (the container runtime, the store) are
//! reached through small interfaces.

pub mod leader;
pub mod notify;
pub mod queue;
pub mod retention;
pub mod run;
pub mod runtime;
pub mod schedule;
