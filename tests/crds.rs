//! `flotilla crds`: every document is a Kubernetes `CustomResourceDefinition` of group
//! `flotilla.dev`, version `v1alpha1`, with a structural schema (the rules the API server
//! enforces for `apiextensions.k8s.io/v1`), and the output is exactly what is committed
//! under `crds/`, so CI notices drift.

#[allow(dead_code)]
mod support;

use std::collections::BTreeSet;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Map, Value};
use support::server::{assert_exit, run_cli, stdout};

/// The committed CRDs, relative to the crate root.
const COMMITTED: &str = "crds/flotilla.yaml";

fn crds_text() -> String {
    let output = run_cli(&["crds"], b"", &[]);
    assert_exit(&output, 0);
    stdout(&output)
}

/// Every document of the output as JSON.
fn crd_values() -> Vec<Value> {
    let text = crds_text();
    let values: Vec<Value> = serde_saphyr::from_multiple(&text).expect("crds output is YAML");
    assert!(!values.is_empty(), "no documents in:\n{text}");
    values
}

fn typed(value: &Value) -> CustomResourceDefinition {
    serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("not a CustomResourceDefinition: {e}\n{value:#}"))
}

#[test]
fn every_document_is_a_crd_of_group_flotilla_dev_v1alpha1() {
    let values = crd_values();
    let mut kinds = BTreeSet::new();
    for value in &values {
        assert_eq!(value["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(value["kind"], "CustomResourceDefinition");
        let crd = typed(value);
        let spec = &crd.spec;
        assert_eq!(spec.group, "flotilla.dev");
        assert_eq!(spec.scope, "Namespaced", "{}", spec.names.kind);
        let names = &spec.names;
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some(format!("{}.flotilla.dev", names.plural).as_str()),
            "a CRD's name is <plural>.<group>"
        );
        assert_eq!(
            names.singular.as_deref(),
            Some(names.kind.to_lowercase().as_str())
        );
        assert_eq!(names.plural, format!("{}s", names.kind.to_lowercase()));
        assert!(
            names.short_names.as_ref().is_some_and(|s| !s.is_empty()),
            "{} has no short name",
            names.kind
        );
        assert_eq!(spec.versions.len(), 1, "{}", names.kind);
        let version = &spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version.served && version.storage, "{}", names.kind);
        assert!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some()),
            "{}: status is written separately from spec, so it must be a subresource",
            names.kind
        );
        assert!(
            version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .is_some(),
            "{} has no schema",
            names.kind
        );
        assert!(
            kinds.insert(names.kind.clone()),
            "{} defined twice",
            names.kind
        );
    }
    let expected: BTreeSet<String> = ["Notifier", "Pipeline", "Run", "Schedule", "Secret"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(kinds, expected);
}

#[test]
fn short_names_match_the_cli() {
    for value in crd_values() {
        let crd = typed(&value);
        let kind =
            flotilla::resource::Kind::from_kind_field(&crd.spec.names.kind).expect("known kind");
        assert_eq!(crd.spec.names.plural, kind.plural());
        assert_eq!(
            crd.spec.names.short_names,
            Some(vec![kind.short_name().to_owned()]),
            "{kind}"
        );
    }
}

#[test]
fn every_schema_is_structural() {
    for value in crd_values() {
        let kind = value["spec"]["names"]["kind"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let schema = &value["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        let mut problems = Vec::new();
        check_root(schema, &mut problems);
        assert!(
            problems.is_empty(),
            "{kind} schema is not structural:\n{}",
            problems.join("\n")
        );
    }
}

#[test]
fn printer_columns_point_at_fields_of_the_schema() {
    for value in crd_values() {
        let kind = value["spec"]["names"]["kind"]
            .as_str()
            .unwrap_or("?")
            .to_owned();
        let version = &value["spec"]["versions"][0];
        let schema = &version["schema"]["openAPIV3Schema"];
        for column in version["additionalPrinterColumns"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let path = column["jsonPath"].as_str().expect("jsonPath");
            let mut node = schema;
            for segment in path.trim_start_matches('.').split('.') {
                node = &node["properties"][segment];
                assert!(
                    node.is_object(),
                    "{kind}: column {path} names no field of the schema"
                );
            }
            assert_eq!(node["type"], column["type"], "{kind}: column {path}");
        }
    }
}

#[test]
fn the_examples_conform_to_the_crd_schemas() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let schemas: Vec<(String, Value)> = crd_values()
        .into_iter()
        .map(|v| {
            (
                v["spec"]["names"]["kind"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                v["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone(),
            )
        })
        .collect();
    let mut checked = 0;
    for entry in std::fs::read_dir(examples).expect("examples dir").flatten() {
        let manifest = entry.path().join("pipeline.yaml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text).expect("example is YAML");
        for document in documents.iter().filter(|d| !d.is_null()) {
            let kind = document["kind"].as_str().expect("kind");
            let (_, schema) = schemas
                .iter()
                .find(|(k, _)| k == kind)
                .unwrap_or_else(|| panic!("no CRD for {kind}"));
            let mut problems = Vec::new();
            // The API server checks spec and status; metadata is its own business.
            let mut object = document.clone();
            if let Some(map) = object.as_object_mut() {
                map.remove("metadata");
                map.remove("apiVersion");
                map.remove("kind");
            }
            conforms(schema, &object, "", &mut problems);
            assert!(
                problems.is_empty(),
                "{} ({kind}) does not conform to its CRD:\n{}",
                manifest.display(),
                problems.join("\n")
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no example manifests found under {examples}");
}

#[test]
fn the_output_equals_the_committed_crds() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} cannot be read ({e}); run `make crds`", path.display()));
    let generated = crds_text();
    assert!(
        committed == generated,
        "{COMMITTED} differs from `flotilla crds`; regenerate it with `make crds` (flotilla crds > {COMMITTED}) and commit it"
    );
}

// ---------------------------------------------------------------- structural schema rules

/// JSON Schema keywords apiextensions.k8s.io/v1 refuses in a CRD schema.
const UNSUPPORTED: &[&str] = &[
    "$ref",
    "$schema",
    "id",
    "$id",
    "definitions",
    "$defs",
    "dependencies",
    "additionalItems",
    "patternProperties",
    "const",
    "if",
    "then",
    "else",
    "examples",
];

/// Keywords a schema inside `allOf`/`anyOf`/`oneOf`/`not` may not set.
const FORBIDDEN_IN_JUNCTORS: &[&str] = &[
    "description",
    "type",
    "default",
    "additionalProperties",
    "nullable",
];

const JUNCTORS: &[&str] = &["allOf", "anyOf", "oneOf", "not"];

const TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

fn check_root(schema: &Value, problems: &mut Vec<String>) {
    if schema["type"] != "object" {
        problems.push("<root>: type must be object".to_owned());
    }
    if let Some(metadata) = schema["properties"].get("metadata") {
        // Only metadata.name and metadata.generateName may be restricted.
        let allowed: BTreeSet<&str> = ["type", "properties", "description"].into();
        for key in metadata.as_object().into_iter().flat_map(Map::keys) {
            if !allowed.contains(key.as_str()) {
                problems.push(format!("metadata: {key} is not allowed"));
            }
        }
        for field in metadata["properties"]
            .as_object()
            .into_iter()
            .flat_map(Map::keys)
        {
            if field != "name" && field != "generateName" {
                problems.push(format!(
                    "metadata.{field}: only name and generateName may be restricted"
                ));
            }
        }
    }
    check_node(schema, "<root>", problems);
}

/// Checks one node of the schema tree (a property, an additionalProperties or an items
/// schema) and everything below it.
fn check_node(node: &Value, path: &str, problems: &mut Vec<String>) {
    let Some(map) = node.as_object() else {
        problems.push(format!("{path}: must be a schema object, found {node}"));
        return;
    };
    check_keywords(map, path, problems);
    let int_or_string = flag(map, "x-kubernetes-int-or-string", path, problems);
    let preserve_unknown = flag(map, "x-kubernetes-preserve-unknown-fields", path, problems);
    match map.get("type") {
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => {
            if int_or_string {
                problems.push(format!(
                    "{path}: x-kubernetes-int-or-string must not set a type"
                ));
            }
        }
        Some(other) => problems.push(format!("{path}: type {other} is not one of {TYPES:?}")),
        None if int_or_string || preserve_unknown => {}
        None => problems.push(format!("{path}: every node needs a type")),
    }
    let node_type = map.get("type").and_then(Value::as_str);
    if map.contains_key("nullable") && node_type.is_none() {
        problems.push(format!("{path}: nullable is only allowed alongside a type"));
    }
    if map.get("uniqueItems") == Some(&Value::Bool(true)) {
        problems.push(format!("{path}: uniqueItems must not be true"));
    }
    if map.contains_key("properties") && map.contains_key("additionalProperties") {
        problems.push(format!(
            "{path}: properties and additionalProperties are mutually exclusive"
        ));
    }
    if (map.contains_key("properties")
        || map.contains_key("additionalProperties")
        || map.contains_key("required"))
        && node_type.is_some_and(|t| t != "object")
    {
        problems.push(format!(
            "{path}: object keywords on a node of type {node_type:?}"
        ));
    }
    if node_type == Some("array") && !map.contains_key("items") {
        problems.push(format!("{path}: an array needs items"));
    }
    for value in map
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if !value.is_null() && !has_type(value, node_type) {
            problems.push(format!(
                "{path}: enum value {value} is not of type {node_type:?}"
            ));
        }
    }
    if let Some(default) = map.get("default") {
        if !has_type(default, node_type) {
            problems.push(format!(
                "{path}: default {default} is not of type {node_type:?}"
            ));
        }
        if let Some(options) = map.get("enum").and_then(Value::as_array)
            && !options.contains(default)
        {
            problems.push(format!("{path}: default {default} is not in the enum"));
        }
    }
    let properties = map.get("properties").and_then(Value::as_object);
    for required in map
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let named = required
            .as_str()
            .and_then(|name| properties.and_then(|p| p.get(name)));
        if named.is_none() {
            problems.push(format!("{path}: required {required} is not a property"));
        }
    }
    for (name, child) in properties.into_iter().flatten() {
        check_node(child, &format!("{path}.{name}"), problems);
    }
    match map.get("additionalProperties") {
        None => {}
        Some(Value::Object(_)) => {
            check_node(&map["additionalProperties"], &format!("{path}.additionalProperties"), problems);
        }
        Some(other) => problems.push(format!(
            "{path}: additionalProperties must be a schema, found {other} (use x-kubernetes-preserve-unknown-fields)"
        )),
    }
    match map.get("items") {
        None => {}
        Some(Value::Object(_)) => check_node(&map["items"], &format!("{path}[*]"), problems),
        Some(other) => problems.push(format!("{path}: items must be one schema, found {other}")),
    }
    for junctor in JUNCTORS {
        let branches: Vec<&Value> = match map.get(*junctor) {
            None => continue,
            Some(Value::Array(items)) => items.iter().collect(),
            Some(single) => vec![single],
        };
        for (i, branch) in branches.into_iter().enumerate() {
            check_junctor_branch(
                branch,
                map,
                int_or_string,
                &format!("{path}.{junctor}[{i}]"),
                problems,
            );
        }
    }
}

/// A branch of `allOf`/`anyOf`/`oneOf`/`not` may only restrict what the node itself
/// already specifies, and may not carry types (except the int-or-string pattern).
fn check_junctor_branch(
    branch: &Value,
    owner: &Map<String, Value>,
    int_or_string: bool,
    path: &str,
    problems: &mut Vec<String>,
) {
    let Some(map) = branch.as_object() else {
        problems.push(format!("{path}: must be a schema object"));
        return;
    };
    check_keywords(map, path, problems);
    for key in FORBIDDEN_IN_JUNCTORS {
        let int_or_string_type = *key == "type"
            && int_or_string
            && matches!(
                map.get("type").and_then(Value::as_str),
                Some("integer" | "string")
            );
        if map.contains_key(*key) && !int_or_string_type {
            problems.push(format!("{path}: {key} must not be set inside a junctor"));
        }
    }
    for key in map.keys().filter(|k| k.starts_with("x-kubernetes-")) {
        problems.push(format!("{path}: {key} must not be set inside a junctor"));
    }
    let outside = owner.get("properties").and_then(Value::as_object);
    for (name, child) in map
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        match outside.and_then(|o| o.get(name)) {
            Some(_) => check_junctor_branch(
                child,
                &Map::new(),
                false,
                &format!("{path}.{name}"),
                problems,
            ),
            None => problems.push(format!(
                "{path}: property {name} is not specified outside the junctor"
            )),
        }
    }
    if map.contains_key("items") && !owner.contains_key("items") {
        problems.push(format!(
            "{path}: items are not specified outside the junctor"
        ));
    }
    for junctor in JUNCTORS {
        let nested: Vec<&Value> = match map.get(*junctor) {
            None => continue,
            Some(Value::Array(items)) => items.iter().collect(),
            Some(single) => vec![single],
        };
        for (i, inner) in nested.into_iter().enumerate() {
            check_junctor_branch(
                inner,
                owner,
                int_or_string,
                &format!("{path}.{junctor}[{i}]"),
                problems,
            );
        }
    }
}

fn check_keywords(map: &Map<String, Value>, path: &str, problems: &mut Vec<String>) {
    for key in UNSUPPORTED {
        if map.contains_key(*key) {
            problems.push(format!("{path}: {key} is not supported in a CRD schema"));
        }
    }
}

/// An `x-kubernetes-*` flag: absent (false) or `true`; `false` is refused.
fn flag(map: &Map<String, Value>, key: &str, path: &str, problems: &mut Vec<String>) -> bool {
    match map.get(key) {
        None => false,
        Some(Value::Bool(true)) => true,
        Some(other) => {
            problems.push(format!(
                "{path}: {key} must be true or absent, found {other}"
            ));
            false
        }
    }
}

fn has_type(value: &Value, node_type: Option<&str>) -> bool {
    match node_type {
        None => true,
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some("array") => value.is_array(),
        Some("object") => value.is_object(),
        Some(_) => false,
    }
}

// ---------------------------------------------------------------- a tiny schema validator

/// Validates `value` against the structural subset of OpenAPI v3 the schemas use: type,
/// nullable, enum, properties (unknown fields are errors, as Flotilla itself rejects
/// them), additionalProperties, items, required.
fn conforms(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    let here = if path.is_empty() { "<root>" } else { path };
    if value.is_null() {
        if schema["nullable"] != true {
            problems.push(format!("{here}: null is not allowed"));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_string() || value.is_i64() || value.is_u64()) {
            problems.push(format!("{here}: expected an integer or a string"));
        }
        return;
    }
    let node_type = schema["type"].as_str();
    if !has_type(value, node_type) {
        problems.push(format!("{here}: {value} is not of type {node_type:?}"));
        return;
    }
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(value)
    {
        problems.push(format!("{here}: {value} is not one of {options:?}"));
    }
    match value {
        Value::Object(fields) => {
            for required in schema["required"].as_array().into_iter().flatten() {
                if let Some(name) = required.as_str()
                    && !fields.contains_key(name)
                {
                    problems.push(format!("{here}: required field {name} is missing"));
                }
            }
            for (name, child) in fields {
                let child_path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                if let Some(property) = schema["properties"].get(name) {
                    conforms(property, child, &child_path, problems);
                } else if schema["additionalProperties"].is_object() {
                    conforms(
                        &schema["additionalProperties"],
                        child,
                        &child_path,
                        problems,
                    );
                } else if schema["x-kubernetes-preserve-unknown-fields"] != true {
                    problems.push(format!("{child_path}: unknown field"));
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                conforms(&schema["items"], item, &format!("{here}[{i}]"), problems);
            }
        }
        _ => {}
    }
}

#[test]
fn the_checker_catches_non_structural_schemas() {
    let bad: Value = serde_json::json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "untyped": { "description": "no type" },
                    "ref": { "$ref": "#/definitions/Other" },
                    "nullableOnly": { "nullable": true },
                    "choice": { "type": "string", "anyOf": [ { "type": "string" }, { "type": "integer" } ] },
                    "list": { "type": "array", "items": [ { "type": "string" } ] },
                    "set": { "type": "array", "items": { "type": "string" }, "uniqueItems": true },
                    "both": { "type": "object", "properties": { "a": { "type": "string" } }, "additionalProperties": { "type": "string" } },
                    "ok": { "x-kubernetes-int-or-string": true, "anyOf": [ { "type": "integer" }, { "type": "string" } ] },
                    "free": { "x-kubernetes-preserve-unknown-fields": true }
                }
            }
        }
    });
    let mut problems = Vec::new();
    check_root(&bad, &mut problems);
    let text = problems.join("\n");
    for expected in [
        ".untyped: every node needs a type",
        ".ref: $ref is not supported",
        ".nullableOnly: nullable is only allowed alongside a type",
        ".choice.anyOf[0]: type must not be set inside a junctor",
        ".list: items must be one schema",
        ".set: uniqueItems must not be true",
        ".both: properties and additionalProperties are mutually exclusive",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        !text.contains(".ok"),
        "the int-or-string pattern is structural:\n{text}"
    );
    assert!(
        !text.contains(".free"),
        "preserve-unknown-fields needs no type:\n{text}"
    );
}
