//! The library's module graph, read from its own source: imports run one way (no circle between
//! top-level modules), and the planning core performs no I/O (it names no connection, runtime or
//! state module). A newcomer can therefore read the core bottom-up in the order `CORE` lists.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The planning core, bottom-up: each module may use only modules listed before it.
const CORE: &[&str] = &[
    "ident", "path", "fragment", "sql", "schema", "step", "triggers", "plan", "copies", "views",
    "ops", "convert", "format", "planner",
];

/// Imports that still run the wrong way (issue #9's debt, each to be removed by moving the
/// item it needs below both modules): (from, to). The tests ignore exactly these edges, so a
/// new wrong-way import fails them, and so does an entry here that no longer exists.
const KNOWN_BACK_EDGES: &[(&str, &str)] = &[
    // The column-copy machinery lives beside the planner but still uses ops' lookups, and the
    // planner holds it.
    ("plan", "copies"),
    ("copies", "ops"),
    // Field paths and the placeholder check: sql and convert use format's document types.
    ("sql", "format"),
    ("convert", "format"),
    // Around the planning core: the history's checksum is computed where state records it;
    // migrate's options live in one_version, which extends the migrator.
    ("state", "history"),
    ("migrator", "one_version"),
];

/// What the planning core must never reach: connections, the runtime, the journal, the catalog
/// reader, the executor and the crate-wide error (which carries `tokio_postgres::Error`).
const IO: &[&str] = &[
    "tokio_postgres",
    "tokio::",
    "crate::pg",
    "crate::config",
    "crate::executor",
    "crate::state",
    "crate::catalog",
    "crate::migrator",
    "crate::error",
    "crate::backfill",
    "crate::verify",
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The code of a source file without comments and without its `#[cfg(test)]` module.
fn code(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `.rs` file of a top-level module (`plan.rs`, or everything under `plan/`).
fn module_files(module: &str) -> Vec<PathBuf> {
    let file = src_dir().join(format!("{module}.rs"));
    let mut files = Vec::new();
    if file.exists() {
        files.push(file);
    }
    let dir = src_dir().join(module);
    if dir.is_dir() {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
                let p = entry.expect("directory entry").path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|e| e == "rs") {
                    files.push(p);
                }
            }
        }
    }
    files
}

/// Top-level modules declared in lib.rs.
fn modules() -> Vec<String> {
    code(&src_dir().join("lib.rs"))
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';').trim().to_owned())
        .collect()
}

/// The top-level modules each module refers to through `crate::`, without the known back edges.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = full_graph();
    for (from, to) in KNOWN_BACK_EDGES {
        let present = graph.get_mut(*from).is_some_and(|deps| deps.remove(*to));
        assert!(
            present,
            "{from} -> {to} is listed in KNOWN_BACK_EDGES but no longer exists: remove it"
        );
    }
    graph
}

/// The top-level modules each module refers to through `crate::`.
fn full_graph() -> BTreeMap<String, BTreeSet<String>> {
    let names: BTreeSet<String> = modules().into_iter().collect();
    let mut graph = BTreeMap::new();
    for m in &names {
        let mut deps = BTreeSet::new();
        for file in module_files(m) {
            let text = code(&file);
            for (at, _) in text.match_indices("crate::") {
                let rest = &text[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if names.contains(&name) && name != *m {
                    deps.insert(name);
                }
            }
        }
        graph.insert(m.clone(), deps);
    }
    graph
}

#[test]
fn top_level_modules_import_one_way() {
    let graph = graph();
    assert!(graph.len() > 10, "lib.rs lists too few modules: {graph:?}");
    // Depth-first search for a back edge; the path to it is the circle.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) {
        if let Some(at) = path.iter().position(|p| p == m) {
            panic!("import circle: {} -> {m}", path[at..].join(" -> "));
        }
        if done.contains(m) {
            return;
        }
        path.push(m.to_owned());
        for d in &graph[m] {
            visit(d, graph, done, path);
        }
        path.pop();
        done.insert(m.to_owned());
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut done, &mut Vec::new());
    }
}

#[test]
fn the_planning_core_reads_bottom_up() {
    let graph = graph();
    for (i, m) in CORE.iter().enumerate() {
        let deps = graph
            .get(*m)
            .unwrap_or_else(|| panic!("core module {m} is not declared in lib.rs"));
        for d in deps {
            let allowed = CORE[..i].contains(&d.as_str());
            assert!(
                allowed,
                "core module `{m}` uses `{d}`, which is not below it in {CORE:?}"
            );
        }
    }
}

#[test]
fn the_planning_core_performs_no_io() {
    for m in CORE {
        for file in module_files(m) {
            let text = code(&file);
            for needle in IO {
                assert!(
                    !text.contains(needle),
                    "{} (planning core) refers to {needle}",
                    file.display()
                );
            }
        }
    }
}
