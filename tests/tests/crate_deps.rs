//! The crate dependency rules of ARCHITECTURE.md ("Crate dependency rules"),
//! checked against `cargo metadata`: a forbidden edge fails the build's tests,
//! not a review.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `cargo metadata` of the workspace (resolved, offline: the lock file is
/// complete for a built workspace).
fn metadata(no_deps: bool) -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args([
        "metadata",
        "--format-version",
        "1",
        "--offline",
        "--locked",
    ]);
    if no_deps {
        cmd.arg("--no-deps");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Workspace crate → the workspace crates it depends on (any kind).
fn workspace_edges() -> BTreeMap<String, BTreeSet<String>> {
    let m = metadata(true);
    let packages = m["packages"].as_array().unwrap();
    let names: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    packages
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|d| names.contains(d))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

/// The table between the crate-deps markers in ARCHITECTURE.md.
fn allowed_edges() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(workspace_root().join("ARCHITECTURE.md")).unwrap();
    let begin = text.find("<!-- crate-deps:begin -->").unwrap();
    let end = text.find("<!-- crate-deps:end -->").unwrap();
    let crate_names = |cell: &str| -> BTreeSet<String> {
        cell.split(',')
            .map(|c| c.trim().trim_matches('`').to_string())
            .filter(|c| !c.is_empty() && c != "—")
            .collect()
    };
    text[begin..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 2, "ARCHITECTURE.md crate-deps row: {l}");
            (
                cells[0].trim().trim_matches('`').to_string(),
                crate_names(cells[1]),
            )
        })
        .collect()
}

/// The rules no edit of the table can lift; returns the violations.
fn fixed_rule_violations(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut bad = Vec::new();
    for (from, deps) in edges {
        for to in deps {
            let forbidden = match (from.as_str(), to.as_str()) {
                ("edge-proxy", "edge-backend") | ("edge-backend", "edge-proxy") => {
                    Some("the edge and the backend never depend on each other")
                }
                ("edge-config", t) if t != "edge-envelope" => {
                    Some("edge-config depends on nothing but edge-envelope")
                }
                // The one exception: edge-private-fs, the shared writer and
                // reader of 0600 files (key files), is itself a leaf (next rule).
                ("edge-envelope", t) if t != "edge-private-fs" => {
                    Some("edge-envelope depends on no workspace crate but the leaf edge-private-fs")
                }
                ("edge-private-fs", _) => Some("edge-private-fs depends on no workspace crate"),
                (_, "edge-dev" | "edge-tests" | "edge-loadtest") => {
                    Some("nothing depends on the dev binary, the tests or the load tool")
                }
                _ => None,
            };
            if let Some(rule) = forbidden {
                bad.push(format!("{from} → {to}: {rule}"));
            }
        }
    }
    bad
}

#[test]
fn workspace_dependencies_follow_architecture_md() {
    let edges = workspace_edges();
    let allowed = allowed_edges();
    // Positive control: the table was read and the workspace was seen.
    assert!(allowed.len() >= 10, "table not found: {allowed:?}");
    assert!(
        edges["edge-proxy"].contains("edge-config"),
        "metadata not read: {edges:?}"
    );

    let mut bad = Vec::new();
    for (from, deps) in &edges {
        let Some(may) = allowed.get(from) else {
            bad.push(format!(
                "{from} is not in ARCHITECTURE.md's crate dependency table: decide its place there"
            ));
            continue;
        };
        for to in deps.difference(may) {
            bad.push(format!("{from} → {to} is not allowed by ARCHITECTURE.md"));
        }
    }
    for (name, may) in &allowed {
        assert!(
            edges.contains_key(name),
            "ARCHITECTURE.md names {name}, which is not a workspace crate"
        );
        // The table also stays true: it lists no edge that is gone.
        for to in may.difference(&edges[name]) {
            bad.push(format!(
                "ARCHITECTURE.md allows {name} → {to}, which no longer exists: remove it"
            ));
        }
    }
    bad.extend(fixed_rule_violations(&edges));
    bad.extend(fixed_rule_violations(&allowed));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_fixed_rules_catch_a_forbidden_edge() {
    // The checker itself fails on the edges this split removed.
    let mut edges = BTreeMap::new();
    edges.insert(
        "edge-proxy".to_string(),
        BTreeSet::from(["edge-backend".to_string()]),
    );
    edges.insert(
        "edge-config".to_string(),
        BTreeSet::from(["edge-envelope".to_string(), "edge-collector".to_string()]),
    );
    let bad = fixed_rule_violations(&edges);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad[0].starts_with("edge-config → edge-collector"));
    assert!(bad[1].starts_with("edge-proxy → edge-backend"));
}

#[test]
fn envelope_may_use_only_the_leaf_private_fs_crate() {
    let mut edges = BTreeMap::new();
    edges.insert(
        "edge-envelope".to_string(),
        BTreeSet::from(["edge-private-fs".to_string()]),
    );
    assert_eq!(fixed_rule_violations(&edges), Vec::<String>::new());
    edges.insert(
        "edge-envelope".to_string(),
        BTreeSet::from(["edge-private-fs".to_string(), "edge-spool".to_string()]),
    );
    edges.insert(
        "edge-private-fs".to_string(),
        BTreeSet::from(["edge-envelope".to_string()]),
    );
    let bad = fixed_rule_violations(&edges);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad[0].starts_with("edge-envelope → edge-spool"), "{bad:?}");
    assert!(
        bad[1].starts_with("edge-private-fs → edge-envelope"),
        "{bad:?}"
    );
}

/// Packages reached from `root` through normal (non-dev, non-build)
/// dependencies, by name.
fn normal_closure(m: &serde_json::Value, root_name: &str) -> BTreeSet<String> {
    let names: BTreeMap<&str, &str> = m["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let nodes = m["resolve"]["nodes"].as_array().unwrap();
    let by_id: BTreeMap<&str, &serde_json::Value> = nodes
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n))
        .collect();
    let name_of = |id: &str| -> String { names[id].to_string() };
    let root = nodes
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .find(|id| name_of(id) == root_name)
        .unwrap();
    let mut seen = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in by_id[id]["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                stack.push(dep["pkg"].as_str().unwrap());
            }
        }
    }
    seen.into_iter().map(name_of).collect()
}

#[test]
fn the_edge_binary_links_no_backend_storage() {
    let m = metadata(false);
    // Positive control: the same walk finds sqlx under the backend.
    let backend = normal_closure(&m, "edge-backend");
    assert!(backend.contains("sqlx"), "{backend:?}");
    let edge = normal_closure(&m, "edge-proxy");
    assert!(edge.contains("pingora-core"), "{edge:?}");
    for storage in ["sqlx", "object_store", "datasketches", "edge-backend"] {
        assert!(!edge.contains(storage), "the edge binary links {storage}");
    }
}
