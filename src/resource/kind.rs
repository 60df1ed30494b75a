//! The kinds of resource Flotilla knows, and the names users may call them by.

use std::fmt;

use serde::{Deserialize, Serialize};

/// API group of every Flotilla resource.
pub const GROUP: &str = "flotilla.dev";
/// API version of every Flotilla resource.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` value of every Flotilla resource.
pub const API_VERSION: &str = "flotilla.dev/v1alpha1";

/// A resource kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// A folder with `main.py`, run in a container with uv.
    Pipeline,
    /// When a pipeline runs: cron, interval or one shot.
    Schedule,
    /// Encrypted values injected into runs.
    Secret,
    /// One execution of a pipeline (with its attempts).
    Run,
    /// Who is told about failed runs and other events, and through which channels.
    Notifier,
}

impl Kind {
    /// Every kind, in the order an apply set is written (referenced kinds first).
    pub const ALL: [Kind; 5] = [
        Kind::Secret,
        Kind::Pipeline,
        Kind::Schedule,
        Kind::Run,
        Kind::Notifier,
    ];

    /// The kind as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pipeline => "Pipeline",
            Kind::Schedule => "Schedule",
            Kind::Secret => "Secret",
            Kind::Run => "Run",
            Kind::Notifier => "Notifier",
        }
    }

    /// Lower-case plural, as used in API paths.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pipeline => "pipelines",
            Kind::Schedule => "schedules",
            Kind::Secret => "secrets",
            Kind::Run => "runs",
            Kind::Notifier => "notifiers",
        }
    }

    /// Lower-case singular.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Pipeline => "pipeline",
            Kind::Schedule => "schedule",
            Kind::Secret => "secret",
            Kind::Run => "run",
            Kind::Notifier => "notifier",
        }
    }

    /// kubectl-style short name.
    pub fn short_name(self) -> &'static str {
        match self {
            Kind::Pipeline => "pl",
            Kind::Schedule => "sched",
            Kind::Secret => "sec",
            Kind::Run => "rn",
            Kind::Notifier => "ntf",
        }
    }

    /// Parses a kind from its `kind:` spelling exactly.
    pub fn from_kind_field(value: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == value)
    }

    /// Parses what a user typed on the command line or in a path: singular, plural,
    /// short name or `Kind`, case-insensitively.
    pub fn from_user(value: &str) -> Option<Kind> {
        let lower = value.to_ascii_lowercase();
        Kind::ALL
            .into_iter()
            .find(|k| lower == k.singular() || lower == k.plural() || lower == k.short_name())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_spellings_resolve() {
        for (typed, kind) in [
            ("pipeline", Kind::Pipeline),
            ("pipelines", Kind::Pipeline),
            ("pl", Kind::Pipeline),
            ("Pipeline", Kind::Pipeline),
            ("sched", Kind::Schedule),
            ("schedules", Kind::Schedule),
            ("secret", Kind::Secret),
            ("runs", Kind::Run),
            ("notifiers", Kind::Notifier),
            ("ntf", Kind::Notifier),
        ] {
            assert_eq!(Kind::from_user(typed), Some(kind), "{typed}");
        }
        assert_eq!(Kind::from_user("pods"), None);
    }
}
