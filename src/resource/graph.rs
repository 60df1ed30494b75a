//! The graph of pipelines and the runs they start (`spec.triggers`): cycle detection for
//! apply, and the view `flotilla graph` and the API serve.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::types::{DownstreamTrigger, TriggerWhen};

/// One trigger: a run of `from` ending starts a run of `to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Edge {
    /// The pipeline whose run ends.
    pub from: String,
    /// The pipeline started.
    pub to: String,
    /// On which outcome.
    pub when: TriggerWhen,
    /// On which route label, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Whose schedule env the started run takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
}

/// One pipeline of the graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Its name.
    pub name: String,
    /// False for a pipeline a trigger names that does not exist.
    pub exists: bool,
    /// True when suspended (a trigger to it starts nothing).
    pub suspended: bool,
}

/// The trigger graph of one namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graph {
    /// Every pipeline, those that no trigger names included, by name.
    pub nodes: Vec<Node>,
    /// Every trigger, in pipeline and declaration order.
    pub edges: Vec<Edge>,
}

impl Graph {
    /// Builds the graph from `(name, suspended, triggers)` of each pipeline.
    pub fn of<'a>(
        pipelines: impl IntoIterator<Item = (&'a str, bool, &'a [DownstreamTrigger])>,
    ) -> Self {
        let mut nodes = BTreeMap::new();
        let mut edges = Vec::new();
        for (name, suspended, triggers) in pipelines {
            nodes.insert(
                name.to_owned(),
                Node {
                    name: name.to_owned(),
                    exists: true,
                    suspended,
                },
            );
            edges.extend(triggers.iter().map(|t| Edge {
                from: name.to_owned(),
                to: t.pipeline.clone(),
                when: t.when,
                route: t.route.clone(),
                schedule: t.schedule.clone(),
            }));
        }
        edges.sort_by(|a, b| a.from.cmp(&b.from));
        for edge in &edges {
            nodes.entry(edge.to.clone()).or_insert_with(|| Node {
                name: edge.to.clone(),
                exists: false,
                suspended: false,
            });
        }
        Graph {
            nodes: nodes.into_values().collect(),
            edges,
        }
    }

    /// A loop through `start`, as the pipelines along it from `start` back to `start`.
    pub fn cycle_through(&self, start: &str) -> Option<Vec<String>> {
        let next = self.adjacency();
        // Depth-first, keeping the path: the first way back to `start` is the loop.
        let mut path = vec![start.to_owned()];
        let mut seen = BTreeSet::new();
        let mut stack = vec![next.get(start).cloned().unwrap_or_default().into_iter()];
        while let Some(children) = stack.last_mut() {
            match children.next() {
                Some(child) if child == start => {
                    path.push(child);
                    return Some(path);
                }
                Some(child) => {
                    if seen.insert(child.clone()) {
                        stack.push(next.get(&child).cloned().unwrap_or_default().into_iter());
                        path.push(child);
                    }
                }
                None => {
                    stack.pop();
                    path.pop();
                }
            }
        }
        None
    }

    fn adjacency(&self) -> BTreeMap<String, Vec<String>> {
        let mut next: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for edge in &self.edges {
            let targets = next.entry(edge.from.clone()).or_default();
            if !targets.contains(&edge.to) {
                targets.push(edge.to.clone());
            }
        }
        next
    }

    /// The graph as an indented tree per starting pipeline (one no trigger starts, or,
    /// in a loop, the first by name); a pipeline reached again is marked, not repeated.
    /// Pipelines with no trigger either way are left out.
    pub fn render(&self) -> String {
        let started: BTreeSet<&str> = self.edges.iter().map(|e| e.to.as_str()).collect();
        let linked: BTreeSet<&str> = self
            .edges
            .iter()
            .flat_map(|e| [e.from.as_str(), e.to.as_str()])
            .collect();
        let mut out = String::new();
        let mut shown = BTreeSet::new();
        let roots = self
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .filter(|n| linked.contains(n) && !started.contains(n));
        // Loops without a start are shown from their first pipeline.
        let rest: Vec<&str> = linked.iter().copied().collect();
        for root in roots.chain(rest) {
            if shown.contains(root) {
                continue;
            }
            out.push_str(&self.label(root));
            out.push('\n');
            shown.insert(root.to_owned());
            self.render_children(root, "", &mut shown, &mut out);
        }
        if out.is_empty() {
            out.push_str("no pipeline has triggers\n");
        }
        out
    }

    fn render_children(
        &self,
        from: &str,
        indent: &str,
        shown: &mut BTreeSet<String>,
        out: &mut String,
    ) {
        let edges: Vec<&Edge> = self.edges.iter().filter(|e| e.from == from).collect();
        for (i, edge) in edges.iter().enumerate() {
            let last = i + 1 == edges.len();
            let again = shown.contains(&edge.to);
            out.push_str(indent);
            out.push_str(if last { "└─ " } else { "├─ " });
            out.push_str(&describe(edge));
            out.push_str(" → ");
            out.push_str(&self.label(&edge.to));
            if again {
                out.push_str(" (shown above)");
            }
            out.push('\n');
            if !again {
                shown.insert(edge.to.clone());
                let deeper = format!("{indent}{}", if last { "   " } else { "│  " });
                self.render_children(&edge.to, &deeper, shown, out);
            }
        }
    }

    fn label(&self, name: &str) -> String {
        match self.nodes.iter().find(|n| n.name == name) {
            Some(n) if !n.exists => format!("{name} (missing)"),
            Some(n) if n.suspended => format!("{name} (suspended)"),
            _ => name.to_owned(),
        }
    }
}

/// An edge's condition in words: `on success`, `on route "daily"`, ….
fn describe(edge: &Edge) -> String {
    let mut text = edge.when.describe(edge.route.as_deref());
    if let Some(schedule) = &edge.schedule {
        text.push_str(&format!(" with schedule {schedule}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(pipeline: &str) -> DownstreamTrigger {
        DownstreamTrigger {
            pipeline: pipeline.into(),
            ..DownstreamTrigger::default()
        }
    }

    #[test]
    fn loops_are_found_with_their_path() {
        let (a, b, c) = ([to("b")], [to("c"), to("d")], [to("a")]);
        let graph = Graph::of([
            ("a", false, &a[..]),
            ("b", false, &b[..]),
            ("c", false, &c[..]),
        ]);
        assert_eq!(
            graph.cycle_through("b").as_deref(),
            Some(&["b", "c", "a", "b"].map(String::from)[..])
        );
        let (x, y) = ([to("y")], [to("z")]);
        let acyclic = Graph::of([("x", false, &x[..]), ("y", false, &y[..])]);
        assert_eq!(acyclic.cycle_through("x"), None);
        let own = [to("self")];
        assert!(
            Graph::of([("self", false, &own[..])])
                .cycle_through("self")
                .is_some()
        );
    }

    #[test]
    fn a_diamond_is_no_loop() {
        let (a, b, c) = ([to("b"), to("c")], [to("d")], [to("d")]);
        let graph = Graph::of([
            ("a", false, &a[..]),
            ("b", false, &b[..]),
            ("c", false, &c[..]),
        ]);
        assert_eq!(graph.cycle_through("a"), None);
        assert_eq!(
            graph.render(),
            "a\n├─ on success → b\n│  └─ on success → d (missing)\n└─ on success → c\n   └─ on success → d (missing) (shown above)\n"
        );
    }
}
