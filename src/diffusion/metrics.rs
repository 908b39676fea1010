//! Sample-quality metrics on host vectors: the Fréchet distance between Gaussians fitted to two
//! feature sets (Heusel et al. 2017), with a Jacobi eigensolver for the matrix square root; the
//! share of images with stray marks beside the digit; the classifier score (an Inception Score
//! with the project's classifier).

/// Mean and covariance (divisor n - 1) of `rows` (each of length d).
pub fn mean_cov(rows: &[Vec<f32>]) -> (Vec<f64>, Vec<f64>) {
    let n = rows.len();
    let d = rows[0].len();
    let mut mean = vec![0.0; d];
    for r in rows {
        for (m, &v) in mean.iter_mut().zip(r) {
            *m += v as f64 / n as f64;
        }
    }
    let mut cov = vec![0.0; d * d];
    for r in rows {
        for i in 0..d {
            let di = r[i] as f64 - mean[i];
            for j in i..d {
                cov[i * d + j] += di * (r[j] as f64 - mean[j]);
            }
        }
    }
    for i in 0..d {
        for j in i..d {
            let v = cov[i * d + j] / (n - 1) as f64;
            cov[i * d + j] = v;
            cov[j * d + i] = v;
        }
    }
    (mean, cov)
}

/// Eigenvalues and eigenvectors (columns of the returned row-major matrix) of a symmetric d x d
/// matrix by cyclic Jacobi rotations.
pub fn symmetric_eigen(a: &[f64], d: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0; d * d];
    for i in 0..d {
        v[i * d + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..d).flat_map(|i| (0..d).filter(move |&j| j != i).map(move |j| (i, j))).map(|(i, j)| a[i * d + j].powi(2)).sum();
        let scale: f64 = (0..d).map(|i| a[i * d + i].powi(2)).sum::<f64>().max(1e-300);
        if off <= 1e-24 * scale {
            break;
        }
        for p in 0..d {
            for q in p + 1..d {
                let apq = a[p * d + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * d + q] - a[p * d + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..d {
                    let (akp, akq) = (a[k * d + p], a[k * d + q]);
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for k in 0..d {
                    let (apk, aqk) = (a[p * d + k], a[q * d + k]);
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for k in 0..d {
                    let (vkp, vkq) = (v[k * d + p], v[k * d + q]);
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..d).map(|i| a[i * d + i]).collect(), v)
}

/// Symmetric PSD square root via the eigendecomposition (negative round-off clipped to 0).
pub fn sqrt_psd(a: &[f64], d: usize) -> Vec<f64> {
    let (w, v) = symmetric_eigen(a, d);
    let mut out = vec![0.0; d * d];
    for k in 0..d {
        let s = w[k].max(0.0).sqrt();
        for i in 0..d {
            for j in 0..d {
                out[i * d + j] += v[i * d + k] * s * v[j * d + k];
            }
        }
    }
    out
}

fn matmul(a: &[f64], b: &[f64], d: usize) -> Vec<f64> {
    let mut out = vec![0.0; d * d];
    for i in 0..d {
        for k in 0..d {
            let aik = a[i * d + k];
            for j in 0..d {
                out[i * d + j] += aik * b[k * d + j];
            }
        }
    }
    out
}

/// Fréchet distance between N(m1, s1) and N(m2, s2):
/// |m1 - m2|^2 + tr(s1 + s2 - 2 (s1 s2)^(1/2)), with tr((s1 s2)^(1/2)) = tr((r s2 r)^(1/2)), r = s1^(1/2).
pub fn frechet_distance(m1: &[f64], s1: &[f64], m2: &[f64], s2: &[f64]) -> f64 {
    let d = m1.len();
    let r = sqrt_psd(s1, d);
    let inner = matmul(&matmul(&r, s2, d), &r, d);
    let (w, _) = symmetric_eigen(&inner, d);
    let tr_sqrt: f64 = w.iter().map(|x| x.max(0.0).sqrt()).sum();
    let mean_term: f64 = m1.iter().zip(m2).map(|(a, b)| (a - b).powi(2)).sum();
    let trace = |s: &[f64]| (0..d).map(|i| s[i * d + i]).sum::<f64>();
    mean_term + trace(s1) + trace(s2) - 2.0 * tr_sqrt
}

/// Fréchet distance between two feature sets.
pub fn frechet_distance_of(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (m1, s1) = mean_cov(a);
    let (m2, s2) = mean_cov(b);
    frechet_distance(&m1, &s1, &m2, &s2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::noise::NoiseSource;

    #[test]
    fn eigen_decomposition_reconstructs_the_matrix() {
        let d = 6;
        let mut rng = NoiseSource::new(3);
        let b: Vec<f64> = rng.normal(d * d).iter().map(|&x| x as f64).collect();
        let mut a = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                a[i * d + j] = (0..d).map(|k| b[i * d + k] * b[j * d + k]).sum();
            }
        }
        let (w, v) = symmetric_eigen(&a, d);
        for i in 0..d {
            for j in 0..d {
                let r: f64 = (0..d).map(|k| v[i * d + k] * w[k] * v[j * d + k]).sum();
                assert!((r - a[i * d + j]).abs() < 1e-9, "({i},{j})");
            }
        }
        let root = sqrt_psd(&a, d);
        let sq = matmul(&root, &root, d);
        assert!(sq.iter().zip(&a).all(|(x, y)| (x - y).abs() < 1e-8));
    }

    #[test]
    fn frechet_distance_matches_closed_forms() {
        // Diagonal covariances: |m1 - m2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
        let (m1, m2) = (vec![0.0, 1.0, 2.0], vec![1.0, 1.0, 0.0]);
        let (a, b) = ([1.0, 4.0, 0.25], [9.0, 1.0, 0.25]);
        let diag = |v: &[f64; 3]| {
            let mut s = vec![0.0; 9];
            for i in 0..3 {
                s[i * 3 + i] = v[i];
            }
            s
        };
        let want = 1.0 + 4.0 + (1.0f64 - 3.0).powi(2) + (2.0f64 - 1.0).powi(2);
        let got = frechet_distance(&m1, &diag(&a), &m2, &diag(&b));
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        // Same distribution: 0; and it is symmetric for general covariances.
        let mut rng = NoiseSource::new(4);
        let xs: Vec<Vec<f32>> = (0..400).map(|_| rng.normal(5)).collect();
        let ys: Vec<Vec<f32>> = (0..400).map(|_| rng.normal(5).iter().map(|v| 2.0 * v + 0.5).collect()).collect();
        assert!(frechet_distance_of(&xs, &xs).abs() < 1e-8);
        let (d1, d2) = (frechet_distance_of(&xs, &ys), frechet_distance_of(&ys, &xs));
        assert!((d1 - d2).abs() < 1e-8 * d1);
        // N(0, I) vs N(0.5, 4 I) in 5-d: 5 * 0.25 + 5 * (2 - 1)^2 = 6.25, up to sampling noise.
        assert!((d1 - 6.25).abs() < 1.0, "{d1}");
    }

    #[test]
    fn bright_regions_are_8_connected_and_stray_marks_need_two_pixels() {
        let w = 6;
        let mut im = vec![-1.0f32; w * w];
        let mut on = |y: usize, x: usize, v: f32| im[y * w + x] = v;
        // A diagonal stroke of 4 pixels (one region under 8-connectivity), a speck, a 2-pixel dot,
        // and a pixel exactly at mid-grey, which is not bright.
        for k in 0..4 {
            on(k, k, 1.0);
        }
        on(0, 5, 0.3);
        on(5, 0, 0.9);
        on(5, 1, 0.1);
        on(3, 5, 0.0);
        assert_eq!(bright_regions(&im, w), vec![4, 2, 1]);
        let stroke_and_speck: Vec<f32> = im.iter().enumerate().map(|(i, &v)| if i / w == 5 { -1.0 } else { v }).collect();
        assert_eq!(bright_regions(&stroke_and_speck, w), vec![4, 1]);
        // Two images, one with a stray dot: half of them.
        let both: Vec<f32> = im.iter().chain(&stroke_and_speck).copied().collect();
        assert_eq!(stray_mark_share(&both, w), 0.5);
        assert_eq!(stray_mark_share(&stroke_and_speck, w), 0.0);
    }
}

/// The sliced 1-Wasserstein distance between two 2-D point sets of equal size: the mean, over
/// `directions` evenly spaced directions, of the exact 1-D W1 between the projections (the mean
/// gap between sorted values). Zero for equal sets; a consistent distance between distributions.
pub fn sliced_wasserstein_2d(a: &[[f64; 2]], b: &[[f64; 2]], directions: usize) -> f64 {
    assert_eq!(a.len(), b.len(), "equal-size point sets");
    assert!(!a.is_empty() && directions > 0);
    let project = |points: &[[f64; 2]], (c, s): (f64, f64)| {
        let mut v: Vec<f64> = points.iter().map(|p| c * p[0] + s * p[1]).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    (0..directions)
        .map(|k| {
            let angle = std::f64::consts::PI * k as f64 / directions as f64;
            let dir = (angle.cos(), angle.sin());
            let (pa, pb) = (project(a, dir), project(b, dir));
            pa.iter().zip(&pb).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
        })
        .sum::<f64>()
        / directions as f64
}

/// The sizes of the 8-connected regions of a `width`-wide image's pixels brighter than mid-grey
/// (model-space value > 0), largest first.
pub fn bright_regions(image: &[f32], width: usize) -> Vec<usize> {
    let height = image.len() / width;
    let mut seen = vec![false; image.len()];
    let mut sizes = Vec::new();
    for start in 0..image.len() {
        if seen[start] || image[start] <= 0.0 {
            continue;
        }
        seen[start] = true;
        let (mut stack, mut size) = (vec![start], 0);
        while let Some(p) = stack.pop() {
            size += 1;
            let (y, x) = (p / width, p % width);
            for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                    let q = ny * width + nx;
                    if !seen[q] && image[q] > 0.0 {
                        seen[q] = true;
                        stack.push(q);
                    }
                }
            }
        }
        sizes.push(size);
    }
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes
}

/// Regions smaller than this are single specks, which real digits have too.
pub const STRAY_MARK_PIXELS: usize = 2;

/// The share of `images` (each `width` x `width`, flat) with a second bright region of at least
/// [`STRAY_MARK_PIXELS`]: a dot or blob beside the digit. Most real digits are one stroke.
pub fn stray_mark_share(values: &[f32], width: usize) -> f64 {
    let images: Vec<&[f32]> = values.chunks(width * width).collect();
    let marked = images.iter().filter(|im| bright_regions(im, width).iter().filter(|&&s| s >= STRAY_MARK_PIXELS).count() > 1).count();
    marked as f64 / images.len().max(1) as f64
}

/// The classifier score (the Inception Score of Salimans et al. 2016 with the project's digit
/// classifier in place of Inception): exp(E_x[KL(p(y | x) || p(y))]), p(y) the mean of the rows.
/// Each row is one image's class probabilities. It runs from 1 (every image read the same way) to
/// the number of classes (every image read with certainty, the classes equally often).
pub fn classifier_score(probabilities: &[Vec<f32>]) -> f64 {
    let n = probabilities.len();
    assert!(n > 0, "the score needs at least one image");
    let classes = probabilities[0].len();
    let marginal: Vec<f64> = (0..classes).map(|c| probabilities.iter().map(|p| p[c] as f64).sum::<f64>() / n as f64).collect();
    let kl: f64 = probabilities
        .iter()
        .map(|p| p.iter().zip(&marginal).filter(|(pc, _)| **pc > 0.0).map(|(&pc, &m)| pc as f64 * (pc as f64 / m).ln()).sum::<f64>())
        .sum::<f64>()
        / n as f64;
    kl.exp()
}
