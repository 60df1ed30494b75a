//! Table tests of apply planning ([`plan_apply`]): create, update, unchanged, prune,
//! ownership conflicts and `--force`, without a store.
//!
//! Stored objects are written the way the store keeps them (canonical JSON text: keys
//! sorted, no spaces) by hand; each row's expected items and writes follow from
//! DESIGN.md "Sources and ownership": a set creates, updates and — with prune — deletes
//! what its manager owned and no longer declares; an object owned by another manager is
//! a conflict naming both, unless forced; Runs are never pruned.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{Action, ApplyError, ApplyOptions, Existing, plan_apply};
use crate::resource::{Change, DesiredObject, Kind, ObjectKey, RawObject};

const DIR: &str = "dir:/srv/pipelines";
const GIT: &str = "git:https://example.com/pipelines.git#main";

fn key(kind: Kind, namespace: &str, name: &str) -> ObjectKey {
    ObjectKey::new(kind, namespace, name)
}

fn pipeline(name: &str) -> ObjectKey {
    key(Kind::Pipeline, "default", name)
}

/// A declared object with the given labels and annotations.
fn declared(
    key: ObjectKey,
    labels: &[(&str, &str)],
    annotations: &[(&str, &str)],
) -> DesiredObject {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    DesiredObject {
        key,
        labels: map(labels),
        annotations: map(annotations),
        spec: json!({"source": {"path": "etl"}, "timeout": "30m"}).into(),
    }
}

/// The text the store holds for [`declared`]'s spec.
const STORED_SPEC: &str = r#"{"source":{"path":"etl"},"timeout":"30m"}"#;

/// A stored object as text: `(labels, annotations, spec)` JSON texts.
fn stored(
    key: ObjectKey,
    manager: Option<&str>,
    resource_version: i64,
    texts: (&str, &str, &str),
) -> (ObjectKey, Existing) {
    let at = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).expect("valid");
    let raw = RawObject {
        key: key.clone(),
        uid: "3f1c0d2e-0000-4000-8000-000000000001".into(),
        generation: 1,
        resource_version,
        managed_by: manager.map(str::to_owned),
        labels: texts.0.into(),
        annotations: texts.1.into(),
        spec: texts.2.into(),
        status: None,
        created_at: at,
        updated_at: at,
    };
    (key, Existing::of(&raw))
}

/// Stored exactly as [`declared`] with no labels or annotations would be.
fn same_as_declared(key: ObjectKey, manager: Option<&str>, rv: i64) -> (ObjectKey, Existing) {
    stored(key, manager, rv, ("{}", "{}", STORED_SPEC))
}

fn options(prune: bool, force: bool) -> ApplyOptions {
    ApplyOptions {
        manager: DIR.into(),
        prune,
        force,
        dry_run: false,
        diff: false,
    }
}

struct Row {
    name: &'static str,
    desired: Vec<DesiredObject>,
    existing: Vec<(ObjectKey, Existing)>,
    options: ApplyOptions,
    /// `Kind/namespace/name action`, in outcome order.
    items: &'static [&'static str],
    /// `create|update|delete Kind/namespace/name [rv N] [by MANAGER]`, in order.
    changes: &'static [&'static str],
}

fn describe(change: &Change) -> String {
    match change {
        Change::Create {
            object,
            managed_by,
            status,
        } => {
            assert!(status.is_none(), "apply creates without a status");
            format!(
                "create {} by {}",
                object.key,
                managed_by.as_deref().unwrap_or("-")
            )
        }
        Change::Update {
            object,
            managed_by,
            expected_resource_version,
        } => format!(
            "update {} rv {expected_resource_version} by {}",
            object.key,
            managed_by.as_deref().unwrap_or("-")
        ),
        Change::Delete {
            key,
            expected_resource_version,
        } => format!("delete {key} rv {expected_resource_version}"),
    }
}

fn action(action: Action) -> &'static str {
    match action {
        Action::Created => "created",
        Action::Configured => "configured",
        Action::Unchanged => "unchanged",
        Action::Pruned => "pruned",
    }
}

fn check(row: Row) {
    let name = row.name;
    let declared: HashMap<ObjectKey, DesiredObject> = row
        .desired
        .iter()
        .map(|o| (o.key.clone(), o.clone()))
        .collect();
    let existing: HashMap<ObjectKey, Existing> = row.existing.into_iter().collect();
    let (outcome, changes) =
        plan_apply(row.desired, &existing, &row.options).unwrap_or_else(|e| panic!("{name}: {e}"));
    let items: Vec<String> = outcome
        .items
        .iter()
        .map(|i| format!("{}/{}/{} {}", i.kind, i.namespace, i.name, action(i.action)))
        .collect();
    assert_eq!(items, row.items, "{name}: items");
    let described: Vec<String> = changes.iter().map(describe).collect();
    assert_eq!(described, row.changes, "{name}: changes");
    for change in &changes {
        if let Change::Create { object, .. } | Change::Update { object, .. } = change {
            assert_eq!(
                Some(object),
                declared.get(&object.key),
                "{name}: the declared object is written as declared"
            );
        }
    }
    assert!(outcome.diff.is_empty(), "{name}: planning renders no diff");
    assert_eq!(outcome.dry_run, row.options.dry_run, "{name}: dry run");
}

#[test]
fn declared_objects_are_created_updated_or_left_alone() {
    let rows = [
        Row {
            name: "a new object is created under the manager",
            desired: vec![declared(pipeline("etl"), &[], &[])],
            existing: vec![],
            options: options(false, false),
            items: &["Pipeline/default/etl created"],
            changes: &["create Pipeline/default/etl by dir:/srv/pipelines"],
        },
        Row {
            name: "an object stored exactly as declared by the same manager is unchanged",
            desired: vec![declared(
                pipeline("etl"),
                &[("team", "data")],
                &[("owner", "ana")],
            )],
            existing: vec![stored(
                pipeline("etl"),
                Some(DIR),
                7,
                (r#"{"team":"data"}"#, r#"{"owner":"ana"}"#, STORED_SPEC),
            )],
            options: options(true, false),
            items: &["Pipeline/default/etl unchanged"],
            changes: &[],
        },
        Row {
            name: "a spec change is an update guarded by the stored resourceVersion",
            desired: vec![declared(pipeline("etl"), &[], &[])],
            existing: vec![stored(
                pipeline("etl"),
                Some(DIR),
                7,
                ("{}", "{}", r#"{"source":{"path":"etl"},"timeout":"10m"}"#),
            )],
            options: options(false, false),
            items: &["Pipeline/default/etl configured"],
            changes: &["update Pipeline/default/etl rv 7 by dir:/srv/pipelines"],
        },
        Row {
            name: "a label change alone is an update",
            desired: vec![declared(pipeline("etl"), &[("team", "data")], &[])],
            existing: vec![stored(
                pipeline("etl"),
                Some(DIR),
                9,
                (r#"{"team":"web"}"#, "{}", STORED_SPEC),
            )],
            options: options(false, false),
            items: &["Pipeline/default/etl configured"],
            changes: &["update Pipeline/default/etl rv 9 by dir:/srv/pipelines"],
        },
        Row {
            name: "an annotation change alone is an update",
            desired: vec![declared(pipeline("etl"), &[], &[("owner", "ana")])],
            existing: vec![same_as_declared(pipeline("etl"), Some(DIR), 4)],
            options: options(false, false),
            items: &["Pipeline/default/etl configured"],
            changes: &["update Pipeline/default/etl rv 4 by dir:/srv/pipelines"],
        },
        Row {
            name: "a removed label is an update",
            desired: vec![declared(pipeline("etl"), &[], &[])],
            existing: vec![stored(
                pipeline("etl"),
                Some(DIR),
                4,
                (r#"{"team":"data"}"#, "{}", STORED_SPEC),
            )],
            options: options(false, false),
            items: &["Pipeline/default/etl configured"],
            changes: &["update Pipeline/default/etl rv 4 by dir:/srv/pipelines"],
        },
        Row {
            name: "an object no manager owns is adopted (its manager is recorded)",
            desired: vec![declared(pipeline("etl"), &[], &[])],
            existing: vec![same_as_declared(pipeline("etl"), None, 3)],
            options: options(false, false),
            items: &["Pipeline/default/etl configured"],
            changes: &["update Pipeline/default/etl rv 3 by dir:/srv/pipelines"],
        },
        Row {
            name: "force takes over another manager's object, even with equal content",
            desired: vec![declared(pipeline("etl"), &[], &[])],
            existing: vec![same_as_declared(pipeline("etl"), Some(GIT), 12)],
            options: options(false, true),
            items: &["Pipeline/default/etl configured"],
            changes: &["update Pipeline/default/etl rv 12 by dir:/srv/pipelines"],
        },
        Row {
            name: "the same name in another namespace or kind is another object",
            desired: vec![
                declared(key(Kind::Pipeline, "team", "etl"), &[], &[]),
                declared(key(Kind::Schedule, "default", "etl"), &[], &[]),
            ],
            existing: vec![same_as_declared(pipeline("etl"), Some(GIT), 12)],
            options: options(false, false),
            items: &["Pipeline/team/etl created", "Schedule/default/etl created"],
            changes: &[
                "create Pipeline/team/etl by dir:/srv/pipelines",
                "create Schedule/default/etl by dir:/srv/pipelines",
            ],
        },
        Row {
            name: "items follow the set's order",
            desired: vec![
                declared(key(Kind::Schedule, "default", "zeta"), &[], &[]),
                declared(pipeline("alpha"), &[], &[]),
                declared(pipeline("beta"), &[], &[]),
            ],
            existing: vec![
                same_as_declared(pipeline("alpha"), Some(DIR), 2),
                same_as_declared(key(Kind::Schedule, "default", "zeta"), Some(DIR), 3),
            ],
            options: options(false, false),
            items: &[
                "Schedule/default/zeta unchanged",
                "Pipeline/default/alpha unchanged",
                "Pipeline/default/beta created",
            ],
            changes: &["create Pipeline/default/beta by dir:/srv/pipelines"],
        },
    ];
    for row in rows {
        check(row);
    }
}

#[test]
fn prune_deletes_only_what_the_manager_owned_and_no_longer_declares() {
    let rows = [
        Row {
            name: "an owned object the set no longer declares is pruned",
            desired: vec![declared(pipeline("kept"), &[], &[])],
            existing: vec![
                same_as_declared(pipeline("kept"), Some(DIR), 2),
                same_as_declared(pipeline("gone"), Some(DIR), 5),
            ],
            options: options(true, false),
            items: &[
                "Pipeline/default/kept unchanged",
                "Pipeline/default/gone pruned",
            ],
            changes: &["delete Pipeline/default/gone rv 5"],
        },
        Row {
            name: "without prune the undeclared object stays",
            desired: vec![declared(pipeline("kept"), &[], &[])],
            existing: vec![
                same_as_declared(pipeline("kept"), Some(DIR), 2),
                same_as_declared(pipeline("gone"), Some(DIR), 5),
            ],
            options: options(false, false),
            items: &["Pipeline/default/kept unchanged"],
            changes: &[],
        },
        Row {
            name: "runs, other managers' objects and unmanaged ones are never pruned",
            desired: vec![],
            existing: vec![
                same_as_declared(key(Kind::Run, "default", "etl-29453760"), Some(DIR), 8),
                same_as_declared(pipeline("theirs"), Some(GIT), 9),
                same_as_declared(pipeline("nobodys"), None, 10),
                same_as_declared(key(Kind::Secret, "default", "mine"), Some(DIR), 11),
            ],
            options: options(true, false),
            items: &["Secret/default/mine pruned"],
            changes: &["delete Secret/default/mine rv 11"],
        },
        Row {
            name: "a manager's name is matched exactly (a prefix is another manager)",
            desired: vec![],
            existing: vec![same_as_declared(
                pipeline("near"),
                Some("dir:/srv/pipelines-old"),
                3,
            )],
            options: options(true, false),
            items: &[],
            changes: &[],
        },
        Row {
            name: "pruned objects come after the declared ones, in kind, namespace, name order",
            desired: vec![declared(key(Kind::Schedule, "default", "new"), &[], &[])],
            existing: vec![
                same_as_declared(key(Kind::Secret, "default", "s"), Some(DIR), 21),
                same_as_declared(key(Kind::Pipeline, "team", "x"), Some(DIR), 22),
                same_as_declared(key(Kind::Schedule, "default", "b"), Some(DIR), 23),
                same_as_declared(key(Kind::Pipeline, "default", "y"), Some(DIR), 24),
            ],
            options: options(true, false),
            items: &[
                "Schedule/default/new created",
                "Pipeline/default/y pruned",
                "Pipeline/team/x pruned",
                "Schedule/default/b pruned",
                "Secret/default/s pruned",
            ],
            changes: &[
                "create Schedule/default/new by dir:/srv/pipelines",
                "delete Pipeline/default/y rv 24",
                "delete Pipeline/team/x rv 22",
                "delete Schedule/default/b rv 23",
                "delete Secret/default/s rv 21",
            ],
        },
        Row {
            name: "a dry run plans the same writes and says it is one",
            desired: vec![declared(pipeline("etl"), &[], &[])],
            existing: vec![same_as_declared(pipeline("old"), Some(DIR), 6)],
            options: ApplyOptions {
                dry_run: true,
                ..options(true, false)
            },
            items: &[
                "Pipeline/default/etl created",
                "Pipeline/default/old pruned",
            ],
            changes: &[
                "create Pipeline/default/etl by dir:/srv/pipelines",
                "delete Pipeline/default/old rv 6",
            ],
        },
    ];
    for row in rows {
        check(row);
    }
}

#[test]
fn an_object_of_another_manager_is_a_conflict_and_nothing_is_planned() {
    let cases: [(&str, Vec<DesiredObject>, bool); 3] = [
        ("alone", vec![declared(pipeline("etl"), &[], &[])], false),
        (
            "after an object that would be created",
            vec![
                declared(pipeline("new"), &[], &[]),
                declared(pipeline("etl"), &[], &[]),
            ],
            false,
        ),
        (
            "with prune",
            vec![declared(pipeline("etl"), &[], &[])],
            true,
        ),
    ];
    for (name, desired, prune) in cases {
        let existing: HashMap<ObjectKey, Existing> = [
            same_as_declared(pipeline("etl"), Some(GIT), 12),
            same_as_declared(pipeline("owned"), Some(DIR), 13),
        ]
        .into_iter()
        .collect();
        let error = plan_apply(desired, &existing, &options(prune, false))
            .expect_err("another manager's object must not be applied");
        match &error {
            ApplyError::Conflict {
                key,
                owner,
                manager,
            } => {
                assert_eq!(key, &pipeline("etl"), "{name}");
                assert_eq!(owner, GIT, "{name}");
                assert_eq!(manager, DIR, "{name}");
            }
            other => panic!("{name}: expected a conflict, got {other}"),
        }
        assert_eq!(error.code(), "resource.conflict", "{name}");
        let message = error.to_string();
        for fragment in ["Pipeline/default/etl", GIT, DIR, "--force"] {
            assert!(message.contains(fragment), "{name}: {message}");
        }
    }
}

#[test]
fn a_declared_spec_in_another_key_order_is_unchanged() {
    // The store keeps canonical text (keys sorted) and the planner compares texts: a
    // manifest that lists the same keys in another order changes nothing.
    let desired = DesiredObject {
        spec: serde_json::from_str::<Value>(r#"{"timeout":"30m","source":{"path":"etl"}}"#)
            .expect("json")
            .into(),
        ..declared(pipeline("etl"), &[], &[])
    };
    let existing: HashMap<ObjectKey, Existing> = [same_as_declared(pipeline("etl"), Some(DIR), 2)]
        .into_iter()
        .collect();
    let (outcome, changes) =
        plan_apply(vec![desired], &existing, &options(false, false)).expect("plan");
    assert_eq!(outcome.items[0].action, Action::Unchanged);
    assert!(changes.is_empty());
}
