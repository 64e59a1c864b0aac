//! The module layering of this crate, checked from its own source: the
//! top-level modules form no cycle, and nothing imports `jobs` (the runner
//! that starts every capability's background work; capabilities use
//! `runner` for leases and panic supervision).
//!
//! A module's dependencies are the `crate::<module>` paths (and the names in
//! `use crate::{…}` groups) in its non-comment lines; test files
//! (`tests.rs`, `*_tests.rs`) are left out, as tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module name → the top-level modules it uses.
pub(crate) fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src).expect("read src") {
        let path = entry.expect("entry").path();
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .expect("name")
            .to_string();
        if name == "lib" {
            continue;
        }
        let files = if path.is_dir() {
            rust_files(&path)
        } else {
            vec![path.clone()]
        };
        modules.entry(name).or_insert_with(Vec::new).extend(files);
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    modules
        .into_iter()
        .map(|(name, files)| {
            let mut uses = BTreeSet::new();
            for file in files {
                let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                if stem == "tests" || stem.ends_with("_tests") {
                    continue;
                }
                let text = std::fs::read_to_string(&file).expect("read source");
                uses.extend(used_modules(&text, &names));
            }
            uses.remove(&name);
            (name, uses)
        })
        .collect()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

fn used_modules(text: &str, names: &BTreeSet<String>) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut used = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let first = part.trim().split("::").next().unwrap_or("").trim();
                if names.contains(first) {
                    used.insert(first.to_string());
                }
            }
        } else {
            let ident: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if names.contains(&ident) {
                used.insert(ident);
            }
        }
    }
    used
}

/// A cycle in the graph, if there is one.
pub(crate) fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
    }

    #[test]
    fn top_level_modules_form_no_cycle() {
        let graph = module_graph(&src());
        assert!(graph.len() > 10, "read too few modules: {graph:?}");
        if let Some(cycle) = find_cycle(&graph) {
            panic!("module cycle: {}", cycle.join(" -> "));
        }
    }

    #[test]
    fn nothing_imports_the_job_runner() {
        let graph = module_graph(&src());
        let importers: Vec<_> = graph
            .iter()
            .filter(|(_, uses)| uses.contains("jobs"))
            .map(|(name, _)| name.clone())
            .collect();
        assert!(importers.is_empty(), "these import jobs: {importers:?}");
    }

    /// The names in the `[dependencies]` table of a crate's manifest.
    fn dependencies(manifest: &Path) -> BTreeSet<String> {
        let text = std::fs::read_to_string(manifest).expect("read manifest");
        let mut in_deps = false;
        let mut names = BTreeSet::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_deps = line == "[dependencies]";
            } else if in_deps && !line.is_empty() && !line.starts_with('#') {
                let name = line.split(['=', '.']).next().unwrap_or("").trim();
                names.insert(name.to_string());
            }
        }
        names
    }

    /// Cargo enforces the layers: the services name no HTTP server crate,
    /// the HTTP adapter names no store.
    #[test]
    fn manifests_keep_the_layers() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let app = dependencies(&here.join("Cargo.toml"));
        assert!(app.contains("wb-store"), "read the wrong table: {app:?}");
        for http in [
            "axum",
            "axum-server",
            "hyper",
            "hyper-util",
            "tower",
            "tower-http",
        ] {
            assert!(!app.contains(http), "wb-app depends on {http}");
        }
        let web = dependencies(&here.join("../wb-server/Cargo.toml"));
        assert!(web.contains("axum") && web.contains("wb-app"), "{web:?}");
        assert!(!web.contains("wb-store"), "wb-server depends on wb-store");
    }

    #[test]
    fn the_checker_sees_cycles_and_groups() {
        let names: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let uses = used_modules(
            "use crate::{a::X, b};\n// crate::c in a comment\nfn f() { crate::c::g() }",
            &names,
        );
        assert_eq!(uses, names);
        let graph: BTreeMap<String, BTreeSet<String>> =
            [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"])]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
                .collect();
        assert_eq!(
            find_cycle(&graph).expect("a cycle"),
            vec!["a", "b", "c", "a"]
        );
        let mut acyclic = graph.clone();
        acyclic.get_mut("c").expect("c").clear();
        assert_eq!(find_cycle(&acyclic), None);
    }
}
