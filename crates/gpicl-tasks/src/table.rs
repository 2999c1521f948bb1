//! Tables of your own: a CSV file with a header row, or a parquet file,
//! with one named label column and numeric feature columns. Read in full
//! precision for `predict`, or imported into the cache as a dataset.

use crate::error::{Result, TaskError};
use std::path::{Path, PathBuf};

/// A table's examples.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// The file it was read from.
    pub path: PathBuf,
    /// Feature column names, in file order.
    pub features: Vec<String>,
    /// `[rows, features]`, row-major.
    pub x: Vec<f32>,
    /// Each row's label, as written (empty for a query table without labels).
    pub labels: Vec<String>,
}

impl Table {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.x.len() / self.features.len().max(1)
    }

    /// Whether every row has a label (a query table may have none).
    pub fn is_labelled(&self) -> bool {
        !self.labels.is_empty()
    }

    /// Features of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        let d = self.features.len();
        &self.x[i * d..(i + 1) * d]
    }
}

fn corrupt(path: &Path, reason: String) -> TaskError {
    TaskError::Corrupt {
        path: path.to_path_buf(),
        reason,
    }
}

/// Reads a `.csv` or `.parquet` table whose label column is `label_column`;
/// every other column must be numeric.
pub fn read_table(path: &Path, label_column: &str) -> Result<Table> {
    read_any(path, label_column, true)
}

/// Reads a table of queries: like [`read_table`], but the label column may
/// be missing (then [`Table::labels`] is empty).
pub fn read_query_table(path: &Path, label_column: &str) -> Result<Table> {
    read_any(path, label_column, false)
}

/// The features of `table` reordered to `names` (another table's feature
/// columns), refusing a missing or extra column.
pub fn align_features(table: &Table, names: &[String]) -> Result<Vec<f32>> {
    if table.features == names {
        return Ok(table.x.clone());
    }
    let mut order = Vec::with_capacity(names.len());
    for name in names {
        let at = table
            .features
            .iter()
            .position(|f| f == name)
            .ok_or_else(|| {
                corrupt(
                    &table.path,
                    format!("has no feature column `{name}`, which the training table has"),
                )
            })?;
        order.push(at);
    }
    if let Some(extra) = table.features.iter().find(|f| !names.contains(f)) {
        return Err(corrupt(
            &table.path,
            format!("has a feature column `{extra}` the training table lacks"),
        ));
    }
    let d = table.features.len();
    Ok((0..table.rows())
        .flat_map(|r| order.iter().map(move |&j| (r, j)))
        .map(|(r, j)| table.x[r * d + j])
        .collect())
}

fn check_width(path: &Path, columns: usize) -> Result<()> {
    if columns > MAX_FEATURE_COLUMNS + 1 {
        return Err(corrupt(
            path,
            format!(
                "has {columns} columns; at most {MAX_FEATURE_COLUMNS} feature columns are supported (the learner's projections need columns × N_x × --ensemble floats): select or reduce the columns first"
            ),
        ));
    }
    Ok(())
}

fn read_any(path: &Path, label_column: &str, label_required: bool) -> Result<Table> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let table = match ext.as_deref() {
        Some("csv") => read_csv(path, label_column, label_required)?,
        Some("parquet") => read_parquet_table(path, label_column, label_required)?,
        _ => {
            return Err(corrupt(
                path,
                "expected a .csv or .parquet table (or a folder of images)".into(),
            ))
        }
    };
    check_width(path, table.features.len())?;
    if let Some((i, v)) = table
        .x
        .iter()
        .enumerate()
        .find(|(_, v)| v.abs() > MAX_FEATURE_MAGNITUDE)
    {
        let d = table.features.len().max(1);
        return Err(corrupt(
            path,
            format!(
                "row {}, column `{}`: {v:e} is larger in magnitude than {MAX_FEATURE_MAGNITUDE:e}, which normalising in f32 cannot handle: rescale the column",
                i / d + 1,
                table.features.get(i % d).map_or("?", String::as_str)
            ),
        ));
    }
    if table.features.is_empty() {
        return Err(corrupt(
            path,
            format!("has no feature column besides the label column `{label_column}`"),
        ));
    }
    if table.x.is_empty() {
        return Err(corrupt(path, "holds no rows".into()));
    }
    Ok(table)
}

/// The largest magnitude a feature may have: squares and differences of
/// larger values overflow `f32` when columns are normalised.
pub const MAX_FEATURE_MAGNITUDE: f32 = 1e18;

/// The most feature columns a table may have: the learner's random
/// projections take `columns × N_x × --ensemble` floats.
pub const MAX_FEATURE_COLUMNS: usize = 100_000;

fn parse_number(path: &Path, row: usize, column: &str, cell: &str) -> Result<f32> {
    match cell.trim().parse::<f32>() {
        Ok(v) if v.is_finite() && v.abs() > MAX_FEATURE_MAGNITUDE => Err(corrupt(
            path,
            format!(
                "row {row} (line {}), column `{column}`: `{cell}` is larger in magnitude than {MAX_FEATURE_MAGNITUDE:e}, which normalising in f32 cannot handle: rescale the column",
                row + 1
            ),
        )),
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(corrupt(
            path,
            format!(
                "row {row} (line {}), column `{column}`: `{cell}` is not a finite number",
                row + 1
            ),
        )),
    }
}

fn read_csv(path: &Path, label_column: &str, label_required: bool) -> Result<Table> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| corrupt(path, e.to_string()))?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| corrupt(path, format!("header: {e}")))?
        .iter()
        .map(String::from)
        .collect();
    check_width(path, header.len())?;
    let label_at = header.iter().position(|h| h == label_column);
    if label_at.is_none() && label_required {
        return Err(corrupt(
            path,
            format!(
                "has no column `{label_column}` (pass --label NAME); its columns are {}",
                header.join(", ")
            ),
        ));
    }
    let features: Vec<String> = header
        .iter()
        .enumerate()
        .filter(|&(i, _)| Some(i) != label_at)
        .map(|(_, h)| h.clone())
        .collect();
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    for (index, record) in reader.records().enumerate() {
        let row = index + 1;
        let record = record.map_err(|e| corrupt(path, format!("row {row}: {e}")))?;
        for (i, cell) in record.iter().enumerate() {
            if Some(i) == label_at {
                if cell.is_empty() {
                    return Err(corrupt(path, format!("row {row}: the label is empty")));
                }
                labels.push(cell.to_string());
            } else {
                x.push(parse_number(path, row, &header[i], cell)?);
            }
        }
    }
    Ok(Table {
        path: path.to_path_buf(),
        features,
        x,
        labels,
    })
}

fn read_parquet_table(path: &Path, label_column: &str, label_required: bool) -> Result<Table> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let file = std::fs::File::open(path).map_err(|source| TaskError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = SerializedFileReader::new(file)
        .map_err(|e| corrupt(path, format!("not a readable parquet file: {e}")))?;
    let columns: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    if label_required && !columns.iter().any(|c| c == label_column) {
        return Err(corrupt(
            path,
            format!(
                "has no column `{label_column}` (pass --label NAME); its columns are {}",
                columns.join(", ")
            ),
        ));
    }
    let features: Vec<String> = columns
        .iter()
        .filter(|c| *c != label_column)
        .cloned()
        .collect();
    let (mut x, mut labels) = (Vec::new(), Vec::new());
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| corrupt(path, format!("cannot read rows: {e}")))?;
    for (index, row) in rows.enumerate() {
        let row_number = index + 1;
        let row = row.map_err(|e| corrupt(path, format!("row {row_number}: {e}")))?;
        let mut features_seen = 0;
        for (name, field) in row.get_column_iter() {
            let text = match field {
                Field::Str(s) => s.clone(),
                Field::Null => String::new(),
                other => other.to_string(),
            };
            if name == label_column {
                if text.is_empty() {
                    return Err(corrupt(
                        path,
                        format!("row {row_number}: the label is empty"),
                    ));
                }
                labels.push(text);
            } else {
                x.push(parse_number(path, row_number, name, &text)?);
                features_seen += 1;
            }
        }
        if features_seen != features.len() {
            return Err(corrupt(
                path,
                format!(
                    "row {row_number}: {features_seen} features, expected {}",
                    features.len()
                ),
            ));
        }
    }
    Ok(Table {
        path: path.to_path_buf(),
        features,
        x,
        labels,
    })
}

/// A CSV cell: quoted when it holds a separator, a quote or a line break,
/// and prefixed with `'` when a spreadsheet would run it as a formula
/// (`=HYPERLINK(…)`, `+…`, `-…`, `@…`; numbers stay as they are).
pub fn csv_field(text: &str) -> String {
    let formula =
        text.starts_with(['=', '+', '-', '@', '\t', '\r']) && text.trim().parse::<f64>().is_err();
    let text = if formula {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_file(tag: &str, text: &str) -> PathBuf {
        let dir = gpicl_testing::scratch_dir("table");
        let path = dir.join(format!("{tag}.csv"));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn huge_finite_cells_and_absurdly_wide_tables_are_refused_naming_file_row_and_column() {
        let dir = gpicl_testing::scratch_dir("huge-cells");
        let path = dir.join("t.csv");
        std::fs::write(&path, "a,b,label\n1,3e38,x\n2,1,y\n").unwrap();
        let err = read_table(&path, "label").unwrap_err().to_string();
        assert!(
            err.contains("t.csv") && err.contains("row 1 (line 2)") && err.contains("`b`"),
            "{err}"
        );
        std::fs::write(&path, "a,label\n1e38,x\n1e38,y\n").unwrap();
        let err = read_table(&path, "label").unwrap_err().to_string();
        assert!(err.contains("rescale"), "{err}");
        let wide: Vec<String> = (0..=MAX_FEATURE_COLUMNS).map(|i| format!("c{i}")).collect();
        std::fs::write(&path, format!("{},label\n", wide.join(","))).unwrap();
        let err = read_table(&path, "label").unwrap_err().to_string();
        assert!(err.contains("at most 100000 feature columns"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_csv_table_reads_its_features_and_labels_with_the_label_column_anywhere() {
        let path = csv_file("ok", "a,species,b\n1.5,setosa,2\n-3,virginica,4e1\n");
        let t = read_table(&path, "species").unwrap();
        assert_eq!(t.features, vec!["a", "b"]);
        assert_eq!(t.x, vec![1.5, 2.0, -3.0, 40.0]);
        assert_eq!(t.labels, vec!["setosa", "virginica"]);
        assert_eq!(t.row(1), &[-3.0, 40.0]);
    }

    #[test]
    fn bad_tables_are_refused_naming_file_row_and_column() {
        let cases = [
            (
                "nonnumeric",
                "a,label\n1,x\nabc,y\n",
                "row 2 (line 3), column `a`: `abc`",
            ),
            ("nan", "a,label\nNaN,x\n", "not a finite number"),
            ("nolabel", "a,b\n1,2\n", "has no column `label`"),
            ("empty", "a,label\n", "holds no rows"),
            ("ragged", "a,label\n1,x\n1,2,3\n", "row 2"),
            ("onlylabel", "label\nx\n", "no feature column"),
            ("emptylabel", "a,label\n1,\n", "the label is empty"),
        ];
        for (tag, text, expected) in cases {
            let path = csv_file(tag, text);
            let err = read_table(&path, "label").unwrap_err().to_string();
            assert!(
                err.contains(expected) && err.contains(&format!("{tag}.csv")),
                "{tag}: {err}"
            );
        }
        let err = read_table(Path::new("data.txt"), "label")
            .unwrap_err()
            .to_string();
        assert!(err.contains(".csv or .parquet"), "{err}");
    }

    #[test]
    fn a_query_table_may_lack_the_label_and_is_aligned_to_the_training_columns_by_name() {
        let train = read_table(&csv_file("train", "a,b,label\n1,2,x\n3,4,y\n"), "label").unwrap();
        let queries =
            read_query_table(&csv_file("queries", "b,a\n20,10\n40,30\n"), "label").unwrap();
        assert!(!queries.is_labelled());
        assert_eq!(queries.rows(), 2);
        assert_eq!(
            align_features(&queries, &train.features).unwrap(),
            vec![10.0, 20.0, 30.0, 40.0]
        );
        let missing = read_query_table(&csv_file("missing", "a\n1\n"), "label").unwrap();
        let err = align_features(&missing, &train.features)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing.csv") && err.contains("no feature column `b`"),
            "{err}"
        );
        let extra = read_query_table(&csv_file("extra", "a,b,c\n1,2,3\n"), "label").unwrap();
        let err = align_features(&extra, &train.features)
            .unwrap_err()
            .to_string();
        assert!(err.contains("extra.csv") && err.contains("`c`"), "{err}");
    }
}
