//! Downstream triggers: the runs a finished run starts (its pipeline's `triggers`).
//!
//! Exactly once per parent outcome, by construction rather than by bookkeeping: the
//! started runs are created in the same store transaction as the parent's final status
//! ([`crate::store::Store::finish_run`]). Before that write nothing exists; after it,
//! both do. An operator killed in between observes the parent unfinished again, decides
//! the same end and writes both; names derived from the parent's uid make a repeated
//! create (by a replica) a no-op.
//!
//! Pure: the caller reads the started pipelines and schedules first.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::resource::kind::Kind;
use crate::resource::object::{DesiredObject, JsonText, ObjectKey};
use crate::resource::types::LocalRef;
use crate::resource::types::{DownstreamTrigger, RunPhase, RunSpec, Trigger, run_name};

/// On a run started by a trigger: how many runs precede it in its chain (1 for the run
/// a run started by hand or by a schedule starts).
pub const DEPTH_ANNOTATION: &str = "flotilla.dev/trigger-depth";

/// Chain length past which no further run is started (`--max-trigger-depth`), so a
/// loop that apply-time cycle checks could not see (pipelines applied concurrently)
/// still ends.
pub const DEFAULT_MAX_DEPTH: u32 = 32;

/// Where a run's route directory is mounted, when its pipeline routes on a label.
pub const ROUTE_DIR: &str = "/run/flotilla";

/// Where the script writes its route label, when its pipeline routes on one.
pub const ROUTE_FILE: &str = "/run/flotilla/route";

/// Where `$FLOTILLA_ROUTE_FILE` points when no trigger reads a route: a file the run may
/// write that nobody reads.
pub const UNREAD_ROUTE_FILE: &str = "/tmp/.flotilla-route";

/// The run that ended.
#[derive(Clone, Debug)]
pub struct Parent<'a> {
    /// Its namespace.
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its uid (names the started runs).
    pub uid: &'a str,
    /// Its pipeline.
    pub pipeline: &'a str,
    /// How it ended.
    pub phase: RunPhase,
    /// The label its last attempt wrote.
    pub route: Option<&'a str>,
    /// Its own depth ([`DEPTH_ANNOTATION`], 0 when absent).
    pub depth: u32,
}

/// The triggers that fire for a run that ended in `phase` having written `route`, with
/// their index. A trigger with a route fires only on success with exactly that label,
/// never as a fallback (Fast-Flow's rule); a cancelled run fires nothing.
pub fn fired(
    triggers: &[DownstreamTrigger],
    phase: RunPhase,
    route: Option<&str>,
) -> Vec<(usize, DownstreamTrigger)> {
    triggers
        .iter()
        .enumerate()
        .filter(|(_, t)| match &t.route {
            Some(wanted) => phase == RunPhase::Succeeded && route == Some(wanted.as_str()),
            None => t.when.matches(phase),
        })
        .map(|(i, t)| (i, t.clone()))
        .collect()
}

/// True when some trigger reads the route label, so the run needs a route file.
pub fn reads_route(triggers: &[DownstreamTrigger]) -> bool {
    triggers.iter().any(|t| t.route.is_some())
}

/// The name of the run trigger `index` starts for `parent_uid`: the same on every try.
pub fn child_name(parent_uid: &str, index: usize, pipeline: &str) -> String {
    let digest = Sha256::digest(format!("{parent_uid}/{index}/{pipeline}"));
    run_name(pipeline, &format!("t{}", &hex::encode(digest)[..9]))
}

/// Reads a route label as the script wrote it: the first line, trimmed; nothing when
/// empty or longer than a label may be.
pub fn route_label(written: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(written);
    let line = text.lines().next()?.trim();
    (!line.is_empty() && line.len() <= crate::resource::validate::MAX_ROUTE_LEN)
        .then(|| line.to_owned())
}

/// The run of `pipeline` (the trigger's, or the one its schedule runs) that trigger
/// `index` starts after `parent`, with `schedule_env` (the env of the trigger's
/// schedule, read by the caller) under the trigger's own env.
pub fn child(
    parent: &Parent<'_>,
    index: usize,
    trigger: &DownstreamTrigger,
    pipeline: &str,
    schedule_env: Option<&BTreeMap<String, String>>,
) -> DesiredObject {
    let mut env = schedule_env.cloned().unwrap_or_default();
    env.extend(trigger.env.clone());
    env.insert("FLOTILLA_UPSTREAM_RUN".into(), parent.name.into());
    env.insert("FLOTILLA_UPSTREAM_PIPELINE".into(), parent.pipeline.into());
    env.insert(
        "FLOTILLA_UPSTREAM_PHASE".into(),
        format!("{:?}", parent.phase),
    );
    if let Some(route) = parent.route {
        env.insert("FLOTILLA_UPSTREAM_ROUTE".into(), route.into());
    }
    let spec = RunSpec {
        pipeline_ref: LocalRef {
            name: pipeline.to_owned(),
        },
        trigger: Trigger::Downstream,
        triggered_by: Some(format!("run/{}", parent.name)),
        env,
        ..RunSpec::default()
    };
    let spec = serde_json::to_value(spec).unwrap_or_default();
    DesiredObject {
        key: ObjectKey::new(
            Kind::Run,
            parent.namespace,
            child_name(parent.uid, index, pipeline),
        ),
        labels: BTreeMap::new(),
        annotations: BTreeMap::from([(
            DEPTH_ANNOTATION.to_owned(),
            (parent.depth + 1).to_string(),
        )]),
        spec: JsonText::of(&spec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::resource::types::TriggerWhen;

    fn trigger(pipeline: &str, when: TriggerWhen, route: Option<&str>) -> DownstreamTrigger {
        DownstreamTrigger {
            pipeline: pipeline.into(),
            when,
            route: route.map(Into::into),
            ..DownstreamTrigger::default()
        }
    }

    fn names(fired: &[(usize, DownstreamTrigger)]) -> Vec<&str> {
        fired.iter().map(|(_, t)| t.pipeline.as_str()).collect()
    }

    #[test]
    fn outcomes_select_their_triggers() {
        let triggers = [
            trigger("on-ok", TriggerWhen::Succeeded, None),
            trigger("on-fail", TriggerWhen::Failed, None),
            trigger("always", TriggerWhen::Finished, None),
            trigger("daily", TriggerWhen::Succeeded, Some("daily")),
        ];
        assert_eq!(
            names(&fired(&triggers, RunPhase::Succeeded, None)),
            ["on-ok", "always"]
        );
        assert_eq!(
            names(&fired(&triggers, RunPhase::Failed, Some("daily"))),
            ["on-fail", "always"],
            "a route counts only on success"
        );
        assert_eq!(
            names(&fired(&triggers, RunPhase::Succeeded, Some("daily"))),
            ["on-ok", "always", "daily"]
        );
        assert!(fired(&triggers, RunPhase::Cancelled, Some("daily")).is_empty());
        assert_eq!(
            names(&fired(&triggers, RunPhase::Succeeded, Some("weekly"))),
            ["on-ok", "always"],
            "a route trigger is no fallback"
        );
    }

    #[test]
    fn child_names_are_stable_and_distinct() {
        let a = child_name("uid-1", 0, "load");
        assert_eq!(a, child_name("uid-1", 0, "load"));
        assert_ne!(a, child_name("uid-1", 1, "load"));
        assert_ne!(a, child_name("uid-2", 0, "load"));
        assert!(a.starts_with("load-t") && a.len() == "load-t".len() + 9);
        let long = child_name("uid-1", 0, &"p".repeat(63));
        assert!(long.len() <= 63, "{long}");
    }

    #[test]
    fn route_labels_are_first_lines() {
        assert_eq!(route_label(b"daily\n").as_deref(), Some("daily"));
        assert_eq!(
            route_label(b"  weekly  \nignored").as_deref(),
            Some("weekly")
        );
        assert_eq!(route_label(b""), None);
        assert_eq!(route_label(b"\n"), None);
        assert_eq!(route_label("x".repeat(300).as_bytes()), None);
    }

    #[test]
    fn a_child_carries_its_parent() {
        let parent = Parent {
            namespace: "default",
            name: "extract-abc",
            uid: "u-1",
            pipeline: "extract",
            phase: RunPhase::Succeeded,
            route: Some("daily"),
            depth: 2,
        };
        let mut t = trigger("load", TriggerWhen::Succeeded, Some("daily"));
        t.env = BTreeMap::from([("MODE".into(), "trigger".into())]);
        let schedule_env = BTreeMap::from([
            ("MODE".into(), "schedule".into()),
            ("REGION".into(), "eu".into()),
        ]);
        let child = child(&parent, 3, &t, "load", Some(&schedule_env));
        assert_eq!(child.key.name, child_name("u-1", 3, "load"));
        assert_eq!(child.annotations[DEPTH_ANNOTATION], "3");
        let spec: RunSpec =
            serde_json::from_str(child.spec.as_str()).expect("the spec is a RunSpec");
        assert_eq!(spec.trigger, Trigger::Downstream);
        assert_eq!(spec.triggered_by.as_deref(), Some("run/extract-abc"));
        assert_eq!(spec.env["MODE"], "trigger", "the trigger's env wins");
        assert_eq!(spec.env["REGION"], "eu");
        assert_eq!(spec.env["FLOTILLA_UPSTREAM_ROUTE"], "daily");
        assert_eq!(spec.env["FLOTILLA_UPSTREAM_PHASE"], "Succeeded");
    }
}
