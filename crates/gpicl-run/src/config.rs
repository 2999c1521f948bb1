//! The configuration of a run, saved as its `config.toml`: which learner
//! ([`RunLearner`]), how it is meta-trained ([`TrainConfig`], which the
//! trainer of `gpicl-meta` reads) and how it is evaluated ([`EvalConfig`]).
//!
//! The file keeps the layout of every earlier run: the training options at
//! the top level and in their tables, then `[eval]`. The SGD baseline,
//! which has nothing to meta-train, is written `model.kind = "sgd"`.

use crate::error::{Result, RunError};
use gpicl_eval::EvalConfig;
use gpicl_meta::TrainConfig;
use gpicl_models::{ModelConfig, ModelKind};
use serde::{Deserialize, Serialize};

/// What a run evaluates (not to be confused with [`crate::predict::Learner`],
/// a learner fitted to data of one's own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunLearner {
    /// The sequence model of `model.kind`, meta-trained by `gpicl-meta`.
    #[default]
    MetaTrained,
    /// The SGD baseline of Table 2 ([`gpicl_eval::baselines::SgdBaseline`]): a
    /// fresh `model.learner_hidden`-unit MLP per sequence trained online at
    /// `model.learner_lr`; nothing to meta-train, only its evaluation.
    /// Written `model.kind = "sgd"`.
    SgdBaseline,
}

impl RunLearner {
    /// The `model.kind` name that selects the SGD baseline.
    pub const SGD_KIND: &'static str = "sgd";
}

/// Everything that determines a run: the learner, its meta-training and
/// its evaluation. Serialised as the run's `config.toml`, refusing unknown
/// keys.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunConfig {
    /// Meta-trained model or baseline.
    pub learner: RunLearner,
    /// Everything the trainer needs (for the SGD baseline: its
    /// `model.learner_*` options, the data, tasks and batch shape).
    pub train: TrainConfig,
    /// The evaluation protocol.
    pub eval: EvalConfig,
}

impl RunConfig {
    /// A meta-trained learner with `train` and the default protocol.
    pub fn meta_trained(train: TrainConfig) -> Self {
        Self {
            learner: RunLearner::MetaTrained,
            train,
            eval: EvalConfig::default(),
        }
    }

    /// The paper's reference run ([`TrainConfig::paper`]: the reference
    /// hyperparameters, every task projected and its labels permuted).
    pub fn paper() -> Self {
        Self::meta_trained(TrainConfig::paper())
    }

    /// [`TrainConfig::small`], evaluated on 16 tasks per group with 32
    /// sequences each.
    pub fn small() -> Self {
        let mut cfg = Self::meta_trained(TrainConfig::small());
        cfg.eval.tasks_per_group = 16;
        cfg.eval.seqs_per_task = 32;
        cfg
    }

    /// [`TrainConfig::quickstart`], the default of `cargo xtask train`:
    /// [`RunConfig::small`]'s protocol with periodic evaluation of MNIST,
    /// Fashion-MNIST and `random`.
    pub fn quickstart() -> Self {
        let mut cfg = Self::small();
        cfg.train = TrainConfig::quickstart();
        cfg.eval.periodic_datasets = ["mnist", "fashion_mnist", "random"]
            .map(String::from)
            .to_vec();
        cfg
    }

    /// Starts (or resumes) the meta-training of this run in `dir` (see
    /// [`gpicl_meta::Trainer::open_at`]), saving this config as its
    /// `config.toml`. The SGD baseline has nothing to meta-train and is
    /// refused.
    pub fn open_trainer(
        &self,
        dir: gpicl_meta::RunDir,
        roots: &gpicl_tasks::DataRoots,
        from_step: Option<u64>,
    ) -> Result<gpicl_meta::Trainer> {
        if self.learner == RunLearner::SgdBaseline {
            return Err(RunError::config(
                "model.kind",
                "`sgd` is a baseline with nothing to meta-train; evaluate it with `cargo xtask eval-ood --baseline sgd`",
            ));
        }
        self.validate()?;
        Ok(gpicl_meta::Trainer::open_saving(
            self.train.clone(),
            &self.to_toml()?,
            dir,
            roots,
            from_step,
        )?)
    }

    /// The learner's name in messages: `model.kind`, or `sgd`.
    pub fn learner_name(&self) -> String {
        match self.learner {
            RunLearner::MetaTrained => self.train.model.kind.to_string(),
            RunLearner::SgdBaseline => RunLearner::SGD_KIND.to_string(),
        }
    }

    /// The `config.toml` text.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| RunError::config("config", e.to_string()))
    }

    /// Reads a run's `config.toml`, refusing unknown keys, and validates
    /// every option but the device.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let corrupt = |reason: String| RunError::Input {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| corrupt(e.to_string()))?;
        let cfg: Self = toml::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        cfg.validate_options().map_err(|e| corrupt(e.to_string()))?;
        Ok(cfg)
    }

    /// Checks every option and that the device exists; called once before
    /// a run starts.
    pub fn validate(&self) -> Result<()> {
        self.validate_learner()?;
        self.train.validate()?;
        Ok(self.eval.validate()?)
    }

    /// Checks every option but the device (see
    /// [`TrainConfig::validate_options`]).
    pub fn validate_options(&self) -> Result<()> {
        self.validate_learner()?;
        self.train.validate_options()?;
        Ok(self.eval.validate()?)
    }

    fn validate_learner(&self) -> Result<()> {
        if self.learner == RunLearner::SgdBaseline
            && self.train.model.transformer.previous_token_input
        {
            return Err(RunError::config(
                "model.previous_token_input",
                "is a Transformer option; model.kind is `sgd` (set model.previous_token_input = false)",
            ));
        }
        Ok(())
    }
}

/// The `ModelKind` a baseline's `[model]` table is read with: the online
/// learner it shares with MAML (whose options, `learner_hidden` and
/// `learner_lr`, it uses).
const SGD_MODEL_KIND: ModelKind = ModelKind::Maml;

/// The TOML layout: [`TrainConfig`]'s keys, then `eval`.
#[derive(Serialize)]
struct Saved<'a> {
    #[serde(flatten)]
    train: &'a TrainConfig,
    /// Replaces the training config's `model` table in place (same key,
    /// same position) when the learner is a baseline.
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<BaselineModel<'a>>,
    eval: &'a EvalConfig,
}

/// A baseline's `[model]` table: the options, with `kind` replaced in place.
#[derive(Serialize)]
struct BaselineModel<'a> {
    #[serde(flatten)]
    model: &'a ModelConfig,
    kind: &'static str,
}

impl Serialize for RunConfig {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        Saved {
            train: &self.train,
            model: (self.learner == RunLearner::SgdBaseline).then_some(BaselineModel {
                model: &self.train.model,
                kind: RunLearner::SGD_KIND,
            }),
            eval: &self.eval,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RunConfig {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(deserializer)?;
        let eval = match table.remove("eval") {
            Some(value) => EvalConfig::deserialize(value).map_err(D::Error::custom)?,
            None => EvalConfig::default(),
        };
        let mut learner = RunLearner::MetaTrained;
        if let Some(kind) = table
            .get_mut("model")
            .and_then(toml::Value::as_table_mut)
            .and_then(|model| model.get_mut("kind"))
        {
            if kind.as_str() == Some(RunLearner::SGD_KIND) {
                learner = RunLearner::SgdBaseline;
                *kind = toml::Value::String(SGD_MODEL_KIND.to_string());
            }
        }
        let train =
            TrainConfig::deserialize(toml::Value::Table(table)).map_err(D::Error::custom)?;
        Ok(Self {
            learner,
            train,
            eval,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_testing::scratch_dir;

    #[test]
    fn the_quickstart_config_is_written_in_the_layout_of_earlier_runs() {
        let text = RunConfig::quickstart().to_toml().unwrap();
        let tables: Vec<&str> = text.lines().filter(|l| l.starts_with('[')).collect();
        assert_eq!(
            tables,
            [
                "[model]",
                "[data]",
                "[tasks]",
                "[batch]",
                "[optim]",
                "[schedule]",
                "[eval]"
            ]
        );
        assert!(text.starts_with("seed = 0\ndevice = \"cpu\"\nprecision = \"f32\"\n\n[model]\nkind = \"transformer\"\n"), "{text}");
        assert!(
            text.contains("[eval]\ndatasets = []\ntasks_per_group = 16\nseqs_per_task = 32\n"),
            "{text}"
        );
    }

    #[test]
    fn configs_round_trip_through_toml() {
        for cfg in [
            RunConfig::quickstart(),
            RunConfig::small(),
            RunConfig::paper(),
        ] {
            let text = cfg.to_toml().unwrap();
            assert_eq!(toml::from_str::<RunConfig>(&text).unwrap(), cfg);
        }
    }

    #[test]
    fn model_kind_sgd_selects_the_sgd_baseline_and_is_written_back_as_sgd() {
        let mut cfg: RunConfig =
            toml::from_str("[model]\nkind = \"sgd\"\nlearner_lr = 0.01\n").unwrap();
        assert_eq!(cfg.learner, RunLearner::SgdBaseline);
        assert_eq!(cfg.train.model.online.lr, 0.01);
        assert_eq!(cfg.learner_name(), "sgd");
        let text = cfg.to_toml().unwrap();
        assert!(
            text.contains("[model]\nkind = \"sgd\"\nd_model = 512\n"),
            "{text}"
        );
        assert_eq!(toml::from_str::<RunConfig>(&text).unwrap(), cfg);
        cfg.train.model.transformer.previous_token_input = true;
        let err = cfg.validate_options().unwrap_err().to_string();
        assert!(
            err.contains("previous_token_input") && err.contains("sgd"),
            "{err}"
        );
    }

    #[test]
    fn the_training_config_reads_a_run_config_skipping_the_evaluation() {
        let dir = scratch_dir("runcfg");
        let path = dir.join("config.toml");
        std::fs::write(&path, RunConfig::quickstart().to_toml().unwrap()).unwrap();
        assert_eq!(TrainConfig::load(&path).unwrap(), TrainConfig::quickstart());
        assert_eq!(RunConfig::load(&path).unwrap(), RunConfig::quickstart());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_keys_are_refused_in_every_table() {
        for text in [
            "[optim]\nlearning_rate = 1.0",
            "[eval]\nseqs = 1",
            "evaluation = 1",
            "[model]\nkind = \"sgd\"\nwidth = 3",
        ] {
            assert!(toml::from_str::<RunConfig>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn impossible_evaluation_options_are_refused_by_name() {
        let mut c = RunConfig::default();
        c.eval.chunk_size = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("eval.chunk_size"));
    }

    #[test]
    fn the_shipped_run_configs_load_and_are_written_back_byte_for_byte() {
        let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models");
        let mut seen = 0;
        for entry in std::fs::read_dir(&models).unwrap() {
            let path = entry.unwrap().path().join("config.toml");
            if !path.is_file() {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let cfg = RunConfig::load(&path).unwrap();
            assert_eq!(cfg.to_toml().unwrap(), text, "{}", path.display());
            seen += 1;
        }
        assert!(seen > 0, "no shipped learner under {}", models.display());
    }
}
