//! The code base's habits, checked on every test run (after rust-analyzer's
//! `tidy` test): no open-ended to-do note, no source file that has outgrown one
//! screenful of modules, and every library crate opening with a documented,
//! compiled example and the missing-docs lint.
//!
//! The limits are conventions, not laws: a file that must grow past the
//! limit is split into modules named for what they hold (see
//! `docs/architecture.md`, "Where to change what").

use std::path::{Path, PathBuf};

/// Lines a source file may hold before its unit tests (`#[cfg(test)]`).
const MAX_LINES_OUTSIDE_TESTS: usize = 600;

/// The library crates, each of which must open with an example.
const LIBRARY_ROOTS: [&str; 7] = [
    "src/lib.rs",
    "crates/gpicl-kernels/src/lib.rs",
    "crates/gpicl-models/src/lib.rs",
    "crates/gpicl-tasks/src/lib.rs",
    "crates/gpicl-meta/src/lib.rs",
    "crates/gpicl-eval/src/lib.rs",
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
    assert_eq!(
        crate_doc_fences(
            "//! Doc.\n//! ```no_run\n//! x();\n//! ```\n//! ```text\n//! ```\nuse a;"
        ),
        vec!["no_run".to_string(), "text".to_string()]
    );
}
