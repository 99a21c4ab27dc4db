//! The module graph points one way. For the crate's top level and for each folder listed in
//! `FOLDERS`, every reference from one child module to another (`use crate::…`, `super::…`,
//! and paths written inline) becomes an edge, and so does a reference between a child and
//! the folder's own `mod.rs` (its re-exports, `pub use`, excepted: a facade is not a
//! dependency). A cycle fails the test. Test code is left out: inline `#[cfg(test)]` modules
//! and `tests.rs` / `*_tests.rs` files may reach anywhere. `scripts/check.sh` runs this with
//! the rest of `cargo test`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Folders whose children must form an acyclic graph ([] is the crate's top level).
const FOLDERS: &[&[&str]] = &[
    &[],
    &["api"],
    &["api", "dialects"],
    &["api", "dialects", "kvdb"],
    &["api", "dialects", "saasignal"],
    &["bench"],
    &["client"],
    &["config"],
    &["model"],
    &["net"],
    &["node"],
    &["sm"],
    &["tls"],
    &["wal"],
];

/// One source file: its module path and the module paths it references.
struct SourceFile {
    module: Vec<String>,
    refs: Vec<Vec<String>>,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → [a, b]; `src/a/mod.rs` → [a]; `src/lib.rs` → [].
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src_dir()).expect("under src");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// Removes `//` comments (doc links are not dependencies), string literals' contents and
/// everything from the first `#[cfg(test)]` on (the inline test module, by convention last).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.trim() == "#[cfg(test)]" {
            break;
        }
        let mut in_str = false;
        let mut prev = ' ';
        let mut kept = String::new();
        for (i, c) in line.char_indices() {
            if !in_str && c == '/' && line[i..].starts_with("//") {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            }
            if !in_str {
                kept.push(c);
            }
            prev = c;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// Expands `a::{b, c::{d, e}}` into [a::b, a::c::d, a::c::e].
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else { return vec![tree.to_string()] };
    let prefix = &tree[..open];
    let inner = &tree[open + 1..tree.rfind('}').expect("a closing brace")];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.iter().filter(|p| !p.trim().is_empty()).flat_map(|p| expand(&format!("{prefix}{}", p.trim()))).collect()
}

/// Resolves a path written in module `module` (`crate::`, `super::`, `self::`) to an
/// absolute module path, or `None` for a path into another crate.
fn resolve(module: &[String], is_folder_root: bool, path: &str) -> Option<Vec<String>> {
    let segs: Vec<&str> = path.split("::").map(str::trim).filter(|s| !s.is_empty()).collect();
    let mut base: Vec<String>;
    let mut rest = &segs[..];
    match segs.first()? {
        &"crate" => {
            base = Vec::new();
            rest = &rest[1..];
        }
        &"super" | &"self" => {
            // `super` in `a/mod.rs` is the parent of `a`; in `a/b.rs` it is `a`.
            base = module.to_vec();
            let _ = is_folder_root;
            while let Some(&s) = rest.first() {
                match s {
                    "super" => {
                        base.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    base.extend(rest.iter().map(|s| s.split_whitespace().next().unwrap_or("").to_string()));
    Some(base)
}

fn load() -> Vec<SourceFile> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let path_re = regex::Regex::new(r"\b(?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+").expect("regex");
    let use_re = regex::Regex::new(r"(?s)\buse\s+((?:crate|super|self)::[^;]*);").expect("regex");
    let reexport_re = regex::Regex::new(r"(?s)\bpub(?:\([a-z]+\))?\s+use\s+[^;]*;").expect("regex");
    files
        .iter()
        .filter(|f| {
            let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name != "main.rs" && name != "tests.rs" && !name.ends_with("_tests.rs")
        })
        .map(|file| {
            let text = code_only(&std::fs::read_to_string(file).expect("read source"));
            let module = module_path(file);
            let root = file.ends_with("mod.rs") || file.ends_with("lib.rs");
            // A folder root's re-exports are its facade, not its dependencies.
            let text = if root { reexport_re.replace_all(&text, "").into_owned() } else { text };
            let mut refs = Vec::new();
            for c in use_re.captures_iter(&text) {
                refs.extend(expand(&c[1]).iter().filter_map(|p| resolve(&module, root, p)));
            }
            let without_uses = use_re.replace_all(&text, "");
            for m in path_re.find_iter(&without_uses) {
                refs.extend(resolve(&module, root, m.as_str()));
            }
            // A folder root names its children without a prefix (`kv::get_item`, `use kv::…`).
            if root {
                for kid in declared_mods(&text) {
                    let bare = regex::Regex::new(&format!(r"(?:^|[^:\w]){kid}::")).expect("regex");
                    if bare.is_match(&text) {
                        refs.push(module.iter().cloned().chain([kid]).collect());
                    }
                }
            }
            SourceFile { module, refs }
        })
        .collect()
}

/// The child modules a folder's `mod.rs` (or `lib.rs`) declares.
fn children(folder: &[&str]) -> BTreeSet<String> {
    let mut dir = src_dir();
    dir.extend(folder);
    let root = if folder.is_empty() { dir.join("lib.rs") } else { dir.join("mod.rs") };
    declared_mods(&code_only(&std::fs::read_to_string(&root).expect("read folder root")))
}

/// `mod x;` declarations in a file's code.
fn declared_mods(code: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"(?m)^\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*;").expect("regex");
    re.captures_iter(code).map(|c| c[1].to_string()).collect()
}

/// Edges child → child (or child → "mod.rs" for an upward import) inside `folder`.
fn edges(files: &[SourceFile], folder: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let kids = children(folder);
    let depth = folder.len();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files.iter().filter(|f| f.module.len() >= depth && f.module[..depth] == *folder) {
        let root = "mod.rs".to_string();
        let from = f.module.get(depth).unwrap_or(&root);
        for r in f.refs.iter().filter(|r| r.len() > depth && r[..depth] == *folder) {
            let to = &r[depth];
            let target = if kids.contains(to) { to.clone() } else { root.clone() };
            if target != *from {
                graph.entry(from.clone()).or_default().insert(target);
            }
        }
    }
    graph
}

/// Every cycle's members (strongly connected components with more than one module).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(n) = todo.pop() {
            for m in graph.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let mut out: Vec<Vec<String>> = Vec::new();
    for node in graph.keys() {
        let from_node = reach(node);
        let mut scc: Vec<String> =
            from_node.iter().filter(|m| *m == node || reach(m).contains(node)).cloned().collect();
        if !scc.contains(node) || scc.len() < 2 {
            continue;
        }
        scc.sort();
        if !out.contains(&scc) {
            out.push(scc);
        }
    }
    out
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let files = load();
    let mut problems = Vec::new();
    for folder in FOLDERS {
        let graph = edges(&files, folder);
        let name = if folder.is_empty() { "src".to_string() } else { format!("src/{}", folder.join("/")) };
        for cycle in cycles(&graph) {
            let shown: Vec<String> = cycle
                .iter()
                .map(|m| format!("{m} → {:?}", graph[m].iter().filter(|t| cycle.contains(t)).collect::<Vec<_>>()))
                .collect();
            problems.push(format!("{name}: cycle between {}", shown.join("; ")));
        }
    }
    assert!(problems.is_empty(), "the module graph has cycles or upward imports:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_finds_a_cycle_through_mod_rs() {
    // A checker that cannot fail proves nothing: feed it a graph with a cycle in it.
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), BTreeSet::from(["b".to_string()])),
        ("b".to_string(), BTreeSet::from(["a".to_string(), "mod.rs".to_string()])),
        ("c".to_string(), BTreeSet::from(["a".to_string()])),
    ]
    .into_iter()
    .collect();
    assert_eq!(cycles(&graph), vec![vec!["a".to_string(), "b".to_string()]]);
    let module = vec!["api".to_string(), "kv".to_string()];
    assert_eq!(
        resolve(&module, false, "super::parse::json_object"),
        Some(vec!["api".into(), "parse".into(), "json_object".into()])
    );
    assert_eq!(resolve(&module, false, "crate::node::Node"), Some(vec!["node".into(), "Node".into()]));
    assert_eq!(expand("super::{a, b::{c, d}}"), vec!["super::a", "super::b::c", "super::b::d"]);
}
