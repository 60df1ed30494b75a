//! Sources of desired state: apply sets with a field manager ([`apply`]) and the
//! pipelines directory ([`dir`]).

pub mod apply;
pub mod dir;
