//! Reading YAML manifests: multi-document files become JSON values plus an index from
//! field path (`spec.resources.memory`) to line and column, so every later error can
//! point at the place in the file.
//!
//! Parsing is bounded: the input size, the number of documents and nodes, and alias
//! expansion (billion laughs) are all capped before any of it is materialised.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;

use super::error::ManifestError;

/// Largest manifest text accepted in one file or request.
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024 * 1024;

/// Most documents accepted in one file or request.
pub const MAX_DOCUMENTS: usize = 100_000;

/// Line and column (both 1-based) of a node in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
}

/// One YAML document of a file, as JSON. Positions of its fields are computed only
/// when an error needs one: the file is parsed a second time, with spans, on demand.
///
/// The content is kept as compact JSON text and parsed again by [`Document::value`]: a
/// parsed tree of a small manifest takes ten times the memory of its text, and an apply
/// of 10,000 documents would otherwise hold every tree at once.
#[derive(Clone, Debug)]
pub struct Document {
    /// File name as given by the caller (`examples/hello.yaml`, `<stdin>`).
    pub file: String,
    /// 1-based index of the document within its file.
    pub index: usize,
    json: Box<str>,
    kind: Option<Box<str>>,
    source: Option<Arc<SourceText>>,
}

/// The text of a parsed file and, once asked for, the positions of its documents.
#[derive(Debug)]
struct SourceText {
    text: Arc<str>,
    located: OnceLock<Vec<Located>>,
}

/// Positions of one document: its root and every field path.
#[derive(Debug, Default)]
struct Located {
    root: Option<Position>,
    fields: HashMap<String, Position>,
}

impl SourceText {
    fn located(&self, index: usize) -> Option<&Located> {
        self.located
            .get_or_init(|| {
                let roots: Vec<Spanned<Node>> =
                    serde_saphyr::from_multiple_with_options(&self.text, parse_options())
                        .unwrap_or_default();
                roots
                    .into_iter()
                    .map(|root| {
                        let mut fields = HashMap::new();
                        let at = Position {
                            line: root.referenced.line(),
                            column: root.referenced.column(),
                        };
                        flatten(root, String::new(), None, &mut fields);
                        Located {
                            root: Some(at),
                            fields,
                        }
                    })
                    .collect()
            })
            .get(index.checked_sub(1)?)
    }
}

impl Document {
    /// Wraps a value that did not come from YAML text (Fast-Flow JSON, API bodies):
    /// errors will name the file but no line.
    pub fn synthetic(file: impl Into<String>, index: usize, value: Value) -> Self {
        Self::new(file.into(), index, &value, None)
    }

    fn new(file: String, index: usize, value: &Value, source: Option<Arc<SourceText>>) -> Self {
        Self {
            file,
            index,
            json: value.to_string().into_boxed_str(),
            kind: value["kind"].as_str().map(Box::from),
            source,
        }
    }

    /// The document's content (parsed anew on every call).
    pub fn value(&self) -> Value {
        // The text was written by `Value::to_string`, so it always parses.
        serde_json::from_str(&self.json).unwrap_or_default()
    }

    /// The document's `kind` field, when it is a string.
    pub fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }

    /// Position of the document's root node.
    pub fn position(&self) -> Option<Position> {
        self.source
            .as_ref()?
            .located(self.index)?
            .root
            .filter(|p| p.line > 0)
    }

    /// Position of a field path such as `spec.secretRefs[0].name`, falling back to the
    /// closest ancestor that has one (a missing field is reported where its parent is).
    pub fn position_of(&self, path: &str) -> Option<Position> {
        let located = self.source.as_ref()?.located(self.index)?;
        let mut candidate = path;
        let found = loop {
            if let Some(position) = located.fields.get(candidate) {
                break Some(*position);
            }
            match candidate.rfind(['.', '[']) {
                Some(cut) => candidate = &candidate[..cut],
                None => break located.root,
            }
        };
        found.filter(|p| p.line > 0)
    }

    /// An error about `path` in this document, located in the file.
    pub fn error(&self, path: &str, message: impl Into<String>) -> ManifestError {
        let position = if path.is_empty() {
            self.position()
        } else {
            self.position_of(path)
        };
        ManifestError {
            code: "validation.failed",
            file: self.file.clone(),
            document: Some(self.index),
            line: position.map(|p| p.line),
            column: position.map(|p| p.column),
            field: (!path.is_empty()).then(|| path.to_owned()),
            message: message.into(),
        }
    }
}

/// Parses a (multi-document) YAML text. Empty documents (a trailing `---`) are skipped;
/// a text without any document is an error.
pub fn parse_documents(file: &str, text: &str) -> Result<Vec<Document>, ManifestError> {
    let whole_file = |message: String| ManifestError::file(file, message);
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(whole_file(format!(
            "is {:.1} MiB; the limit is {} MiB per file: split it into several files",
            text.len() as f64 / (1024.0 * 1024.0),
            MAX_MANIFEST_BYTES / (1024 * 1024)
        )));
    }
    if text.contains('\0') {
        return Err(whole_file(
            "contains NUL bytes: this is not a YAML text (binary file?)".to_owned(),
        ));
    }
    let roots: Vec<CompactNode> = serde_saphyr::from_multiple_with_options(text, parse_options())
        .map_err(|e| {
        let location = e.location();
        ManifestError {
            line: location.map(|l| l.line()).filter(|l| *l > 0),
            column: location.map(|l| l.column()).filter(|c| *c > 0),
            ..whole_file(format!("is not valid YAML: {}", first_line(&e.to_string())))
        }
    })?;
    let source = Arc::new(SourceText {
        text: Arc::from(text),
        located: OnceLock::new(),
    });
    let mut documents = Vec::new();
    for (i, root) in roots.into_iter().enumerate() {
        if let Some(document) = root.0 {
            documents.push(Document {
                file: file.to_owned(),
                index: i + 1,
                source: Some(source.clone()),
                ..document
            });
        }
    }
    if documents.is_empty() {
        return Err(whole_file(
            "contains no resources: expected YAML documents with apiVersion, kind, metadata and spec".to_owned(),
        ));
    }
    Ok(documents)
}

/// A whole document read without positions, made compact as soon as it is read so that
/// only one parsed tree exists at a time; `None` for an empty document.
struct CompactNode(Option<Document>);

impl<'de> Deserialize<'de> for CompactNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let PlainNode(value) = PlainNode::deserialize(deserializer)?;
        Ok(CompactNode(
            (!value.is_null()).then(|| Document::new(String::new(), 0, &value, None)),
        ))
    }
}

/// A document read without positions (the fast path); same values as [`Node`].
struct PlainNode(Value);

impl<'de> Deserialize<'de> for PlainNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(PlainVisitor).map(PlainNode)
    }
}

struct PlainVisitor;

impl<'de> Visitor<'de> for PlainVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(PlainVisitor)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("numbers must be finite (no .inf or .nan)"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Value, E> {
        Err(E::custom("binary values (!!binary) are not supported"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(PlainNode(item)) = seq.next_element::<PlainNode>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let PlainNode(value) = map.next_value::<PlainNode>()?;
            entries.insert(key, value);
        }
        Ok(Value::Object(entries))
    }
}

fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message)
}

fn parse_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = MAX_DOCUMENTS;
    budget.max_nodes = 5_000_000;
    budget.max_events = 20_000_000;
    budget.max_aliases = 10_000;
    budget.max_anchors = 10_000;
    budget.max_depth = 64;
    let mut aliases = serde_saphyr::options::AliasLimits::default();
    aliases.max_total_replayed_events = 100_000;
    aliases.max_replay_stack_depth = 16;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits = aliases;
    options.duplicate_keys = serde_saphyr::options::DuplicateKeyPolicy::Error;
    options.with_snippet = false;
    options
}

/// A YAML node whose children carry their source positions.
enum Node {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
}

/// Converts a node, recording each path's position: where its value starts, or where
/// its key is when the value is a block starting on a later line.
fn flatten(
    node: Spanned<Node>,
    path: String,
    key_at: Option<Position>,
    positions: &mut HashMap<String, Position>,
) -> Value {
    let value_at = Position {
        line: node.referenced.line(),
        column: node.referenced.column(),
    };
    let at = match key_at {
        Some(key) if value_at.line > key.line => key,
        _ => value_at,
    };
    positions.insert(path.clone(), at);
    match node.value {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(b),
        Node::Number(n) => Value::Number(n),
        Node::String(s) => Value::String(s),
        Node::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| flatten(item, format!("{path}[{i}]"), None, positions))
                .collect(),
        ),
        Node::Map(entries) => {
            let mut map = Map::new();
            for (key, child) in entries {
                let key_at = Position {
                    line: key.referenced.line(),
                    column: key.referenced.column(),
                };
                let key = key.value;
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                map.insert(key, flatten(child, child_path, Some(key_at), positions));
            }
            Value::Object(map)
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Number::from_f64(v)
            .map(Node::Number)
            .ok_or_else(|| E::custom("numbers must be finite (no .inf or .nan)"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::String(v))
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<Node, E> {
        Err(E::custom("binary values (!!binary) are not supported"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_recorded_per_field() {
        let text = "a: 1\n---\nkind: Pipeline\nspec:\n  resources:\n    memory: 5x\n  list:\n    - x\n    - y\n";
        let docs = parse_documents("f.yaml", text).expect("valid yaml");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].index, 2);
        let memory = docs[1].position_of("spec.resources.memory").expect("known");
        assert_eq!((memory.line, memory.column), (6, 13));
        let item = docs[1].position_of("spec.list[1]").expect("known");
        assert_eq!(item.line, 9);
        // A missing field falls back to its parent.
        let missing = docs[1].position_of("spec.resources.cpus").expect("parent");
        assert_eq!(missing.line, 5); // the `resources:` key line
    }

    #[test]
    fn empty_and_comment_only_texts_are_rejected() {
        for text in ["", "# nothing\n", "---\n---\n"] {
            let err = parse_documents("empty.yaml", text).expect_err("no resources");
            assert!(err.to_string().contains("contains no resources"), "{err}");
        }
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let err = parse_documents("bad.yaml", "a: 1\nb: [1, 2\n").expect_err("invalid");
        assert!(err.line.is_some(), "{err}");
        assert!(err.to_string().starts_with("bad.yaml:"), "{err}");
    }

    /// How long the rejection takes is measured by `scripts/bench-parse.sh`
    /// (`make bench`), not here: a wall-clock bound in a unit test flakes on a loaded
    /// machine.
    #[test]
    fn alias_bombs_are_rejected() {
        let mut text = String::from(
            "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        let mut previous = 'a';
        for name in ['b', 'c', 'd', 'e', 'f', 'g', 'h', 'i'] {
            let refs = vec![format!("*{previous}"); 9].join(",");
            text.push_str(&format!("{name}: &{name} [{refs}]\n"));
            previous = name;
        }
        let err = parse_documents("bomb.yaml", &text).expect_err("bomb");
        assert!(err.to_string().contains("not valid YAML"), "{err}");
    }

    #[test]
    fn binary_junk_is_rejected() {
        let junk: String = (0u8..=255).map(char::from).collect();
        assert!(parse_documents("junk.bin", &junk).is_err());
    }
}
