//! What `predict` reports: the predictions as CSV, and how good they are
//! when the queries are labelled (accuracy, log-loss, the majority-class
//! yardstick).

use gpicl_tasks::table::csv_field;
use std::path::PathBuf;

/// The predictions as CSV: one row per query with its row number, its file
/// (image folders) and label (labelled queries) when there are any, the
/// predicted class and one probability column per class (`p_<class>`, in
/// `classes`' order). Every text cell is written with [`csv_field`], so no
/// cell runs as a spreadsheet formula.
pub fn predictions_csv(
    classes: &[String],
    files: &[PathBuf],
    labels: &[String],
    proba: &[Vec<f32>],
    predicted: &[usize],
) -> String {
    let mut csv = String::from("row");
    if !files.is_empty() {
        csv.push_str(",file");
    }
    if !labels.is_empty() {
        csv.push_str(",label");
    }
    csv.push_str(",predicted");
    for class in classes {
        csv.push_str(&format!(",{}", csv_field(&format!("p_{class}"))));
    }
    csv.push('\n');
    for (row, (p, &k)) in proba.iter().zip(predicted).enumerate() {
        csv.push_str(&row.to_string());
        if let Some(file) = files.get(row) {
            csv.push_str(&format!(",{}", csv_field(&file.display().to_string())));
        }
        if let Some(label) = labels.get(row) {
            csv.push_str(&format!(",{}", csv_field(label)));
        }
        csv.push_str(&format!(",{}", csv_field(&classes[k])));
        for v in p {
            csv.push_str(&format!(",{v:.6}"));
        }
        csv.push('\n');
    }
    csv
}

/// Mean negative log-probability of the true class, over the queries whose
/// label is a training class (`actual[i]` is `None` otherwise;
/// probabilities floored at 1e-12).
pub fn log_loss<P: Copy + Into<f64>>(proba: &[Vec<P>], actual: &[Option<usize>]) -> f64 {
    let losses: Vec<f64> = proba
        .iter()
        .zip(actual)
        .filter_map(|(p, a)| a.map(|c| -(p[c].into()).max(1e-12).ln()))
        .collect();
    losses.iter().sum::<f64>() / losses.len().max(1) as f64
}

/// Fraction of `predicted` equal to `actual` (a query whose label is no
/// training class counts as wrong).
pub fn accuracy(predicted: &[usize], actual: &[Option<usize>]) -> f64 {
    let right = predicted
        .iter()
        .zip(actual)
        .filter(|(p, a)| Some(**p) == **a)
        .count();
    right as f64 / predicted.len().max(1) as f64
}

/// The most frequent of `classes` classes in `y` (the lowest on ties): the
/// majority-class yardstick.
pub fn majority_class(y: &[usize], classes: usize) -> usize {
    let mut counts = vec![0usize; classes];
    for &c in y {
        counts[c] += 1;
    }
    (0..classes)
        .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_loss_is_the_mean_negative_log_probability_of_the_true_class_over_known_labels() {
        let proba = vec![vec![0.5f32, 0.5], vec![0.25, 0.75], vec![1.0, 0.0]];
        let actual = [Some(0), Some(1), None];
        let expected = -(0.5f64.ln() + 0.75f64.ln()) / 2.0;
        assert!((log_loss(&proba, &actual) - expected).abs() < 1e-9);
        // A zero probability on the true class is floored, not infinite.
        assert!((log_loss(&proba[2..], &[Some(1)]) - 1e-12f64.ln().abs()).abs() < 1e-6);
    }

    #[test]
    fn accuracy_counts_unknown_labels_as_wrong_and_majority_breaks_ties_low() {
        assert_eq!(
            accuracy(&[0, 1, 1, 0], &[Some(0), Some(1), None, Some(1)]),
            0.5
        );
        assert_eq!(majority_class(&[2, 1, 1, 2, 0], 3), 1);
        assert_eq!(majority_class(&[], 3), 0);
    }

    #[test]
    fn the_csv_has_a_row_per_query_and_a_probability_column_per_class() {
        let classes = ["cat".to_string(), "=dog".to_string()];
        let csv = predictions_csv(
            &classes,
            &[],
            &["cat".into(), "=dog".into()],
            &[vec![0.75, 0.25], vec![0.1, 0.9]],
            &[0, 1],
        );
        assert_eq!(
            csv,
            "row,label,predicted,p_cat,p_=dog\n0,cat,cat,0.750000,0.250000\n1,'=dog,'=dog,0.100000,0.900000\n"
        );
    }
}
