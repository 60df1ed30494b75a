//! Sources of desired state: apply sets with a field manager ([`apply`]) and the
//! pipelines directory ([`dir`]) and a git branch ([`git`]).

pub mod apply;
pub mod dir;
pub mod git;
