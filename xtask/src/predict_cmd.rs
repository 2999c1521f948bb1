//! `cargo xtask predict`: a meta-trained learner on data of one's own. The
//! training rows (a table or an image folder) become its context, every
//! test row a query; writes each row's predicted label and class
//! probabilities as CSV.

use crate::data_cmd::Channels;
use anyhow::{bail, Context, Result};
use clap::Args;
use gpicl::eval::classical::{knn_predict, Classifier, LogisticRegression};
use gpicl::eval::trees::{GradientBoosting, RandomForest};
use gpicl::run::predict::report::{accuracy, log_loss, majority_class, predictions_csv};
use gpicl::run::predict::{
    index_classes, most_probable, stratified_subset, Learner, PredictOptions, Scaling, Squares,
};
use gpicl::tasks::hub::{
    fetch_model, verify_model_manifest, HubModelRef, HubOptions, MODEL_MANIFEST,
};
use gpicl::tasks::own_data::{self, Examples};
use std::io::Write;
use std::path::PathBuf;

#[derive(Args)]
pub struct PredictArgs {
    /// The learner: an exported folder (models/<name>), a run directory, or
    /// hf://owner/repo[@revision] on the Hugging Face Hub (honours HF_HOME,
    /// HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE).
    #[arg(long, value_name = "DIR|hf://…")]
    learner: String,
    /// Training examples: a .csv/.parquet table with a label column, or an
    /// image folder (one sub-folder per class; with train/ and test/
    /// sub-folders --test may be left out).
    #[arg(long, value_name = "FILE|DIR")]
    train: PathBuf,
    /// Queries: a table with the training table's feature columns (the label
    /// column optional), an image folder with class sub-folders, or a folder
    /// of loose images. Labelled queries also get an accuracy.
    #[arg(long, value_name = "FILE|DIR")]
    test: Option<PathBuf>,
    /// Tables: the label column.
    #[arg(long, default_value = "label")]
    label: String,
    /// Write the predictions here instead of to standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Ensemble members (projections × label assignments × context orders); raised where more than 99 training rows or more than 10 classes need more.
    #[arg(long, default_value_t = 8)]
    ensemble: usize,
    /// Seed of the ensemble (and of --train-rows).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use only this many training rows, drawn with --seed, classes taking
    /// turns (to compare at 10, 50, 100 examples).
    #[arg(long, value_name = "N")]
    train_rows: Option<usize>,
    /// Image folders: resize to this square side [default: the size the
    /// learner was meta-trained at].
    #[arg(long)]
    image_size: Option<usize>,
    /// Image folders: read images as gray (default) or rgb.
    #[arg(long, value_enum, default_value = "gray")]
    channels: Channels,
    /// Feature normalisation before the projection [default: per-feature
    /// for tables, global (one mean and std over all pixels, as in
    /// meta-training) for image folders].
    #[arg(long, value_enum)]
    scaling: Option<ScalingArg>,
    /// Which ensemble members also read the squared z-scores of the
    /// features [default: half for tables, none for image folders].
    #[arg(long, value_enum)]
    squares: Option<SquaresArg>,
    /// Clip the z-scored features to ±CLIP before the projection, 0 for
    /// none [default: 2 for tables, 0 for image folders].
    #[arg(long, value_name = "CLIP")]
    clip: Option<f32>,
    /// Fill every member's context to the 99 rows the learner holds:
    /// fewer rows are read again, more are topped up from the other
    /// members' parts [default: on for tables, off for image folders].
    #[arg(long, value_name = "BOOL")]
    fill_contexts: Option<bool>,
    /// Also fit 1-NN, 5-NN, logistic regression, a random forest and
    /// gradient boosting on the same training rows and print their test
    /// accuracy (and log-loss) next to the learner's.
    #[arg(long)]
    compare: bool,
    /// Divide the logits by one temperature fitted on the context's own
    /// held-out predictions (off by default: it helped on some tables and
    /// hurt on others, docs/predict.md).
    #[arg(long)]
    calibrate: bool,
}

/// `--scaling`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ScalingArg {
    PerFeature,
    Global,
}

/// `--squares`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum SquaresArg {
    None,
    Half,
    All,
}

/// Reads the training examples and the queries
/// ([`gpicl::tasks::own_data::read_examples`]).
fn read_examples(args: &PredictArgs, image_size: usize) -> Result<(Examples, Examples)> {
    Ok(own_data::read_examples(
        &args.train,
        args.test.as_deref(),
        &args.label,
        args.image_size.unwrap_or(image_size),
        args.channels.policy(),
    )?)
}

/// The largest `--ensemble`.
const MAX_ENSEMBLE: usize = 1024;
/// The largest `--image-size`.
const MAX_IMAGE_SIZE: usize = 512;

/// Refuses sizes that would exhaust memory, and an `--out` that is one of
/// the inputs.
fn check_args(args: &PredictArgs) -> Result<()> {
    if args.ensemble == 0 || args.ensemble > MAX_ENSEMBLE {
        bail!(
            "--ensemble {}: expected 1 to {MAX_ENSEMBLE} members (each holds its own projection of the data)",
            args.ensemble
        );
    }
    if args.image_size.is_some_and(|s| s > MAX_IMAGE_SIZE) {
        bail!(
            "--image-size {}: at most {MAX_IMAGE_SIZE} is supported (the images are projected from size² × channels features)",
            args.image_size.unwrap_or(0)
        );
    }
    if let Some(out) = &args.out {
        if let Ok(out_real) = std::fs::canonicalize(out) {
            let inputs = std::iter::once(("--train", &args.train))
                .chain(args.test.as_ref().map(|t| ("--test", t)));
            for (flag, input) in inputs {
                if std::fs::canonicalize(input).is_ok_and(|i| i == out_real) {
                    bail!(
                        "--out {} is the same file as {flag} {}: it would overwrite the input; write the predictions elsewhere",
                        out.display(),
                        input.display()
                    );
                }
            }
        }
    }
    Ok(())
}

pub fn run(args: PredictArgs) -> Result<()> {
    check_args(&args)?;
    let learner_dir = match HubModelRef::parse(&args.learner) {
        Some(reference) => {
            let reference = reference?;
            fetch_model(&reference, &HubOptions::from_env())
                .with_context(|| format!("fetching the learner {}", args.learner))?
        }
        None => {
            // An exported learner lists its files' sha256 in manifest.json:
            // check them, as for hf:// learners (a run folder has none).
            let dir = PathBuf::from(&args.learner);
            if dir.join(MODEL_MANIFEST).is_file() {
                verify_model_manifest(&dir)
                    .with_context(|| format!("checking the learner {}", dir.display()))?;
            }
            dir
        }
    };
    let scaling = match args.scaling {
        Some(ScalingArg::PerFeature) => Scaling::PerFeature,
        Some(ScalingArg::Global) => Scaling::Global,
        None if args.train.is_dir() => Scaling::Global,
        None => Scaling::PerFeature,
    };
    let squares = match args.squares {
        Some(SquaresArg::None) => Squares::None,
        Some(SquaresArg::Half) => Squares::Half,
        Some(SquaresArg::All) => Squares::All,
        None if args.train.is_dir() => Squares::None,
        None => Squares::Half,
    };
    let clip = match args.clip {
        Some(clip) if clip.is_finite() && clip >= 0.0 => clip,
        Some(clip) => bail!("--clip: expected a non-negative number (0: no clipping), got {clip}"),
        None if args.train.is_dir() => 0.0,
        None => 2.0,
    };
    let fill_contexts = args.fill_contexts.unwrap_or(!args.train.is_dir());
    let options = PredictOptions {
        ensemble: args.ensemble,
        seed: args.seed,
        scaling,
        clip,
        squares,
        fill_contexts,
        calibrate: args.calibrate,
        ..PredictOptions::default()
    };
    let learner = Learner::load(&learner_dir, options)
        .with_context(|| format!("loading the learner {}", learner_dir.display()))?;
    let (mut train, test) = read_examples(&args, learner.image_size())?;
    // Classes are numbered over the whole training file, so the probability
    // columns keep one order whichever rows --train-rows and --seed keep.
    let (classes, mut y) = index_classes(&train.labels);
    if let Some(n) = args.train_rows {
        if n == 0 {
            bail!("--train-rows must be at least 1");
        }
        let keep = stratified_subset(&y, n, args.seed);
        train.x = keep.iter().map(|&i| train.x[i].clone()).collect();
        train.labels = keep.iter().map(|&i| train.labels[i].clone()).collect();
        y = keep.iter().map(|&i| y[i]).collect();
    }
    let say = |line: String| {
        if args.out.is_some() {
            outln!("{line}");
        } else {
            errln!("{line}");
        }
    };
    let fit_started = std::time::Instant::now();
    let fitted = learner.fit(&train.x, &y)?;
    let fit_seconds = fit_started.elapsed().as_secs_f64();
    if train.x.len() > learner.context_len() || classes.len() > learner.max_classes() {
        say(format!(
            "note: {} training rows of {} classes, the learner's context holds {} rows of {} labels: {} ensemble members (asked for {}), whose contexts of {} rows cover every training row{}",
            train.x.len(),
            classes.len(),
            learner.context_len(),
            learner.max_classes(),
            fitted.members(),
            args.ensemble,
            fitted.context_rows(),
            if classes.len() > learner.max_classes() {
                ", each mapping the classes onto the labels by its own output code"
            } else {
                ""
            }
        ));
    }
    let query_started = std::time::Instant::now();
    let bar = crate::progress::count_bar("predicting", "queries");
    let proba = fitted.predict_proba_telling(&test.x, &|done, all| {
        bar.set_length(all as u64);
        bar.set_position(done as u64);
    });
    bar.finish_and_clear();
    let proba = proba?;
    let query_seconds = query_started.elapsed().as_secs_f64();
    say(format!(
        "timing: {} contexts of {} rows read in {:.1} ms; {} queries in {:.1} ms ({:.3} ms per query)",
        fitted.members(),
        fitted.context_rows(),
        fit_seconds * 1e3,
        test.x.len(),
        query_seconds * 1e3,
        query_seconds * 1e3 / test.x.len().max(1) as f64
    ));
    if let Some((row, _)) = proba
        .iter()
        .enumerate()
        .find(|(_, p)| p.iter().any(|v| !v.is_finite()))
    {
        let source = args.test.as_ref().unwrap_or(&args.train);
        bail!(
            "the class probabilities of query row {row} of {} are not finite: its features (or the training rows') are too large for f32 arithmetic; rescale the columns",
            source.display()
        );
    }
    let predicted = most_probable(&proba);
    let actual: Vec<Option<usize>> = test
        .labels
        .iter()
        .map(|l| classes.iter().position(|c| c == l))
        .collect();
    let unknown: Vec<&String> = test
        .labels
        .iter()
        .zip(&actual)
        .filter(|(_, a)| a.is_none())
        .map(|(l, _)| l)
        .collect();
    if let Some(first) = unknown.first() {
        say(format!(
            "note: {} test rows have labels no training row has (e.g. `{first}`); they count as wrong",
            unknown.len()
        ));
    }

    let csv = predictions_csv(&classes, &test.files, &test.labels, &proba, &predicted);
    match &args.out {
        Some(path) => {
            std::fs::write(path, &csv).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout().write_all(csv.as_bytes())?,
    }

    say(format!(
        "{} queries, {} classes, {} training rows, learner {} (step {}), ensemble {} (seed {})",
        test.x.len(),
        classes.len(),
        train.x.len(),
        learner_dir.display(),
        learner.step(),
        fitted.members(),
        args.seed
    ));
    if test.labels.is_empty() {
        if args.compare {
            say("note: --compare needs labelled queries".into());
        }
        return Ok(());
    }
    say(format!(
        "accuracy  gpicl learner        {:.3}   log-loss {:.3} (temperature {:.2})",
        accuracy(&predicted, &actual),
        log_loss(&proba, &actual),
        fitted.temperature()
    ));
    if args.compare {
        say(format!(
            "accuracy  1-nearest neighbour  {:.3}",
            accuracy(&knn_predict(&train.x, &y, &test.x, 1), &actual)
        ));
        say(format!(
            "accuracy  5-nearest neighbours {:.3}",
            accuracy(&knn_predict(&train.x, &y, &test.x, 5), &actual)
        ));
        let logistic = LogisticRegression::fit(&train.x, &y, classes.len(), 1.0);
        say(format!(
            "accuracy  logistic regression  {:.3}   log-loss {:.3}",
            accuracy(&logistic.predict(&test.x), &actual),
            log_loss(&logistic.predict_proba(&test.x), &actual)
        ));
        let forest = RandomForest::fit(&train.x, &y, classes.len(), args.seed);
        say(format!(
            "accuracy  random forest        {:.3}   log-loss {:.3}",
            accuracy(&forest.predict(&test.x), &actual),
            log_loss(&forest.predict_proba(&test.x), &actual)
        ));
        let boosting = GradientBoosting::fit(&train.x, &y, classes.len());
        say(format!(
            "accuracy  gradient boosting    {:.3}   log-loss {:.3}",
            accuracy(&boosting.predict(&test.x), &actual),
            log_loss(&boosting.predict_proba(&test.x), &actual)
        ));
        say(format!(
            "accuracy  majority class       {:.3}",
            accuracy(
                &vec![majority_class(&y, classes.len()); test.x.len()],
                &actual
            )
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl::tasks::table::csv_field;
    use gpicl_testing::scratch_dir;

    fn shipped() -> String {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/gpicl-quickstart-7px")
            .display()
            .to_string()
    }

    fn args(train: PathBuf, test: Option<PathBuf>, out: PathBuf) -> PredictArgs {
        PredictArgs {
            learner: shipped(),
            train,
            test,
            label: "species".into(),
            out: Some(out),
            ensemble: 2,
            seed: 0,
            train_rows: None,
            image_size: None,
            channels: Channels::Gray,
            scaling: None,
            squares: None,
            clip: None,
            fill_contexts: None,
            compare: true,
            calibrate: false,
        }
    }

    #[test]
    fn an_out_file_that_is_an_input_or_absurd_sizes_are_refused_before_anything_is_read() {
        let dir = scratch_dir("out-is-input");
        let train = dir.join("train.csv");
        std::fs::write(&train, "a,species\n1,x\n2,y\n").unwrap();
        let before = std::fs::read(&train).unwrap();
        let same = dir.join(".").join("train.csv");
        let err = run(args(train.clone(), Some(train.clone()), same))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--out") && err.contains("overwrite"), "{err}");
        assert_eq!(std::fs::read(&train).unwrap(), before);
        let mut huge = args(train.clone(), Some(train.clone()), dir.join("p.csv"));
        huge.ensemble = 4_000_000_000;
        let err = run(huge).unwrap_err().to_string();
        assert!(err.contains("--ensemble") && err.contains("1024"), "{err}");
        let mut big = args(train.clone(), Some(train.clone()), dir.join("p.csv"));
        big.image_size = Some(100_000);
        let err = run(big).unwrap_err().to_string();
        assert!(err.contains("--image-size") && err.contains("512"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_local_learner_whose_files_do_not_match_its_manifest_is_refused() {
        let dir = scratch_dir("tampered-learner");
        let learner = dir.join("learner");
        std::fs::create_dir_all(&learner).unwrap();
        std::fs::write(learner.join("config.toml"), "seed = 1\n").unwrap();
        std::fs::write(
            learner.join(MODEL_MANIFEST),
            format!(r#"{{"sha256":{{"config.toml":"{}"}}}}"#, "0".repeat(64)),
        )
        .unwrap();
        let train = dir.join("train.csv");
        std::fs::write(&train, "a,species\n1,x\n2,y\n").unwrap();
        let mut a = args(train.clone(), Some(train), dir.join("p.csv"));
        a.learner = learner.display().to_string();
        let err = format!("{:#}", run(a).unwrap_err());
        assert!(
            err.contains("config.toml") && err.contains("sha256"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn csv_cells_that_a_spreadsheet_would_run_as_formulas_are_defused() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("-1.5"), "-1.5");
        assert_eq!(csv_field("cat"), "cat");
    }

    #[test]
    fn a_table_gets_one_csv_row_per_query_with_label_and_probabilities() {
        let dir = scratch_dir("table");
        // Two classes split by the sign of `a`; `b` is noise. The test table
        // lists the columns in another order and has no label column.
        let mut train = String::from("a,species,b\n");
        for i in 0..20 {
            let a = if i % 2 == 0 {
                1.0 + i as f32 * 0.05
            } else {
                -1.0 - i as f32 * 0.05
            };
            let name = if i % 2 == 0 { "cat, large" } else { "dog" };
            train.push_str(&format!("{a},\"{name}\",{}\n", (i * 7 % 5) as f32 * 0.1));
        }
        std::fs::write(dir.join("train.csv"), train).unwrap();
        std::fs::write(dir.join("test.csv"), "b,a\n0.1,1.2\n0.3,-1.3\n0.2,0.9\n").unwrap();
        let out = dir.join("predictions.csv");
        run(args(
            dir.join("train.csv"),
            Some(dir.join("test.csv")),
            out.clone(),
        ))
        .unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "row,predicted,\"p_cat, large\",p_dog");
        assert_eq!(lines.len(), 4);
        assert!(lines[1].starts_with("0,\"cat, large\","), "{}", lines[1]);
        assert!(lines[2].starts_with("1,dog,"), "{}", lines[2]);
        let p: Vec<f32> = lines[3]
            .rsplit(',')
            .take(2)
            .map(|v| v.parse().unwrap())
            .collect();
        assert!((p[0] + p[1] - 1.0).abs() < 1e-4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_probability_columns_keep_their_order_whatever_rows_are_kept() {
        let dir = scratch_dir("column-order");
        let mut train = String::from("a,label\n");
        for i in 0..30 {
            train.push_str(&format!("{},{}\n", i % 3, ["ant", "bee", "cow"][i % 3]));
        }
        std::fs::write(dir.join("train.csv"), train).unwrap();
        std::fs::write(dir.join("test.csv"), "a\n0\n2\n").unwrap();
        let mut headers = std::collections::BTreeSet::new();
        for seed in 0..6 {
            let out = dir.join(format!("p{seed}.csv"));
            let mut a = args(
                dir.join("train.csv"),
                Some(dir.join("test.csv")),
                out.clone(),
            );
            a.label = "label".into();
            a.compare = false;
            a.train_rows = Some(2);
            a.seed = seed;
            run(a).unwrap();
            let text = std::fs::read_to_string(&out).unwrap();
            headers.insert(text.lines().next().unwrap().to_string());
        }
        assert_eq!(
            headers.into_iter().collect::<Vec<_>>(),
            ["row,predicted,p_ant,p_bee,p_cow"]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_image_folder_with_splits_needs_no_test_flag_and_eleven_classes_are_predicted() {
        let dir = scratch_dir("images");
        for (class, value) in [("bright", 230u8), ("dark", 20)] {
            for split in ["train", "test"] {
                let folder = dir.join(split).join(class);
                std::fs::create_dir_all(&folder).unwrap();
                for i in 0..4u8 {
                    image::GrayImage::from_fn(9, 9, |x, y| {
                        image::Luma([value.wrapping_add(((x + y) as u8 + i) % 7)])
                    })
                    .save(folder.join(format!("{i}.png")))
                    .unwrap();
                }
            }
        }
        let out = dir.join("p.csv");
        run(args(dir.clone(), None, out.clone())).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let rows: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(rows.len(), 8);
        let right = rows
            .iter()
            .filter(|r| {
                let cells: Vec<&str> = r.split(',').collect();
                cells[2] == cells[3]
            })
            .count();
        assert!(right >= 7, "{text}");

        let many = scratch_dir("many");
        for c in 0..11 {
            let folder = many.join(format!("c{c:02}"));
            std::fs::create_dir_all(&folder).unwrap();
            image::GrayImage::from_pixel(4, 4, image::Luma([c as u8 * 20]))
                .save(folder.join("a.png"))
                .unwrap();
        }
        run(args(many.clone(), Some(many.clone()), out.clone())).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.lines().next().unwrap().ends_with(",p_c10"), "{text}");
        assert_eq!(text.lines().count(), 12, "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::remove_dir_all(&many).unwrap();
    }
}
