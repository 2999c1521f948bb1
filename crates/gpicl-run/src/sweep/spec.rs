//! The sweep file: a starting preset (or config file), overrides for every
//! cell (`[set]`), named variants (`[[variants]]`) and the grid (`[grid]`:
//! dotted config key → list of values). Every combination of a variant and
//! grid values is one cell, and one run folder of the sweep:
//!
//! ```toml
//! name = "transition-cpu"
//! preset = "quickstart"
//! [set]
//! "schedule.steps" = 2000
//! [grid]
//! "tasks.num_tasks" = [16, 256, 4096]
//! "model.d_model" = [32, 64]
//! ```

use crate::error::{Result, RunError};
use crate::RunConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The sweep file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// Names the default output folder `runs/sweeps/<name>`.
    pub name: String,
    /// Built-in starting config: `quickstart` (default), `small` or `paper`.
    #[serde(default = "default_preset")]
    pub preset: String,
    /// A TOML config to start from instead of the preset, relative to the
    /// sweep file.
    pub config: Option<PathBuf>,
    /// Overrides for every cell: dotted key → value.
    #[serde(default)]
    pub set: BTreeMap<String, toml::Value>,
    /// Named cells that are not a product of values, e.g. one per model
    /// at matched parameter counts: each `[[variants]]` table has a `name`
    /// and dotted-key overrides. The grid is crossed with every variant.
    #[serde(default)]
    pub variants: Vec<BTreeMap<String, toml::Value>>,
    /// The grid: dotted key → values. Axes vary in key order (the last
    /// key fastest).
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<toml::Value>>,
}

fn default_preset() -> String {
    "quickstart".into()
}

/// One combination of grid values.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// Folder name, e.g. `d_model-64__num_tasks-16`.
    pub name: String,
    /// `key=value` overrides: the sweep's `[set]`, then this cell's values.
    pub assignments: Vec<String>,
}

/// A sweep error with a message and, where there is one, its cause.
fn sweep_error(
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
) -> RunError {
    RunError::Sweep { message, source }
}

impl SweepSpec {
    /// Reads and checks a sweep file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| sweep_error(format!("reading {}", path.display()), Some(Box::new(e))))?;
        let spec: Self = toml::from_str(&text).map_err(|e| {
            sweep_error(format!("sweep file {}", path.display()), Some(Box::new(e)))
        })?;
        if spec.grid.values().any(|v| v.is_empty()) {
            return Err(sweep_error(
                format!(
                    "sweep file {}: every [grid] key needs a non-empty list of values",
                    path.display()
                ),
                None,
            ));
        }
        if spec.grid.is_empty() && spec.variants.is_empty() {
            return Err(sweep_error(
                format!(
                    "sweep file {}: needs a [grid] or at least one [[variants]] table",
                    path.display()
                ),
                None,
            ));
        }
        Ok(spec)
    }

    /// The preset or config file every cell starts from, as `train` flags
    /// (`--preset <name>` or `--config <file>`) and as a config.
    pub fn base(&self, sweep_file: &Path) -> Result<(Vec<String>, RunConfig)> {
        if let Some(config) = &self.config {
            let path = sweep_file.parent().unwrap_or(Path::new(".")).join(config);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                sweep_error(
                    format!("reading config {}", path.display()),
                    Some(Box::new(e)),
                )
            })?;
            let cfg = toml::from_str(&text).map_err(|e| {
                sweep_error(format!("config {}", path.display()), Some(Box::new(e)))
            })?;
            return Ok((vec!["--config".into(), path.display().to_string()], cfg));
        }
        let cfg = match self.preset.as_str() {
            "quickstart" => RunConfig::quickstart(),
            "small" => RunConfig::small(),
            "paper" => RunConfig::paper(),
            other => {
                return Err(sweep_error(
                    format!("sweep preset `{other}`: expected quickstart, small or paper"),
                    None,
                ))
            }
        };
        Ok((vec!["--preset".into(), self.preset.clone()], cfg))
    }

    /// Every cell, in grid order, each checked against the config (unknown
    /// keys, wrong types and impossible values are refused here, naming the
    /// cell, before anything runs). `apply` sets a cell's `key=value`
    /// assignments on `base` (the command line's `--set` rules).
    pub fn cells<E>(
        &self,
        base: &RunConfig,
        apply: impl Fn(&RunConfig, &[String]) -> std::result::Result<RunConfig, E>,
    ) -> Result<Vec<Cell>>
    where
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let fixed: Vec<String> = self.set.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut cells = if self.variants.is_empty() {
            vec![Cell {
                name: String::new(),
                assignments: fixed,
            }]
        } else {
            self.variants
                .iter()
                .enumerate()
                .map(|(i, variant)| {
                    let name = match variant.get("name") {
                        Some(toml::Value::String(n)) if !n.is_empty() => folder_safe(n),
                        _ => {
                            return Err(sweep_error(
                                format!(
                                    "[[variants]] table {} needs a non-empty `name` string",
                                    i + 1
                                ),
                                None,
                            ))
                        }
                    };
                    let mut assignments = fixed.clone();
                    assignments.extend(
                        variant
                            .iter()
                            .filter(|(k, _)| k.as_str() != "name")
                            .map(|(k, v)| format!("{k}={v}")),
                    );
                    Ok(Cell { name, assignments })
                })
                .collect::<Result<Vec<_>>>()?
        };
        for (key, values) in &self.grid {
            let short = key.rsplit('.').next().unwrap_or(key);
            cells = cells
                .into_iter()
                .flat_map(|cell| {
                    values.iter().map(move |v| {
                        let part = format!("{short}-{}", folder_safe(&v.to_string()));
                        let mut assignments = cell.assignments.clone();
                        assignments.push(format!("{key}={v}"));
                        Cell {
                            name: if cell.name.is_empty() {
                                part
                            } else {
                                format!("{}__{part}", cell.name)
                            },
                            assignments,
                        }
                    })
                })
                .collect();
        }
        for cell in &cells {
            let in_cell = |source: Box<dyn std::error::Error + Send + Sync>| {
                sweep_error(format!("sweep cell {}", cell.name), Some(source))
            };
            let cfg = apply(base, &cell.assignments).map_err(|e| in_cell(e.into()))?;
            cfg.validate().map_err(|e| in_cell(Box::new(e)))?;
        }
        let mut names: Vec<&str> = cells.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(sweep_error(
                format!(
                    "two sweep cells would share the folder {}: variant names and the last parts of grid keys must be distinct",
                    w[0]
                ),
                None,
            ));
        }
        Ok(cells)
    }
}

/// Keeps letters, digits, `.`, `-` and `_`; the rest becomes `_`.
pub fn folder_safe(value: &str) -> String {
    value
        .trim_matches('"')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}
