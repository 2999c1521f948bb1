//! The evaluation groups of `gpicl-method.md` §7 (seen, unseen and
//! identity tasks, each with labels unpermuted and permuted) and which
//! tasks each group's sequences are seen through ([`group_tasks`]); the
//! protocol ([`crate::protocol`]) evaluates them, reports list them in
//! [`Group::ALL`]'s order.

use crate::error::{EvalError, Result};
use gpicl_tasks::{TaskFamily, TaskRef};
use serde::{Deserialize, Serialize};

/// A group of evaluation tasks (see [`crate::protocol`]). Written in
/// reports, `eval.json` and `metrics.jsonl` by its [`Group::as_str`] name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Training task ids `0…n−1`, labels unpermuted.
    Seen,
    /// Ids `−1…−n`, never drawn in training, labels unpermuted.
    Unseen,
    /// The raw data: one task, no projection, no permutation.
    Identity,
    /// The seen tasks with their own label permutations.
    SeenPermuted,
    /// The unseen tasks with their own label permutations.
    UnseenPermuted,
    /// The raw data under the label permutations of the unseen ids.
    IdentityPermuted,
}

impl Group {
    /// Every group, in report order.
    pub const ALL: [Group; 6] = [
        Group::Seen,
        Group::Unseen,
        Group::Identity,
        Group::SeenPermuted,
        Group::UnseenPermuted,
        Group::IdentityPermuted,
    ];

    /// The group's name in reports: `seen`, `unseen`, `identity`,
    /// `seen_permuted`, `unseen_permuted`, `identity_permuted`.
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Seen => "seen",
            Group::Unseen => "unseen",
            Group::Identity => "identity",
            Group::SeenPermuted => "seen_permuted",
            Group::UnseenPermuted => "unseen_permuted",
            Group::IdentityPermuted => "identity_permuted",
        }
    }
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Group {
    type Err = EvalError;

    /// Parses a group's report name, refusing unknown names with the list.
    fn from_str(name: &str) -> Result<Self> {
        Group::ALL
            .into_iter()
            .find(|g| g.as_str() == name)
            .ok_or_else(|| EvalError::UnknownGroup {
                name: name.to_string(),
                expected: Group::ALL.map(Group::as_str).join(", "),
            })
    }
}

/// The task assignment of every sequence of `group` (empty for `seen`
/// groups of a raw-data run, which has no training tasks).
pub fn group_tasks(
    group: Group,
    num_tasks: u64,
    tasks_per_group: usize,
    seqs_per_task: usize,
) -> Vec<TaskRef> {
    let seen = TaskFamily::seen_ids(num_tasks, tasks_per_group);
    let unseen = TaskFamily::unseen_ids(tasks_per_group);
    let refs: Vec<TaskRef> = match group {
        Group::Seen => seen.iter().map(|&id| TaskRef::task(id, false)).collect(),
        Group::SeenPermuted => seen.iter().map(|&id| TaskRef::task(id, true)).collect(),
        Group::Unseen => unseen.iter().map(|&id| TaskRef::task(id, false)).collect(),
        Group::UnseenPermuted => unseen.iter().map(|&id| TaskRef::task(id, true)).collect(),
        Group::Identity => vec![TaskRef::IDENTITY],
        Group::IdentityPermuted => unseen
            .iter()
            .map(|&id| TaskRef {
                projection: None,
                permutation: Some(id),
            })
            .collect(),
    };
    refs.into_iter()
        .flat_map(|r| std::iter::repeat_n(r, seqs_per_task))
        .collect()
}
