//! Applying `--set key=value` overrides to a config through its TOML form.

use anyhow::{anyhow, bail, Context, Result};
use serde::{de::DeserializeOwned, Serialize};

/// Sets each dotted `key=value` in `cfg`. Values are TOML literals
/// (`1e-3`, `true`, `"mnist"`, `[1, 2]`); bare words are strings. Unknown
/// keys and wrongly typed values are refused with the key's name.
pub fn apply<T: Serialize + DeserializeOwned>(cfg: &T, assignments: &[String]) -> Result<T> {
    let mut root = toml::Value::try_from(cfg).context("config cannot be represented as TOML")?;
    for assignment in assignments {
        let (key, raw) = assignment.split_once('=').ok_or_else(|| {
            anyhow!("--set `{assignment}`: expected key=value, e.g. optim.lr=3e-4")
        })?;
        let key = key.trim();
        let mut slot = &mut root;
        let parts: Vec<&str> = key.split('.').collect();
        let mut unwritten = None;
        for (i, part) in parts.iter().enumerate() {
            let table = slot
                .as_table_mut()
                .ok_or_else(|| anyhow!("--set `{key}`: `{part}` is not inside a table"))?;
            let known: Vec<String> = table.keys().cloned().collect();
            if !table.contains_key(*part) && i + 1 == parts.len() {
                // An option left out of the written form at its default
                // (e.g. `model.input_layer_norm`): the config type decides
                // below whether it exists.
                let value = parse_value(raw.trim(), &untyped(raw.trim()))?;
                table.insert(part.to_string(), value);
                unwritten = Some(known.clone());
            }
            slot = table.get_mut(*part).ok_or_else(|| {
                anyhow!(
                    "--set `{key}`: unknown key `{part}`; expected one of: {}",
                    known.join(", ")
                )
            })?;
        }
        match unwritten {
            Some(known) => {
                if let Err(e) = root.clone().try_into::<T>() {
                    if e.message().contains("unknown field") {
                        bail!(
                            "--set `{key}`: unknown key `{}`; expected one of: {}",
                            parts[parts.len() - 1],
                            known.join(", ")
                        );
                    }
                }
            }
            None => {
                *slot = parse_value(raw.trim(), slot).with_context(|| format!("--set `{key}`"))?
            }
        }
    }
    root.try_into()
        .map_err(|e: toml::de::Error| anyhow!("--set: {}", e.message()))
}

/// `raw` read as a TOML literal, or as a string when it is not one.
fn untyped(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn parse_value(raw: &str, current: &toml::Value) -> Result<toml::Value> {
    let parsed = untyped(raw);
    Ok(match (current, parsed) {
        (toml::Value::Float(_), toml::Value::Integer(i)) => toml::Value::Float(i as f64),
        (toml::Value::String(_), v @ toml::Value::String(_)) => v,
        // A string option given a number (`data.dataset=123`) keeps the text.
        (toml::Value::String(_), _) => toml::Value::String(raw.trim_matches('"').to_string()),
        (toml::Value::Array(_), toml::Value::String(s)) => toml::Value::Array(
            s.split(',')
                .filter(|p| !p.is_empty())
                .map(|p| toml::Value::String(p.trim().to_string()))
                .collect(),
        ),
        (cur, new) if std::mem::discriminant(cur) != std::mem::discriminant(&new) => {
            bail!("expected a {} value, got `{raw}`", cur.type_str())
        }
        (_, new) => new,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl::meta::TrainConfig;
    use gpicl::run::RunConfig;

    #[test]
    fn options_left_out_of_the_written_config_at_their_default_can_be_set() {
        let base = TrainConfig::default();
        assert!(!toml::to_string(&base).unwrap().contains("input_layer_norm"));
        let cfg = apply(
            &base,
            &[
                "model.input_layer_norm=true".into(),
                "data.feature_normalization=per-sequence".into(),
            ],
        )
        .unwrap();
        assert!(cfg.model.transformer.input_layer_norm);
        assert_eq!(
            cfg.data.feature_normalization,
            gpicl::tasks::FeatureNormalization::PerSequence
        );
        let err = apply(&base, &["model.input_layer_nrom=true".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key `input_layer_nrom`"), "{err}");
        let err = apply(&base, &["data.feature_normalization=sideways".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("sideways"), "{err}");
    }

    #[test]
    fn nested_keys_are_set_with_their_types() {
        let cfg = apply(
            &TrainConfig::default(),
            &[
                "optim.lr=3e-4".into(),
                "model.d_model=64".into(),
                "data.dataset=fashion_mnist".into(),
                "optim.eps=1".into(),
            ],
        )
        .unwrap();
        assert_eq!(cfg.optim.lr, 3e-4);
        assert_eq!(cfg.model.transformer.d_model, 64);
        assert_eq!(cfg.data.dataset, "fashion_mnist");
        assert_eq!(cfg.optim.eps, 1.0);
    }

    #[test]
    fn lists_can_be_given_comma_separated() {
        let cfg = apply(
            &RunConfig::default(),
            &["eval.datasets=mnist,random".into()],
        )
        .unwrap();
        assert_eq!(cfg.eval.datasets, vec!["mnist", "random"]);
    }

    #[test]
    fn a_run_config_takes_the_sgd_baseline_and_refuses_unknown_keys_by_name() {
        let cfg = apply(
            &RunConfig::small(),
            &["model.kind=sgd".into(), "eval.seqs_per_task=3".into()],
        )
        .unwrap();
        assert_eq!(cfg.learner, gpicl::run::RunLearner::SgdBaseline);
        assert_eq!(cfg.eval.seqs_per_task, 3);
        let err = apply(&RunConfig::small(), &["eval.seqs=1".into()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("seqs") && err.contains("seqs_per_task"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key() {
        let err = apply(&TrainConfig::default(), &["optim.learning_rate=1".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("learning_rate") && err.contains("lr"), "{err}");
        let err = format!(
            "{:#}",
            apply(&TrainConfig::default(), &["model.d_model=big".into()]).unwrap_err()
        );
        assert!(err.contains("model.d_model"), "{err}");
    }
}
