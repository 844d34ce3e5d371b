//! MNIST-style IDX files (LeCun's format), gzip-compressed or raw.

use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::Array2;

use super::set::{Dataset, SPLIT_SEED, Split, Task, stratified_split};
use crate::error::{Error, Result};

const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
/// Share of the examples held out when only one file pair exists (the
/// shared MNIST directory holds just the 10 000-image test set).
const HOLDOUT_SHARE: f64 = 0.2;

pub(super) fn load(task: Task, dir: &Path) -> Result<Dataset> {
    let classes = match task {
        Task::FashionMnist => &FASHION_CLASSES,
        _ => &MNIST_CLASSES,
    };
    let has = |prefix: &str| find(dir, &format!("{prefix}-images-idx3-ubyte")).is_some();
    let (train, test, split) = if has("train") && has("t10k") {
        let train = pair(dir, "train")?;
        let test = pair(dir, "t10k")?;
        let split = format!(
            "{}: the official split ({} train / {} test)",
            dir.display(),
            train.len(),
            test.len()
        );
        (train, test, split)
    } else {
        let prefix = if has("t10k") { "t10k" } else { "train" };
        let all = pair(dir, prefix)?;
        let (tr, te) = stratified_split(&all.y, classes.len(), HOLDOUT_SHARE);
        let split = format!(
            "{}: only {prefix}-* present; stratified {}/{} % split of its {} images with seed {} ({} train / {} test)",
            dir.display(),
            100 - (HOLDOUT_SHARE * 100.0) as u32,
            (HOLDOUT_SHARE * 100.0) as u32,
            all.len(),
            SPLIT_SEED,
            tr.len(),
            te.len()
        );
        (all.select(&tr), all.select(&te), split)
    };
    Ok(Dataset {
        task,
        classes: classes.iter().map(|s| s.to_string()).collect(),
        train,
        test,
        split,
    })
}

/// `stem` or `stem.gz` in `dir`.
fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(format!("{stem}.gz")), dir.join(stem)]
        .into_iter()
        .find(|p| p.is_file())
}

fn pair(dir: &Path, prefix: &str) -> Result<Split> {
    let img_stem = format!("{prefix}-images-idx3-ubyte");
    let lbl_stem = format!("{prefix}-labels-idx1-ubyte");
    let missing = |stem: &str| {
        Error::data(
            dir.join(format!("{stem}[.gz]")),
            "not found (expected an IDX file, gzip-compressed or raw)",
        )
    };
    let img_path = find(dir, &img_stem).ok_or_else(|| missing(&img_stem))?;
    let lbl_path = find(dir, &lbl_stem).ok_or_else(|| missing(&lbl_stem))?;
    let (img_dims, pixels) = read_idx(&img_path, 3)?;
    let (lbl_dims, labels) = read_idx(&lbl_path, 1)?;
    if img_dims[0] != lbl_dims[0] {
        return Err(Error::data(
            &lbl_path,
            format!(
                "{} labels for {} images in {}",
                lbl_dims[0],
                img_dims[0],
                img_path.display()
            ),
        ));
    }
    if let Some(bad) = labels.iter().find(|&&l| l > 9) {
        return Err(Error::data(
            &lbl_path,
            format!("label {bad} is not a class 0..=9"),
        ));
    }
    let n = img_dims[0];
    let d = img_dims[1] * img_dims[2];
    let x = Array2::from_shape_vec(
        (n, d),
        pixels.iter().map(|&p| f32::from(p) / 255.0).collect(),
    )
    .map_err(|e| Error::data(&img_path, e.to_string()))?;
    Ok(Split {
        x,
        y: labels.into_iter().map(u32::from).collect(),
    })
}

/// Read an unsigned-byte IDX file with `rank` dimensions.
fn read_idx(path: &Path, rank: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::data(path, format!("corrupt gzip stream: {e}")))?;
        out
    } else {
        raw
    };
    if bytes.len() < 4 {
        return Err(Error::data(
            path,
            format!("{} bytes is shorter than an IDX header", bytes.len()),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || usize::from(bytes[3]) != rank {
        return Err(Error::data(
            path,
            format!(
                "bad IDX magic {:02x}{:02x}{:02x}{:02x} (expected 000008{rank:02x}: unsigned bytes, rank {rank})",
                bytes[0], bytes[1], bytes[2], bytes[3]
            ),
        ));
    }
    let header = 4 + 4 * rank;
    if bytes.len() < header {
        return Err(Error::data(
            path,
            format!("{} bytes is shorter than an IDX header", bytes.len()),
        ));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| {
            let o = 4 + 4 * i;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let n: usize = dims.iter().product();
    if bytes.len() - header != n {
        return Err(Error::data(
            path,
            format!(
                "header says {dims:?} = {n} bytes of data, file has {}",
                bytes.len() - header
            ),
        ));
    }
    Ok((dims, bytes[header..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx(rank: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 8, rank];
        for d in dims {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn raw_and_gzip_files_read_alike_and_single_pair_is_split() {
        let dir = tempfile::tempdir().unwrap();
        let n = 50u32;
        let pixels: Vec<u8> = (0..n * 4).map(|i| (i % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        std::fs::write(
            dir.path().join("t10k-images-idx3-ubyte"),
            idx(3, &[n, 2, 2], &pixels),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte.gz"),
            gz(&idx(1, &[n], &labels)),
        )
        .unwrap();
        let d = load(Task::Mnist, dir.path()).unwrap();
        assert_eq!(d.train.len(), 40);
        assert_eq!(d.test.len(), 10);
        assert_eq!(d.n_features(), 4);
        assert!(d.split.contains("only t10k-* present"), "{}", d.split);
    }

    #[test]
    fn malformed_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(Task::FashionMnist, dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("train-images-idx3-ubyte[.gz]") && e.contains("not found"),
            "{e}"
        );
        std::fs::write(
            dir.path().join("t10k-images-idx3-ubyte"),
            idx(3, &[3, 2, 2], &[0; 11]),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte"),
            idx(1, &[3], &[0; 3]),
        )
        .unwrap();
        let e = load(Task::Mnist, dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("t10k-images-idx3-ubyte: header says [3, 2, 2] = 12 bytes"),
            "{e}"
        );
        std::fs::write(
            dir.path().join("t10k-images-idx3-ubyte"),
            idx(1, &[3], &[0; 3]),
        )
        .unwrap();
        let e = load(Task::Mnist, dir.path()).unwrap_err().to_string();
        assert!(e.contains("bad IDX magic 00000801"), "{e}");
        std::fs::write(
            dir.path().join("t10k-images-idx3-ubyte"),
            idx(3, &[3, 1, 1], &[0; 3]),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("t10k-labels-idx1-ubyte"),
            idx(1, &[3], &[0, 1, 12]),
        )
        .unwrap();
        let e = load(Task::Mnist, dir.path()).unwrap_err().to_string();
        assert!(e.contains("label 12 is not a class"), "{e}");
    }
}
