//! Which examples an evaluation reads: the named datasets' splits,
//! preprocessed like the run, and the synthetic datasets.

use crate::error::Result;
use gpicl_tasks::batch::load_example_source;
use gpicl_tasks::tabular::TABULAR_DATASET;
use gpicl_tasks::{DataConfig, DataRoots, ExampleSource, Split, RANDOM_DATASET};

/// Loads `split` of each named dataset, preprocessed like the run. A name
/// may be a comma-separated mixture (`mnist,fashion_mnist`), evaluated as
/// one pool.
pub fn load_eval_sources(
    names: &[String],
    roots: &DataRoots,
    data: &DataConfig,
    split: Split,
    n_x: usize,
) -> Result<Vec<ExampleSource>> {
    names
        .iter()
        .map(|name| {
            Ok(if name == RANDOM_DATASET {
                ExampleSource::Random { n_x }
            } else if name == TABULAR_DATASET {
                ExampleSource::Tabular {
                    n_x,
                    options: data.table_options(),
                }
            } else {
                load_example_source(roots, name, split, data)?
            })
        })
        .collect()
}

/// The datasets `eval-ood` uses by default: every dataset with `split`
/// that can be found, plus `random`.
pub fn default_datasets(roots: &DataRoots, split: Split) -> Vec<String> {
    let mut names = roots.available(split);
    names.push(RANDOM_DATASET.to_string());
    names
}
