//! The damage a reader can pick for inpainting: presets of known / missing pixels on the 28x28
//! grid, each a mask with 1 where the pixel is known (RePaint's m). A drawn brush gives its own.

use serde::{Deserialize, Serialize};

use crate::diffusion::noise::NoiseSource;
use crate::nets::unet::{IMAGE_SIZE, PIXELS};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Damage {
    LeftHalf,
    TopHalf,
    CentreSquare,
    /// 70% of the pixels missing, drawn from the run's seed.
    RandomPixels,
    /// A diagonal band three pixels wide across the digit.
    Scratch,
}

impl Damage {
    pub const ALL: [Damage; 5] = [Damage::LeftHalf, Damage::TopHalf, Damage::CentreSquare, Damage::RandomPixels, Damage::Scratch];

    /// The URL value (`preset=`).
    pub fn key(self) -> &'static str {
        match self {
            Damage::LeftHalf => "left",
            Damage::TopHalf => "top",
            Damage::CentreSquare => "centre",
            Damage::RandomPixels => "random",
            Damage::Scratch => "scratch",
        }
    }

    /// What the page calls it.
    pub fn label(self) -> &'static str {
        match self {
            Damage::LeftHalf => "left half missing",
            Damage::TopHalf => "top half missing",
            Damage::CentreSquare => "centre square missing",
            Damage::RandomPixels => "70% of pixels missing",
            Damage::Scratch => "a scratch across",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.key() == raw.trim())
    }

    /// The known-pixel mask (1 known, 0 missing), row-major 28x28. `seed` draws the random pixels.
    pub fn mask(self, seed: u64) -> Vec<f32> {
        let n = IMAGE_SIZE;
        let mut rng = NoiseSource::new(seed ^ 0x6D61_736B);
        (0..PIXELS)
            .map(|k| {
                let (y, x) = (k / n, k % n);
                let missing = match self {
                    Damage::LeftHalf => x < n / 2,
                    Damage::TopHalf => y < n / 2,
                    Damage::CentreSquare => (7..21).contains(&x) && (7..21).contains(&y),
                    Damage::RandomPixels => rng.uniform() < 0.7,
                    Damage::Scratch => (x as i32 - y as i32 - 2).abs() <= 1,
                };
                if missing { 0.0 } else { 1.0 }
            })
            .collect()
    }
}

/// What a damaged image shows: the known pixels, background (-1) where they are missing.
pub fn damaged(image: &[f32], mask: &[f32]) -> Vec<f32> {
    image.iter().zip(mask).map(|(v, m)| if *m > 0.5 { *v } else { -1.0 }).collect()
}
