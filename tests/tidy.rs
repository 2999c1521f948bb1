//! The code base's habits, checked on every test run (after rust-analyzer's
//! `tidy` test): no open-ended to-do note, no source file that has outgrown one
//! screenful of modules, no two modules of a crate that use each other
//! (directly or round a longer circle), and every library crate opening
//! with a documented, compiled example and the missing-docs lint.
//!
//! The limits are conventions, not laws: a file that must grow past the
//! limit is split into modules named for what they hold (see
//! `docs/architecture.md`, "Where to change what").

use std::path::{Path, PathBuf};

/// The source folders whose modules must not use each other in a circle.
const CRATE_SOURCES: [&str; 9] = [
    "src",
    "crates/gpicl-kernels/src",
    "crates/gpicl-models/src",
    "crates/gpicl-tasks/src",
    "crates/gpicl-meta/src",
    "crates/gpicl-eval/src",
    "crates/gpicl-run/src",
    "crates/gpicl-testing/src",
    "xtask/src",
];

/// Lines a source file may hold before its unit tests (`#[cfg(test)]`).
const MAX_LINES_OUTSIDE_TESTS: usize = 600;

/// The library crates, each of which must open with an example.
const LIBRARY_ROOTS: [&str; 8] = [
    "src/lib.rs",
    "crates/gpicl-kernels/src/lib.rs",
    "crates/gpicl-models/src/lib.rs",
    "crates/gpicl-tasks/src/lib.rs",
    "crates/gpicl-meta/src/lib.rs",
    "crates/gpicl-eval/src/lib.rs",
    "crates/gpicl-run/src/lib.rs",
    "crates/gpicl-testing/src/lib.rs",
];

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file under `dir` (recursively) whose name ends with one of `exts`.
fn files_under(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                files_under(&path, exts, out);
            }
        } else if exts.iter().any(|e| name.ends_with(e)) {
            out.push(path);
        }
    }
}

/// The workspace's own sources: every crate's `src/` and `tests/`, xtask's,
/// and the facade's.
fn sources(exts: &[&str]) -> Vec<PathBuf> {
    let root = workspace_root();
    let mut out = Vec::new();
    for dir in ["src", "tests", "xtask", "crates"] {
        files_under(&root.join(dir), exts, &mut out);
    }
    out.sort();
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Whether a line names the issue that will resolve its note: `issue 17`
/// or `#17`.
fn names_an_issue(line: &str) -> bool {
    let lower = line.to_lowercase();
    let after = |marker: &str| {
        lower.match_indices(marker).any(|(i, _)| {
            lower[i + marker.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit())
        })
    };
    after("issue ") || after("#")
}

#[test]
fn every_todo_names_the_issue_that_resolves_it() {
    // Spelled in halves so this file does not match itself.
    let markers = [
        concat!("TO", "DO"),
        concat!("FIX", "ME"),
        concat!("X", "XX:"),
    ];
    let mut open = Vec::new();
    for path in sources(&[".rs", ".toml", ".cu", ".py", ".sh"]) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if markers.iter().any(|m| line.contains(m)) && !names_an_issue(line) {
                open.push(format!("{}:{}: {}", relative(&path), n + 1, line.trim()));
            }
        }
    }
    assert!(
        open.is_empty(),
        "notes without an issue number (write `issue N` on the line, or do it now):\n{}",
        open.join("\n")
    );
}

/// Lines before the file's unit-test module, or all of them.
fn lines_outside_tests(text: &str) -> usize {
    text.lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .count()
}

#[test]
fn no_source_file_outgrows_six_hundred_lines_outside_its_tests() {
    let mut long = Vec::new();
    for path in sources(&[".rs"]) {
        let rel = relative(&path);
        // Integration tests are all test code.
        if rel.split('/').any(|part| part == "tests") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines = lines_outside_tests(&text);
        if lines > MAX_LINES_OUTSIDE_TESTS {
            long.push(format!("{rel}: {lines} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "split these into modules named for what they hold (limit {MAX_LINES_OUTSIDE_TESTS} lines before `#[cfg(test)]`):\n{}",
        long.join("\n")
    );
}

/// The module a file under a crate's source folder is (`op::gelu::cpu`
/// for `op/gelu/cpu.rs`, the crate root for `lib.rs`/`main.rs`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The sibling-level modules `code` names through `crate::…` paths outside
/// comments and unit tests: for each path, the longest prefix that is one
/// of `modules`.
fn modules_used(code: &str, modules: &[String]) -> Vec<String> {
    let mut used = Vec::new();
    for line in code
        .lines()
        .take_while(|line| !line.starts_with("#[cfg(test)]"))
        .filter(|line| !line.trim_start().starts_with("//"))
    {
        for (at, _) in line.match_indices("crate::") {
            let path: Vec<&str> = line[at + 7..]
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or("")
                .split("::")
                .take_while(|p| !p.is_empty())
                .collect();
            if let Some(module) = (1..=path.len())
                .rev()
                .map(|k| path[..k].join("::"))
                .find(|m| modules.contains(m))
            {
                if !used.contains(&module) {
                    used.push(module);
                }
            }
        }
    }
    used
}

/// A circle in `uses` (module → modules it uses), if any: the modules on
/// it, in order.
fn find_circle(uses: &[(String, Vec<String>)]) -> Option<Vec<String>> {
    fn visit(
        at: &str,
        uses: &[(String, Vec<String>)],
        path: &mut Vec<String>,
        done: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == at) {
            return Some(path[start..].to_vec());
        }
        if done.iter().any(|m| m == at) {
            return None;
        }
        path.push(at.to_string());
        let next = uses.iter().find(|(m, _)| m == at).map(|(_, u)| u.clone());
        for used in next.unwrap_or_default() {
            if let Some(circle) = visit(&used, uses, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.push(at.to_string());
        None
    }
    let mut done = Vec::new();
    uses.iter()
        .find_map(|(m, _)| visit(m, uses, &mut Vec::new(), &mut done))
}

#[test]
fn no_two_modules_of_a_crate_use_each_other_in_a_circle() {
    let root = workspace_root();
    let mut circles = Vec::new();
    for src in CRATE_SOURCES {
        let src = root.join(src);
        let mut files = Vec::new();
        files_under(&src, &[".rs"], &mut files);
        let modules: Vec<String> = files.iter().map(|f| module_of(&src, f)).collect();
        let uses: Vec<(String, Vec<String>)> = files
            .iter()
            .zip(&modules)
            .map(|(file, module)| {
                let code = std::fs::read_to_string(file).unwrap();
                let mut used = modules_used(&code, &modules);
                // A module's own items, and the root, are no circle.
                used.retain(|m| m != module && !m.is_empty());
                (module.clone(), used)
            })
            .collect();
        if let Some(circle) = find_circle(&uses) {
            circles.push(format!("{}: {}", relative(&src), circle.join(" → ")));
        }
    }
    assert!(
        circles.is_empty(),
        "modules that use each other (move what both need into a module of its own):\n{}",
        circles.join("\n")
    );
}

/// The workspace crates a crate's manifest depends on (`gpicl-*` names in
/// its `[dependencies]` table, not its dev-dependencies).
fn workspace_dependencies(manifest: &str) -> Vec<String> {
    let text = std::fs::read_to_string(workspace_root().join(manifest)).unwrap();
    let mut in_dependencies = false;
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
        } else if in_dependencies && line.starts_with("gpicl-") {
            found.push(line.split(['.', ' ', '=']).next().unwrap_or("").to_string());
        }
    }
    found
}

#[test]
fn optimisation_and_evaluation_are_siblings_that_do_not_know_each_other() {
    let meta = workspace_dependencies("crates/gpicl-meta/Cargo.toml");
    let eval = workspace_dependencies("crates/gpicl-eval/Cargo.toml");
    let run = workspace_dependencies("crates/gpicl-run/Cargo.toml");
    assert!(meta.contains(&"gpicl-models".to_string()), "{meta:?}");
    assert!(
        !meta.contains(&"gpicl-eval".to_string()),
        "gpicl-meta depends on gpicl-eval"
    );
    assert!(
        !eval.contains(&"gpicl-meta".to_string()),
        "gpicl-eval depends on gpicl-meta"
    );
    // The run crate composes them.
    for needed in ["gpicl-meta", "gpicl-eval"] {
        assert!(
            run.contains(&needed.to_string()),
            "gpicl-run lacks {needed}: {run:?}"
        );
    }
}

/// The info string of every code fence in the crate doc (`//! ```…`).
fn crate_doc_fences(text: &str) -> Vec<String> {
    let mut fences = Vec::new();
    let mut inside = false;
    for line in text
        .lines()
        .take_while(|l| l.starts_with("//!") || l.is_empty())
    {
        let doc = line.trim_start_matches("//!").trim();
        if let Some(info) = doc.strip_prefix("```") {
            if !inside {
                fences.push(info.trim().to_string());
            }
            inside = !inside;
        }
    }
    fences
}

#[test]
fn every_library_crate_opens_with_a_compiled_example_and_denies_missing_docs() {
    let mut faults = Vec::new();
    for root in LIBRARY_ROOTS {
        let text = std::fs::read_to_string(workspace_root().join(root))
            .unwrap_or_else(|e| panic!("{root}: {e}"));
        // `no_run` examples are compiled by the doc tests; `ignore` and
        // `text` ones are not, so they do not count.
        let compiled = crate_doc_fences(&text)
            .iter()
            .any(|info| matches!(info.as_str(), "" | "rust" | "no_run" | "rust,no_run"));
        if !compiled {
            faults.push(format!("{root}: no compiled example in the crate doc"));
        }
        if !text.contains("#![warn(missing_docs)]") {
            faults.push(format!(
                "{root}: no #![warn(missing_docs)] (CI turns it into an error)"
            ));
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
}

#[test]
fn the_checks_recognise_what_they_look_for() {
    assert!(names_an_issue("// later: issue 17 moves this"));
    assert!(names_an_issue("// see #4"));
    assert!(!names_an_issue("// fix the issue later"));
    assert_eq!(lines_outside_tests("a\nb\n#[cfg(test)]\nmod tests {}\n"), 2);
    let modules = vec!["a".to_string(), "b".to_string(), "b::c".to_string()];
    assert_eq!(
        modules_used(
            "use crate::b::c::Item;\n// crate::a in a comment\nx = crate::a::f();",
            &modules
        ),
        vec!["b::c".to_string(), "a".to_string()]
    );
    let uses = |edges: &[(&str, &[&str])]| -> Vec<(String, Vec<String>)> {
        edges
            .iter()
            .map(|(m, u)| (m.to_string(), u.iter().map(|s| s.to_string()).collect()))
            .collect()
    };
    assert_eq!(
        find_circle(&uses(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])])),
        Some(vec!["a".to_string(), "b".to_string(), "c".to_string()])
    );
    assert_eq!(
        find_circle(&uses(&[("a", &["b"]), ("b", &["c"]), ("c", &[])])),
        None
    );
    assert_eq!(
        crate_doc_fences(
            "//! Doc.\n//! ```no_run\n//! x();\n//! ```\n//! ```text\n//! ```\nuse a;"
        ),
        vec!["no_run".to_string(), "text".to_string()]
    );
}
