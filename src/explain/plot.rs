//! A small line-chart model for the explainer's figures: axes (linear or log), readable tick
//! values, and the mapping from data to pixels. Platform free and tested natively; the browser
//! only strokes the lines and writes the labels this computes.

/// How an axis maps values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scale {
    Linear,
    /// Base 10; values must be positive.
    Log,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub label: String,
    pub min: f64,
    pub max: f64,
    pub scale: Scale,
}

impl Axis {
    pub fn new(label: &str, min: f64, max: f64, scale: Scale) -> Self {
        assert!(max > min, "axis {label}: empty range {min}..{max}");
        assert!(scale == Scale::Linear || min > 0.0, "axis {label}: log scale needs positive values");
        Self { label: label.into(), min, max, scale }
    }

    /// An axis that covers every finite value (positive ones on a log axis), padded a little.
    pub fn fit(label: &str, values: impl IntoIterator<Item = f64>, scale: Scale) -> Self {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for v in values.into_iter().filter(|v| v.is_finite() && (scale == Scale::Linear || *v > 0.0)) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            (lo, hi) = if scale == Scale::Log { (0.1, 1.0) } else { (0.0, 1.0) };
        }
        match scale {
            Scale::Linear => {
                let pad = if hi > lo { 0.05 * (hi - lo) } else { lo.abs().max(1.0) * 0.5 };
                Self::new(label, lo - pad, hi + pad, scale)
            }
            Scale::Log => {
                let (lo, hi) = (10f64.powf(lo.log10().floor()), 10f64.powf(hi.log10().ceil()));
                Self::new(label, lo, if hi > lo { hi } else { lo * 10.0 }, scale)
            }
        }
    }

    /// Where `v` falls along the axis, 0 at `min` and 1 at `max` (outside for values outside).
    pub fn fraction(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Linear => (v - self.min) / (self.max - self.min),
            Scale::Log => (v.log10() - self.min.log10()) / (self.max.log10() - self.min.log10()),
        }
    }

    /// Tick values inside the range: 1-2-5 steps on a linear axis, powers of ten on a log axis.
    pub fn ticks(&self) -> Vec<f64> {
        match self.scale {
            Scale::Linear => {
                let step = nice_step((self.max - self.min) / 5.0);
                let first = (self.min / step).ceil() as i64;
                let last = (self.max / step).floor() as i64;
                (first..=last).map(|k| k as f64 * step).map(|v| if v.abs() < step * 1e-9 { 0.0 } else { v }).collect()
            }
            Scale::Log => {
                let (a, b) = (self.min.log10().ceil() as i32, self.max.log10().floor() as i32);
                // At most about 6 labelled decades.
                let stride = ((b - a) / 6 + 1).max(1);
                (a..=b).filter(|e| (e - a) % stride == 0).map(|e| 10f64.powi(e)).collect()
            }
        }
    }
}

/// The 1, 2 or 5 times a power of ten nearest above `raw`.
pub fn nice_step(raw: f64) -> f64 {
    let power = 10f64.powf(raw.abs().max(f64::MIN_POSITIVE).log10().floor());
    let m = raw.abs() / power;
    power * if m <= 1.0 { 1.0 } else if m <= 2.0 { 2.0 } else if m <= 5.0 { 5.0 } else { 10.0 }
}

/// A short label for a tick value: plain for 0.01..1e4, else scientific (1e-3).
pub fn format_tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if (0.01..1e4).contains(&a) {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        let e = a.log10().floor() as i32;
        let m = v / 10f64.powi(e);
        if (m.abs() - 1.0).abs() < 1e-9 { format!("{}1e{e}", if v < 0.0 { "-" } else { "" }) } else { format!("{m:.1}e{e}") }
    }
}

/// One line of a chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    /// A CSS colour.
    pub color: String,
    pub points: Vec<(f64, f64)>,
}

/// A chart: axes, lines, and an optional vertical marker (the current t).
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub marker: Option<f64>,
}

/// The plotting area inside a canvas of `width` x `height`, leaving room for labels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

impl Frame {
    pub fn inside(width: f64, height: f64) -> Self {
        Self { left: 58.0, top: 26.0, width: (width - 58.0 - 12.0).max(10.0), height: (height - 26.0 - 62.0).max(10.0) }
    }
}

impl Chart {
    /// Pixel position of a data point (y grows downwards on a canvas).
    pub fn to_pixel(&self, frame: &Frame, x: f64, y: f64) -> (f64, f64) {
        (frame.left + self.x.fraction(x) * frame.width, frame.top + (1.0 - self.y.fraction(y)) * frame.height)
    }

    /// Each series split into runs of drawable points (finite, positive on log axes), in pixels.
    pub fn polylines(&self, frame: &Frame) -> Vec<(usize, Vec<(f64, f64)>)> {
        let drawable = |x: f64, y: f64| {
            x.is_finite() && y.is_finite() && (self.x.scale == Scale::Linear || x > 0.0) && (self.y.scale == Scale::Linear || y > 0.0)
        };
        let mut out = Vec::new();
        for (k, s) in self.series.iter().enumerate() {
            let mut run = Vec::new();
            for &(x, y) in &s.points {
                if drawable(x, y) {
                    run.push(self.to_pixel(frame, x, y));
                } else if !run.is_empty() {
                    out.push((k, std::mem::take(&mut run)));
                }
            }
            if !run.is_empty() {
                out.push((k, run));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round_and_inside() {
        let a = Axis::new("t", 1.0, 1000.0, Scale::Linear);
        assert_eq!(a.ticks(), vec![200.0, 400.0, 600.0, 800.0, 1000.0]);
        let b = Axis::new("x", -0.03, 0.97, Scale::Linear);
        assert_eq!(b.ticks(), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8]);
        assert_eq!(nice_step(0.13), 0.2);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(700.0), 1000.0);
    }

    #[test]
    fn log_axis_maps_decades_evenly() {
        let a = Axis::new("SNR", 1e-4, 1e4, Scale::Log);
        assert_eq!(a.ticks(), vec![1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4].into_iter().step_by(2).collect::<Vec<_>>());
        assert!((a.fraction(1.0) - 0.5).abs() < 1e-12);
        assert!((a.fraction(1e-2) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn fit_covers_the_data_and_skips_what_a_log_axis_cannot_show() {
        let a = Axis::fit("bits", [0.003, 0.5, 0.0, f64::NAN, 12.0], Scale::Log);
        assert_eq!((a.min, a.max), (1e-3, 100.0));
        let b = Axis::fit("y", [2.0, 4.0], Scale::Linear);
        assert!(b.min < 2.0 && b.max > 4.0);
        let c = Axis::fit("y", [3.0, 3.0], Scale::Linear);
        assert!(c.max > c.min);
    }

    #[test]
    fn points_map_into_the_frame_and_gaps_split_lines() {
        let chart = Chart {
            title: "c".into(),
            x: Axis::new("t", 0.0, 10.0, Scale::Linear),
            y: Axis::new("v", 1e-2, 1e2, Scale::Log),
            series: vec![Series { name: "s".into(), color: "#000".into(), points: vec![(0.0, 1e-2), (5.0, 1.0), (6.0, 0.0), (10.0, 1e2)] }],
            marker: None,
        };
        let f = Frame { left: 10.0, top: 20.0, width: 100.0, height: 50.0 };
        assert_eq!(chart.to_pixel(&f, 0.0, 1e-2), (10.0, 70.0));
        assert_eq!(chart.to_pixel(&f, 10.0, 1e2), (110.0, 20.0));
        let lines = chart.polylines(&f);
        assert_eq!(lines.len(), 2, "the zero on a log axis splits the line");
        assert_eq!(lines[0].1, vec![(10.0, 70.0), (60.0, 45.0)]);
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(format_tick(0.0), "0");
        assert_eq!(format_tick(0.25), "0.25");
        assert_eq!(format_tick(1000.0), "1000");
        assert_eq!(format_tick(1e-4), "1e-4");
        assert_eq!(format_tick(2.5e5), "2.5e5");
    }
}
