//! Hillenbrand et al. (1995) vowels: 12 formant features (F1–F3 at steady
//! state and at 20/50/80 % of the vowel), 7 vowel classes.

use std::path::Path;

use ndarray::Array2;

use super::set::{Dataset, SPLIT_SEED, Split, Task, stratified_split};
use crate::error::{Error, Result};

pub const FILE: &str = "hillenbrand_vowels_female.csv";
/// Class order of the paper's code (P1-old).
pub const CLASSES: [&str; 7] = ["ae", "ah", "aw", "uw", "er", "iy", "ih"];
pub const FEATURES: [&str; 12] = [
    "F1_ss", "F2_ss", "F3_ss", "F1_20", "F2_20", "F3_20", "F1_50", "F2_50", "F3_50", "F1_80",
    "F2_80", "F3_80",
];
const TEST_SHARE: f64 = 0.2;

/// The data set as it ships with hilt (`data/` of this crate): the same
/// 258 rows as `../shared/data`.
const EMBEDDED: &str = include_str!("../../data/hillenbrand_vowels_female.csv");

pub(super) fn load(dir: &Path) -> Result<Dataset> {
    let path = dir.join(FILE);
    let file = std::fs::File::open(&path).map_err(|e| {
        Error::data(
            &path,
            format!("cannot open ({e}); expected the Hillenbrand vowel CSV"),
        )
    })?;
    parse(csv::Reader::from_reader(file), &path)
}

/// The copy built into `hilt`.
pub(super) fn load_embedded() -> Result<Dataset> {
    let path = Path::new("<built-in hillenbrand_vowels_female.csv>");
    parse(csv::Reader::from_reader(EMBEDDED.as_bytes()), path)
}

fn parse<R: std::io::Read>(mut rdr: csv::Reader<R>, path: &Path) -> Result<Dataset> {
    let header = rdr
        .headers()
        .map_err(|e| Error::data(path, format!("no header row: {e}")))?
        .clone();
    let col = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            Error::data(
                path,
                format!("missing column '{name}' (expected vowel + {FEATURES:?})"),
            )
        })
    };
    let vowel_col = col("vowel")?;
    let feature_cols = FEATURES
        .iter()
        .map(|f| col(f))
        .collect::<Result<Vec<_>>>()?;

    let (mut feats, mut labels) = (Vec::new(), Vec::new());
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| Error::data(path, format!("line {line}: {e}")))?;
        let vowel = rec.get(vowel_col).unwrap_or_default();
        let class = CLASSES.iter().position(|c| *c == vowel).ok_or_else(|| {
            Error::data(
                path,
                format!("line {line}: unknown vowel '{vowel}' (expected one of {CLASSES:?})"),
            )
        })?;
        for (&c, name) in feature_cols.iter().zip(FEATURES) {
            let v: f32 =
                rec.get(c).unwrap_or_default().trim().parse().map_err(|_| {
                    Error::data(path, format!("line {line}: {name} is not a number"))
                })?;
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::data(
                    path,
                    format!("line {line}: {name} = {v} is not a positive frequency"),
                ));
            }
            feats.push(v);
        }
        labels.push(class as u32);
    }
    if labels.is_empty() {
        return Err(Error::data(path, "no data rows"));
    }
    for (c, name) in CLASSES.iter().enumerate() {
        if !labels.contains(&(c as u32)) {
            return Err(Error::data(path, format!("no examples of vowel '{name}'")));
        }
    }
    let n = labels.len();
    let x = Array2::from_shape_vec((n, FEATURES.len()), feats)
        .map_err(|e| Error::data(path, e.to_string()))?;
    let (train_rows, test_rows) = stratified_split(&labels, CLASSES.len(), TEST_SHARE);
    let all = Split { x, y: labels };
    let mut train = all.select(&train_rows);
    let mut test = all.select(&test_rows);
    // z-score with the training set's statistics only.
    let mean = train.x.mean_axis(ndarray::Axis(0)).unwrap_or_default();
    let std = train
        .x
        .std_axis(ndarray::Axis(0), 0.0)
        .mapv(|s| s.max(1e-6));
    for s in [&mut train, &mut test] {
        s.x = (&s.x - &mean) / &std;
    }
    Ok(Dataset {
        task: Task::Vowels,
        classes: CLASSES.iter().map(|s| s.to_string()).collect(),
        split: format!(
            "{FILE}: {n} examples, stratified {}/{} % split with seed {} ({} train / {} test), features z-scored on the training set",
            100 - (TEST_SHARE * 100.0) as u32,
            (TEST_SHARE * 100.0) as u32,
            SPLIT_SEED,
            train.len(),
            test.len()
        ),
        train,
        test,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(dir: &Path, body: &str) {
        let mut f = std::fs::File::create(dir.join(FILE)).unwrap();
        f.write_all(body.as_bytes()).unwrap();
    }

    #[test]
    fn the_built_in_copy_is_the_shared_file() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
        let shared = std::fs::read_to_string(dir.join(FILE)).unwrap();
        assert_eq!(shared, EMBEDDED);
        let d = load_embedded().unwrap();
        assert_eq!(d.train.len() + d.test.len(), 258);
    }

    #[test]
    fn loads_the_shared_file() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
        let d = load(&dir).unwrap();
        assert_eq!(d.n_features(), 12);
        assert_eq!(d.n_classes(), 7);
        assert_eq!(d.train.len() + d.test.len(), 258);
        // z-scored on train
        let m = d.train.x.mean_axis(ndarray::Axis(0)).unwrap();
        assert!(m.iter().all(|v| v.abs() < 1e-4));
    }

    #[test]
    fn malformed_rows_name_line_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let head = "speaker,vowel,".to_string() + &FEATURES.join(",") + "\n";
        write(
            dir.path(),
            &(head.clone() + "w01,ae,1,2,3,4,5,6,7,8,9,10,11,x\n"),
        );
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("line 2: F3_80 is not a number"), "{e}");
        write(dir.path(), &(head + "w01,oo,1,2,3,4,5,6,7,8,9,10,11,12\n"));
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("unknown vowel 'oo'"), "{e}");
        write(dir.path(), "speaker,vowel,F1_ss\n");
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("missing column 'F2_ss'"), "{e}");
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(FILE) && e.contains("cannot open"), "{e}");
    }
}
