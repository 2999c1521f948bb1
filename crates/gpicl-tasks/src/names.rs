//! The one rule for names that become paths: dataset names, import names,
//! Hub owners, repositories and revisions, and every file or commit name a
//! Hub reply supplies. A name passes when it is 1 to 128 ASCII letters,
//! digits, `-`, `_` and `.` and does not start with `.`; so no name can be
//! `..`, hold a separator, or hide among gpicl's own `.partial-*` and
//! `.old-*` folders.

use crate::error::{Result, TaskError};

/// The longest name accepted.
pub const MAX_NAME_LEN: usize = 128;

/// Checks `name` (described as `what`, e.g. "dataset name") against the
/// rule of this module.
pub fn validate_path_name(what: &str, name: &str) -> Result<()> {
    let refuse = |reason: &str| {
        Err(TaskError::UnsafeName {
            what: what.to_string(),
            name: name.escape_debug().to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() {
        return refuse("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return refuse(&format!("it is longer than {MAX_NAME_LEN} characters"));
    }
    if name.starts_with('.') {
        return refuse("it starts with `.`");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return refuse(&format!(
            "it holds {c:?}; use only letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

/// Checks a `/`-separated relative path (a file of a Hub repository):
/// every component must pass [`validate_path_name`].
pub fn validate_relative_path(what: &str, path: &str) -> Result<()> {
    if path.len() > 1024 {
        return Err(TaskError::UnsafeName {
            what: what.to_string(),
            name: path.chars().take(64).collect::<String>() + "…",
            reason: "it is longer than 1024 characters".into(),
        });
    }
    for part in path.split('/') {
        validate_path_name(what, part).map_err(|e| match e {
            TaskError::UnsafeName { what, reason, .. } => TaskError::UnsafeName {
                what,
                name: path.escape_debug().to_string(),
                reason: format!("a component `{}`: {reason}", part.escape_debug()),
            },
            other => other,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_their_folder_are_refused_and_plain_ones_pass() {
        for good in ["mnist", "my_table", "v1.0", "tiny-learner", "a", "0123abc"] {
            validate_path_name("dataset name", good).unwrap();
        }
        let long = "x".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "",
            ".",
            "..",
            "../escaped",
            "a/b",
            "a\\b",
            ".old-x",
            ".partial-x",
            "a\nb",
            "é",
            "/abs",
            "a b",
            &long,
        ] {
            let err = validate_path_name("dataset name", bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains("dataset name"), "{err}");
        }
    }

    #[test]
    fn relative_paths_pass_only_when_every_component_does() {
        validate_relative_path("Hub file", "digits/train-00000.parquet").unwrap();
        for bad in ["../x", "a/../b", "a//b", "/a", "a/", "a/.hidden"] {
            let err = validate_relative_path("Hub file", bad)
                .unwrap_err()
                .to_string();
            assert!(err.contains("Hub file"), "{err}");
        }
    }
}
