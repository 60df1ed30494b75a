//! Moving from another system to Flotilla: reading its stored state and writing the
//! equivalent resources, run history and logs into Flotilla's store.
//!
//! - [`fastflow`]: a Fast-Flow installation (`flotilla import fastflow`).

pub mod fastflow;
