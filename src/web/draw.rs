//! Drawing into the explainer's canvases from its worker: the page hands each canvas over once
//! (`transferControlToOffscreen`), and images, charts (laid out by `crate::explain::plot`) and the 2-D
//! score fields are drawn here.

use wasm_bindgen::{Clamped, JsCast};
use web_sys::{ImageData, OffscreenCanvas, OffscreenCanvasRenderingContext2d};

use crate::explain::plot::{Chart, Frame, format_tick};
use crate::toy::mixture::{EXTENT, FIELD_GRID, Mixture2d, field_points};
use crate::app::image::grid_rgba;

type Ctx = OffscreenCanvasRenderingContext2d;

/// The canvases a page handed to one worker (`transferControlToOffscreen`), keyed by element id.
#[derive(Default)]
pub struct Canvases(std::cell::RefCell<Option<js_sys::Object>>);

impl Canvases {
    pub fn attach(&self, canvases: js_sys::Object) {
        *self.0.borrow_mut() = Some(canvases);
    }

    pub fn get(&self, id: &str) -> Result<OffscreenCanvas, String> {
        let canvases = self.0.borrow();
        let canvases = canvases.as_ref().ok_or("this worker has no canvases")?;
        js_sys::Reflect::get(canvases, &id.into()).ok().and_then(|c| c.dyn_into().ok()).ok_or_else(|| format!("no canvas '{id}'"))
    }
}

pub fn context_2d(canvas: &OffscreenCanvas) -> Result<Ctx, String> {
    canvas
        .get_context("2d")
        .map_err(|e| format!("{e:?}"))?
        .ok_or("canvas has no 2d context")?
        .dyn_into()
        .map_err(|_| "not a 2d context".to_string())
}

/// Put RGBA pixels onto `canvas` (resized to fit; the page scales it up).
pub fn draw_rgba(canvas: &OffscreenCanvas, w: usize, h: usize, rgba: &[u8]) -> Result<(), String> {
    canvas.set_width(w as u32);
    canvas.set_height(h as u32);
    let image = ImageData::new_with_u8_clamped_array_and_sh(Clamped(rgba), w as u32, h as u32).map_err(|e| format!("{e:?}"))?;
    context_2d(canvas)?.put_image_data(&image, 0.0, 0.0).map_err(|e| format!("{e:?}"))
}

/// One model-space image (784 values in [-1, 1]).
pub fn draw_image(canvas: &OffscreenCanvas, values: &[f32]) -> Result<(), String> {
    let (w, h, rgba) = grid_rgba(values, 1);
    draw_rgba(canvas, w, h, &rgba)
}

/// Fills a square canvas with q_t's density as shading; returns its context and side in pixels.
fn shade_density(canvas: &OffscreenCanvas, m: &Mixture2d, a: f64) -> Result<(Ctx, f64), String> {
    let size = 96usize;
    let shading = OffscreenCanvas::new(size as u32, size as u32).map_err(|e| format!("{e:?}"))?;
    draw_rgba(&shading, size, size, &m.density_rgba(a, size))?;
    let side = canvas.width().max(1) as f64;
    canvas.set_height(side as u32);
    let ctx = context_2d(canvas)?;
    ctx.set_image_smoothing_enabled(true);
    ctx.draw_image_with_offscreen_canvas_and_dw_and_dh(&shading, 0.0, 0.0, side, side).map_err(|e| format!("{e:?}"))?;
    Ok((ctx, side))
}

/// A point of the plane [-EXTENT, EXTENT]^2 (y up) in pixels of a square canvas of `side`.
fn plane_to_px(x: [f64; 2], side: f64) -> (f64, f64) {
    ((x[0] + EXTENT) / (2.0 * EXTENT) * side, (EXTENT - x[1]) / (2.0 * EXTENT) * side)
}

/// q_t's density as shading and a score field as arrows (one per point of `toy::field_points`),
/// one length scale for all arrows.
pub fn draw_field(canvas: &OffscreenCanvas, m: &Mixture2d, a: f64, arrows: &[[f64; 2]]) -> Result<(), String> {
    let (ctx, side) = shade_density(canvas, m, a)?;
    let to_px = |x: [f64; 2]| plane_to_px(x, side);
    let longest = arrows.iter().map(|s| s[0].hypot(s[1])).filter(|l| l.is_finite()).fold(1e-12, f64::max);
    let cell = side / FIELD_GRID as f64;
    ctx.set_stroke_style_str("#222");
    ctx.set_line_width(1.2);
    for (x, s) in field_points().into_iter().zip(arrows) {
        let (x0, y0) = to_px(x);
        arrow(&ctx, x0, y0, x0 + s[0] / longest * cell * 0.9, y0 - s[1] / longest * cell * 0.9);
    }
    Ok(())
}

pub fn draw_paths(canvas: &OffscreenCanvas, m: &Mixture2d, a: f64, paths: &[Vec<[f64; 2]>], frame: usize, traced: usize) -> Result<(), String> {
    let (ctx, side) = shade_density(canvas, m, a)?;
    let to_px = |x: [f64; 2]| plane_to_px(x, side);
    ctx.set_stroke_style_str("rgba(214, 39, 40, 0.55)");
    ctx.set_line_width(1.0);
    for path in paths.iter().take(traced) {
        let last = frame.min(path.len() - 1);
        ctx.begin_path();
        let (x, y) = to_px(path[0]);
        ctx.move_to(x, y);
        // Every 10th state: the SDE's paths stay readable, the ODE's are smooth anyway.
        for k in (10..=last).step_by(10).chain(std::iter::once(last)) {
            let (x, y) = to_px(path[k]);
            ctx.line_to(x, y);
        }
        ctx.stroke();
    }
    ctx.set_fill_style_str("#111");
    for path in paths {
        let (x, y) = to_px(path[frame.min(path.len() - 1)]);
        ctx.fill_rect(x - 1.2, y - 1.2, 2.4, 2.4);
    }
    Ok(())
}

fn arrow(ctx: &Ctx, x0: f64, y0: f64, x1: f64, y1: f64) {
    let (dx, dy) = (x1 - x0, y1 - y0);
    let len = dx.hypot(dy);
    ctx.begin_path();
    ctx.move_to(x0, y0);
    ctx.line_to(x1, y1);
    if len > 3.0 {
        let (ux, uy) = (dx / len, dy / len);
        let head = len.min(12.0) * 0.35;
        ctx.move_to(x1, y1);
        ctx.line_to(x1 - head * (ux - 0.5 * uy), y1 - head * (uy + 0.5 * ux));
        ctx.move_to(x1, y1);
        ctx.line_to(x1 - head * (ux + 0.5 * uy), y1 - head * (uy - 0.5 * ux));
    }
    ctx.stroke();
}

fn line(ctx: &Ctx, x0: f64, y0: f64, x1: f64, y1: f64) {
    ctx.begin_path();
    ctx.move_to(x0, y0);
    ctx.line_to(x1, y1);
    ctx.stroke();
}

/// Stroke a chart: frame, ticks with labels, axis labels, title, lines, legend, marker.
pub fn draw_chart(canvas: &OffscreenCanvas, chart: &Chart) -> Result<(), String> {
    let ctx = context_2d(canvas)?;
    let (w, h) = (canvas.width() as f64, canvas.height() as f64);
    let frame = Frame::inside(w, h);
    ctx.set_fill_style_str("#fff");
    ctx.fill_rect(0.0, 0.0, w, h);
    ctx.set_font("12px system-ui, sans-serif");
    ctx.set_fill_style_str("#333");
    ctx.set_stroke_style_str("#bbb");
    ctx.set_line_width(1.0);
    ctx.stroke_rect(frame.left, frame.top, frame.width, frame.height);
    let ticks = chart.x.ticks();
    for (k, v) in ticks.iter().enumerate() {
        let (px, _) = chart.to_pixel(&frame, *v, chart.y.min);
        ctx.set_stroke_style_str("#eee");
        line(&ctx, px, frame.top, px, frame.top + frame.height);
        // The last tick's label ends at the frame's edge rather than past the canvas.
        ctx.set_text_align(if k + 1 == ticks.len() { "right" } else { "center" });
        let _ = ctx.fill_text(&format_tick(*v), px.min(w - 2.0), frame.top + frame.height + 14.0);
    }
    for v in chart.y.ticks() {
        let (_, py) = chart.to_pixel(&frame, chart.x.min, v);
        ctx.set_stroke_style_str("#eee");
        line(&ctx, frame.left, py, frame.left + frame.width, py);
        ctx.set_text_align("right");
        let _ = ctx.fill_text(&format_tick(v), frame.left - 4.0, py + 4.0);
    }
    // The x label sits right of the tick labels' row, clear of the legend below.
    ctx.set_text_align("right");
    let _ = ctx.fill_text(&chart.x.label, frame.left + frame.width, frame.top + frame.height + 28.0);
    ctx.set_text_align("center");
    let _ = ctx.fill_text(&chart.title, frame.left + frame.width / 2.0, 15.0);
    ctx.save();
    let _ = ctx.translate(12.0, frame.top + frame.height / 2.0);
    let _ = ctx.rotate(-std::f64::consts::FRAC_PI_2);
    let _ = ctx.fill_text(&chart.y.label, 0.0, 0.0);
    ctx.restore();
    ctx.save();
    ctx.begin_path();
    ctx.rect(frame.left, frame.top, frame.width, frame.height);
    ctx.clip();
    ctx.set_line_width(1.6);
    for (k, points) in chart.polylines(&frame) {
        ctx.set_stroke_style_str(&chart.series[k].color);
        ctx.begin_path();
        for (j, (x, y)) in points.iter().enumerate() {
            if j == 0 { ctx.move_to(*x, *y) } else { ctx.line_to(*x, *y) }
        }
        if points.len() == 1 {
            ctx.arc(points[0].0, points[0].1, 2.0, 0.0, std::f64::consts::TAU).ok();
        }
        ctx.stroke();
    }
    if let Some(m) = chart.marker {
        let (px, _) = chart.to_pixel(&frame, m, chart.y.min);
        ctx.set_stroke_style_str("#000");
        ctx.set_line_width(1.0);
        let _ = ctx.set_line_dash(&js_sys::Array::of2(&4.into(), &3.into()));
        line(&ctx, px, frame.top, px, frame.top + frame.height);
        let _ = ctx.set_line_dash(&js_sys::Array::new());
    }
    ctx.restore();
    // Legend under the axis, wrapping to a new line when an entry would not fit.
    ctx.set_text_align("left");
    let (mut x, mut y) = (frame.left, frame.top + frame.height + 44.0);
    // A series without a name shares the legend entry before it (a band's second edge).
    for s in chart.series.iter().filter(|s| !s.name.is_empty()) {
        let width = 24.0 + ctx.measure_text(&s.name).map(|m| m.width()).unwrap_or(80.0);
        if x > frame.left && x + width > w {
            x = frame.left;
            y += 13.0;
        }
        ctx.set_fill_style_str(&s.color);
        ctx.fill_rect(x, y - 5.0, 14.0, 3.0);
        ctx.set_fill_style_str("#333");
        let _ = ctx.fill_text(&s.name, x + 18.0, y);
        x += width;
    }
    Ok(())
}
