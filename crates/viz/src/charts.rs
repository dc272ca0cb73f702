//! Charts: line charts (training curves) with "nice" 1-2-5 axis ticks, and annotated
//! heatmaps of a matrix (confusion matrices).

use super::canvas::{Canvas, Rgb, FRAME, GRID, INK, WHITE};
use super::colormap::{luminance, viridis};
use super::font::{draw_text, draw_text_up, text_height, text_width, LINE_HEIGHT};

/// Default series colours, in order (the "tab10" palette of matplotlib and Tableau).
pub const PALETTE: [Rgb; 10] = [
    [0x1f, 0x77, 0xb4],
    [0xff, 0x7f, 0x0e],
    [0x2c, 0xa0, 0x2c],
    [0xd6, 0x27, 0x28],
    [0x94, 0x67, 0xbd],
    [0x8c, 0x56, 0x4b],
    [0xe3, 0x77, 0xc2],
    [0x7f, 0x7f, 0x7f],
    [0xbc, 0xbd, 0x22],
    [0x17, 0xbe, 0xcf],
];

/// Space around everything, in pixels.
const MARGIN: usize = 12;
/// Length of a tick mark.
const TICK: usize = 4;
/// Scale of titles (labels use scale 1).
const TITLE_SCALE: usize = 2;

/// One named curve of a line chart. Points with a NaN or infinite coordinate are skipped
/// and break the line there.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// `None` takes the next colour of [`PALETTE`].
    pub color: Option<Rgb>,
}

impl Series {
    /// A series drawn in the default palette colour for its position.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
            color: None,
        }
    }
}

/// The "nice" step for ticks over `span`: the smallest 1, 2 or 5 × 10^k that needs at most
/// `max_ticks` ticks.
pub fn nice_step(span: f64, max_ticks: usize) -> f64 {
    assert!(span > 0.0 && span.is_finite(), "nice_step: span {span}");
    let raw = span / (max_ticks.max(2) - 1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|&step| step >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * magnitude)
}

/// Decimal places that show every multiple of `step` exactly (0.2 → 1, 0.05 → 2, 5 → 0).
fn decimals(step: f64) -> usize {
    (-step.log10() - 1e-9).ceil().max(0.0) as usize
}

/// Ticks at the multiples of a nice step (see [`nice_step`]) inside `[lo, hi]`:
/// `nice_ticks(0.0, 1.0, 6)` is `[0, 0.2, 0.4, 0.6, 0.8, 1]`. An empty range gives `[lo]`.
pub fn nice_ticks(lo: f64, hi: f64, max_ticks: usize) -> Vec<f64> {
    assert!(
        lo.is_finite() && hi.is_finite() && lo <= hi,
        "nice_ticks: [{lo}, {hi}]"
    );
    if hi == lo {
        return vec![lo];
    }
    let step = nice_step(hi - lo, max_ticks);
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    // Rounding to the step's precision removes floating noise such as 0.6000000000000001.
    let unit = 10f64.powi(decimals(step) as i32);
    (first..=last)
        .map(|k| ((k as f64 * step * unit).round() / unit) + 0.0)
        .collect()
}

/// A tick label: as many decimals as the step needs, scientific notation for very large or
/// very small numbers.
pub fn format_tick(value: f64, step: f64) -> String {
    let value = if value == 0.0 { 0.0 } else { value }; // no "-0"
    if value != 0.0 && (value.abs() >= 1e6 || step < 1e-4) {
        format!("{value:.1e}")
    } else {
        format!("{value:.*}", decimals(step))
    }
}

/// The plotted range for some values: their min..max widened by 5 % on each side; a
/// constant gets ±10 % (±1 around zero), no values give 0..1.
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    if lo == hi {
        let half = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
        return (lo - half, hi + half);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

/// A linear map from data values to pixel positions.
#[derive(Clone, Copy)]
struct Axis {
    lo: f64,
    hi: f64,
    /// Pixel position of `lo` and of `hi` (for y, `lo` is at the bottom).
    from: f64,
    to: f64,
}

impl Axis {
    fn px(&self, v: f64) -> f64 {
        self.from + (v - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }
}

/// Ticks and their labels for an axis range, about one tick per `spacing` pixels.
fn ticks_with_labels(lo: f64, hi: f64, length: usize, spacing: usize) -> Vec<(f64, String)> {
    let max_ticks = (length / spacing).clamp(2, 10);
    let ticks = nice_ticks(lo, hi, max_ticks);
    let step = if ticks.len() > 1 {
        ticks[1] - ticks[0]
    } else {
        nice_step(hi - lo, max_ticks)
    };
    ticks
        .into_iter()
        .map(|t| (t, format_tick(t, step)))
        .collect()
}

/// Draws `text` centred horizontally on `cx`, top at `y`.
fn text_centred(canvas: &mut Canvas, cx: i64, y: i64, text: &str, color: Rgb, scale: usize) {
    draw_text(
        canvas,
        cx - text_width(text, scale) as i64 / 2,
        y,
        text,
        color,
        scale,
    );
}

/// A title across the top of a `width`-wide picture; returns the height it takes.
fn draw_title(canvas: &mut Canvas, title: &str) -> usize {
    if title.is_empty() {
        return MARGIN;
    }
    let cx = canvas.width as i64 / 2;
    text_centred(canvas, cx, MARGIN as i64, title, INK, TITLE_SCALE);
    MARGIN + text_height(TITLE_SCALE) + MARGIN
}

/// A line chart of `series` in a `width × height` picture (at least 160 × 120): axes with
/// nice tick values and gridlines, ranges fitted to the data with 5 % padding, a legend of
/// the named series placed in the emptiest corner. Series of up to 30 points also get a dot
/// on every point; a point between two gaps is always drawn as a dot.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    width: usize,
    height: usize,
) -> Canvas {
    let (width, height) = (width.max(160), height.max(120));
    let mut canvas = Canvas::new(width, height, WHITE);
    let finite = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    let all = || series.iter().flat_map(|s| s.points.iter().copied());
    let (xlo, xhi) = padded_range(all().filter(finite).map(|p| p.0));
    let (ylo, yhi) = padded_range(all().filter(finite).map(|p| p.1));

    // Layout: the title on top, y labels on the left, x labels below; the plot takes the rest.
    let top = draw_title(&mut canvas, title);
    let label_h = text_height(1);
    let approx_plot_h = height
        .saturating_sub(top + 3 * label_h + 2 * MARGIN)
        .max(20);
    let yticks = ticks_with_labels(ylo, yhi, approx_plot_h, 40);
    let ytick_w = yticks
        .iter()
        .map(|(_, l)| text_width(l, 1))
        .max()
        .unwrap_or(0);
    let y_title_w = if y_label.is_empty() { 0 } else { label_h + 8 };
    let left = MARGIN + y_title_w + ytick_w + 4 + TICK;
    let x_title_h = if x_label.is_empty() { 0 } else { 8 + label_h };
    let bottom = TICK + 4 + label_h + x_title_h + MARGIN;
    let right = MARGIN + 12;
    let plot_w = width.saturating_sub(left + right).max(10);
    let plot_h = height.saturating_sub(top + bottom).max(10);
    let xticks = ticks_with_labels(xlo, xhi, plot_w, 70);
    let (px0, py0) = (left as i64, top as i64);
    let (px1, py1) = (px0 + plot_w as i64 - 1, py0 + plot_h as i64 - 1);
    let xaxis = Axis {
        lo: xlo,
        hi: xhi,
        from: px0 as f64,
        to: px1 as f64 + 1.0,
    };
    let yaxis = Axis {
        lo: ylo,
        hi: yhi,
        from: py1 as f64 + 1.0,
        to: py0 as f64,
    };

    // Gridlines and ticks.
    for (v, label) in &xticks {
        let x = xaxis.px(*v).floor() as i64;
        canvas.vline(x, py0, py1, 1, GRID);
        canvas.vline(x, py1 + 1, py1 + TICK as i64, 1, INK);
        text_centred(&mut canvas, x, py1 + (TICK + 4) as i64, label, INK, 1);
    }
    for (v, label) in &yticks {
        let y = yaxis.px(*v).floor() as i64;
        canvas.hline(px0, px1, y, 1, GRID);
        canvas.hline(px0 - TICK as i64, px0 - 1, y, 1, INK);
        let lx = px0 - (TICK + 4 + text_width(label, 1)) as i64;
        draw_text(&mut canvas, lx, y - 3, label, INK, 1);
    }
    canvas.rect(px0 - 1, py0 - 1, plot_w + 2, plot_h + 2, INK);

    // Axis titles.
    if !x_label.is_empty() {
        let y = py1 + (TICK + 4 + label_h + 8) as i64;
        text_centred(&mut canvas, (px0 + px1) / 2, y, x_label, INK, 1);
    }
    if !y_label.is_empty() {
        let y = (py0 + py1) / 2 - text_width(y_label, 1) as i64 / 2;
        draw_text_up(&mut canvas, MARGIN as i64, y, y_label, INK, 1);
    }

    // The curves, in pixel coordinates; `None` marks a gap.
    let colors: Vec<Rgb> = (0..series.len())
        .map(|i| series[i].color.unwrap_or(PALETTE[i % PALETTE.len()]))
        .collect();
    let pixel_points: Vec<Vec<Option<(f64, f64)>>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .map(|p| finite(p).then(|| (xaxis.px(p.0), yaxis.px(p.1))))
                .collect()
        })
        .collect();
    for (points, &color) in pixel_points.iter().zip(&colors) {
        let many = points.iter().flatten().count() > 30;
        for (i, p) in points.iter().enumerate() {
            let Some((x, y)) = *p else { continue };
            let next = points.get(i + 1).copied().flatten();
            if let Some((nx, ny)) = next {
                canvas.line(x, y, nx, ny, color, 2.0);
            }
            let prev = i.checked_sub(1).and_then(|j| points[j]);
            if !many || (prev.is_none() && next.is_none()) {
                canvas.fill_circle(x, y, 2.5, color);
            }
        }
    }

    // Legend, in the corner that hides the fewest points.
    let named: Vec<usize> = (0..series.len())
        .filter(|&i| !series[i].name.is_empty())
        .collect();
    if !named.is_empty() {
        let text_w = named
            .iter()
            .map(|&i| text_width(&series[i].name, 1))
            .max()
            .unwrap_or(0);
        let (sample_w, pad, row_h) = (18, 6, LINE_HEIGHT + 3);
        let box_w = pad + sample_w + pad + text_w + pad;
        let box_h = 2 * pad + named.len() * row_h - 3;
        let inset = 8;
        let corners = [
            (px1 - (inset + box_w) as i64 + 1, py0 + inset as i64),
            (px0 + inset as i64, py0 + inset as i64),
            (
                px1 - (inset + box_w) as i64 + 1,
                py1 - (inset + box_h) as i64 + 1,
            ),
            (px0 + inset as i64, py1 - (inset + box_h) as i64 + 1),
        ];
        let hidden = |&(bx, by): &(i64, i64)| {
            let inside = |x: f64, y: f64| {
                let (x0, y0) = (bx as f64 - 4.0, by as f64 - 4.0);
                x >= x0 && x <= x0 + box_w as f64 + 8.0 && y >= y0 && y <= y0 + box_h as f64 + 8.0
            };
            // Points and segment midpoints, so long segments across a corner count too.
            pixel_points
                .iter()
                .flat_map(|pts| {
                    pts.windows(2)
                        .filter_map(|w| match (w[0], w[1]) {
                            (Some(a), Some(b)) => Some(((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0)),
                            _ => None,
                        })
                        .chain(pts.iter().flatten().copied())
                        .collect::<Vec<_>>()
                })
                .filter(|&(x, y)| inside(x, y))
                .count()
        };
        let (bx, by) = corners
            .iter()
            .min_by_key(|c| hidden(c))
            .copied()
            .expect("four corners");
        canvas.fill_rect(bx, by, box_w, box_h, WHITE);
        canvas.rect(bx, by, box_w, box_h, FRAME);
        for (row, &i) in named.iter().enumerate() {
            let ty = by + (pad + row * row_h) as i64;
            let ly = ty as f64 + 4.0;
            let lx = (bx + pad as i64) as f64;
            canvas.line(lx, ly, lx + sample_w as f64, ly, colors[i], 2.0);
            let tx = bx + (pad + sample_w + pad) as i64;
            draw_text(&mut canvas, tx, ty, &series[i].name, INK, 1);
        }
    }
    canvas
}

/// A value that can fill a heatmap cell: a count (`usize`, `u32`, `u64`), shown as an
/// integer, or a real number (`f32`, `f64`), shown with 2 decimals (fewer when large).
pub trait CellValue: Copy {
    fn to_f64(self) -> f64;
    fn label(self) -> String;
}

macro_rules! count_cell {
    ($($t:ty),*) => {$(
        impl CellValue for $t {
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn label(self) -> String {
                self.to_string()
            }
        }
    )*};
}
count_cell!(usize, u32, u64);

macro_rules! real_cell {
    ($($t:ty),*) => {$(
        impl CellValue for $t {
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn label(self) -> String {
                let v = self as f64;
                match v.abs() {
                    a if a < 10.0 => format!("{v:.2}"),
                    a if a < 100.0 => format!("{v:.1}"),
                    _ => format!("{v:.0}"),
                }
            }
        }
    )*};
}
real_cell!(f32, f64);

/// A heatmap of `matrix` (rows × columns), as for a confusion matrix: rows are the true
/// class (axis title "true", labels on the left), columns the predicted class (axis title
/// "predicted", labels below, turned upwards when too wide for a cell). Colours follow
/// viridis from min(0, smallest) to the largest value, with a colour bar on the right; with
/// `annotate`, every cell shows its value in black or white, whichever reads better.
/// Empty label slices number the rows and columns from 0.
pub fn heatmap_matrix<T: CellValue, S: AsRef<str>>(
    title: &str,
    matrix: &[Vec<T>],
    row_labels: &[S],
    col_labels: &[S],
    annotate: bool,
) -> Canvas {
    let rows = matrix.len();
    let cols = matrix.first().map_or(0, |r| r.len());
    assert!(rows > 0 && cols > 0, "heatmap_matrix: empty matrix");
    assert!(
        matrix.iter().all(|r| r.len() == cols),
        "heatmap_matrix: rows of different lengths"
    );
    let labels = |given: &[S], n: usize, what: &str| -> Vec<String> {
        if given.is_empty() {
            (0..n).map(|i| i.to_string()).collect()
        } else {
            assert_eq!(
                given.len(),
                n,
                "heatmap_matrix: one {what} label per {what}"
            );
            given.iter().map(|s| s.as_ref().to_string()).collect()
        }
    };
    let row_labels = labels(row_labels, rows, "row");
    let col_labels = labels(col_labels, cols, "column");

    let values: Vec<f64> = matrix.iter().flatten().map(|v| v.to_f64()).collect();
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let vmin = finite.clone().fold(0.0f64, f64::min);
    let vmax = finite.fold(vmin, f64::max);
    let t_of = |v: f64| {
        if vmax > vmin {
            ((v - vmin) / (vmax - vmin)) as f32
        } else {
            0.0
        }
    };
    let annotations: Vec<String> = matrix.iter().flatten().map(|v| v.label()).collect();

    // Layout, left to right: axis title, row labels, cells, colour bar with its ticks.
    let label_h = text_height(1);
    let ann_w = annotations
        .iter()
        .map(|a| text_width(a, 1))
        .max()
        .unwrap_or(0);
    let cell = (ann_w + 10).max(30);
    let row_label_w = row_labels
        .iter()
        .map(|l| text_width(l, 1))
        .max()
        .unwrap_or(0);
    let col_label_w = col_labels
        .iter()
        .map(|l| text_width(l, 1))
        .max()
        .unwrap_or(0);
    let col_labels_up = col_label_w + 4 > cell;
    let col_labels_h = if col_labels_up { col_label_w } else { label_h };
    let bar_ticks = {
        let ticks = nice_ticks(vmin, vmax, 6);
        let step = if ticks.len() > 1 {
            ticks[1] - ticks[0]
        } else {
            1.0
        };
        let ticks: Vec<(f64, String)> = ticks
            .into_iter()
            .map(|t| (t, format_tick(t, step)))
            .collect();
        ticks
    };
    let bar_tick_w = bar_ticks
        .iter()
        .map(|(_, l)| text_width(l, 1))
        .max()
        .unwrap_or(0);
    let (bar_gap, bar_w) = (16, 14);
    let grid_w = cols * cell;
    let grid_h = rows * cell;
    let left = MARGIN + label_h + 10 + row_label_w + 6;
    let right = bar_gap + bar_w + TICK + 4 + bar_tick_w + MARGIN;
    let title_w = text_width(title, TITLE_SCALE) + 2 * MARGIN;
    let width = (left + grid_w + right).max(title_w);
    let top_h = if title.is_empty() {
        MARGIN
    } else {
        2 * MARGIN + text_height(TITLE_SCALE)
    };
    let height = top_h + grid_h + 6 + col_labels_h + 10 + label_h + MARGIN;
    let mut canvas = Canvas::new(width, height, WHITE);
    draw_title(&mut canvas, title);
    let (gx, gy) = (left as i64, top_h as i64);

    for (r, row) in matrix.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            let (x, y) = (gx + (c * cell) as i64, gy + (r * cell) as i64);
            let v = v.to_f64();
            let color = if v.is_finite() {
                viridis(t_of(v))
            } else {
                FRAME
            };
            canvas.fill_rect(x, y, cell, cell, color);
            if annotate {
                let ink = if luminance(color) > 0.45 { INK } else { WHITE };
                let text = &annotations[r * cols + c];
                let ty = y + (cell as i64 - 7) / 2;
                text_centred(&mut canvas, x + cell as i64 / 2, ty, text, ink, 1);
            }
        }
    }
    canvas.rect(gx - 1, gy - 1, grid_w + 2, grid_h + 2, INK);

    // Row labels, right-aligned against the cells; column labels below.
    for (r, label) in row_labels.iter().enumerate() {
        let x = gx - 6 - text_width(label, 1) as i64;
        let y = gy + (r * cell) as i64 + (cell as i64 - 7) / 2;
        draw_text(&mut canvas, x, y, label, INK, 1);
    }
    let below = gy + grid_h as i64 + 6;
    for (c, label) in col_labels.iter().enumerate() {
        let cx = gx + (c * cell + cell / 2) as i64;
        if col_labels_up {
            // Right-aligned against the grid, reading upwards.
            let y = below + (col_label_w - text_width(label, 1)) as i64;
            draw_text_up(&mut canvas, cx - 4, y, label, INK, 1);
        } else {
            text_centred(&mut canvas, cx, below, label, INK, 1);
        }
    }

    // Axis titles.
    let ty = below + (col_labels_h + 10) as i64;
    text_centred(&mut canvas, gx + grid_w as i64 / 2, ty, "predicted", INK, 1);
    let true_y = gy + grid_h as i64 / 2 - text_width("true", 1) as i64 / 2;
    draw_text_up(&mut canvas, MARGIN as i64, true_y, "true", INK, 1);

    // Colour bar: vmax at the top, vmin at the bottom.
    let bx = gx + (grid_w + bar_gap) as i64;
    for i in 0..grid_h {
        let t = 1.0 - i as f32 / (grid_h - 1).max(1) as f32;
        canvas.hline(bx, bx + bar_w as i64 - 1, gy + i as i64, 1, viridis(t));
    }
    canvas.rect(bx - 1, gy - 1, bar_w + 2, grid_h + 2, INK);
    let bar = Axis {
        lo: vmin,
        hi: if vmax > vmin { vmax } else { vmin + 1.0 },
        from: (gy + grid_h as i64 - 1) as f64,
        to: gy as f64,
    };
    for (v, label) in &bar_ticks {
        let y = bar.px(*v).round() as i64;
        let tx = bx + bar_w as i64 + 1;
        canvas.hline(tx, tx + TICK as i64 - 1, y, 1, INK);
        draw_text(&mut canvas, tx + (TICK + 3) as i64, y - 3, label, INK, 1);
    }
    canvas
}

/// How [`heatmap_over_time`] maps values to colours.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ColorScale {
    /// log10 of the value, over the decades the positive values span; values ≤ 0 are
    /// drawn grey, as missing ones.
    Log,
    /// The value itself, from `lo` (dark) to `hi` (bright).
    Linear(f64, f64),
}

/// A heatmap of one quantity per row (a layer) over time: `values[row][col]` taken at
/// `times[col]` (increasing, e.g. training steps), rows labelled on the left and the time
/// axis below with nice ticks; a colour bar (viridis) on the right. Columns fill the
/// `plot_width` pixels (at least one pixel each) and span the time to the next column.
/// A value that is not finite (or not positive on a log scale) is grey.
pub fn heatmap_over_time<S: AsRef<str>>(
    title: &str,
    row_labels: &[S],
    times: &[f64],
    values: &[Vec<f64>],
    time_label: &str,
    scale: ColorScale,
    plot_width: usize,
) -> Canvas {
    let (rows, cols) = (values.len(), times.len());
    assert!(rows > 0 && cols > 0, "heatmap_over_time: nothing to draw");
    assert_eq!(
        row_labels.len(),
        rows,
        "heatmap_over_time: one label per row"
    );
    assert!(
        values.iter().all(|r| r.len() == cols),
        "heatmap_over_time: one value per row and time"
    );
    // The value a colour stands for, on the scale: log10 or the value.
    let scaled = |v: f64| match scale {
        ColorScale::Log if v > 0.0 && v.is_finite() => Some(v.log10()),
        ColorScale::Log => None,
        ColorScale::Linear(..) => v.is_finite().then_some(v),
    };
    let (lo, hi) = match scale {
        ColorScale::Log => {
            let logs = values.iter().flatten().filter_map(|&v| scaled(v));
            let (lo, hi) = logs.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
            if lo > hi {
                (0.0, 1.0)
            } else if hi - lo < 1.0 {
                // Less than a decade: widen to one, centred, so the bar has a tick or two.
                let mid = (lo + hi) / 2.0;
                (mid - 0.5, mid + 0.5)
            } else {
                (lo, hi)
            }
        }
        ColorScale::Linear(lo, hi) => (lo, if hi > lo { hi } else { lo + 1.0 }),
    };
    let t_of = |v: f64| (((v - lo) / (hi - lo)).clamp(0.0, 1.0)) as f32;

    let label_h = text_height(1);
    let row_h = LINE_HEIGHT + 1;
    let row_label_w = row_labels
        .iter()
        .map(|l| text_width(l.as_ref(), 1))
        .max()
        .unwrap_or(0);
    let bar_ticks: Vec<(f64, String)> = {
        let ticks = nice_ticks(lo, hi, 6);
        let step = if ticks.len() > 1 {
            ticks[1] - ticks[0]
        } else {
            1.0
        };
        ticks
            .into_iter()
            .map(|t| {
                let label = match scale {
                    ColorScale::Log if (t - t.round()).abs() < 1e-9 => format!("1e{}", t.round()),
                    ColorScale::Log => format!("{:.1e}", 10f64.powf(t)),
                    ColorScale::Linear(..) => format_tick(t, step),
                };
                (t, label)
            })
            .collect()
    };
    let bar_tick_w = bar_ticks
        .iter()
        .map(|(_, l)| text_width(l, 1))
        .max()
        .unwrap_or(0);
    let (bar_gap, bar_w) = (16, 14);
    let col_w = (plot_width / cols).max(1);
    let grid_w = col_w * cols;
    let grid_h = rows * row_h;
    let left = MARGIN + row_label_w + 6;
    let right = bar_gap + bar_w + TICK + 4 + bar_tick_w + MARGIN;
    let title_w = text_width(title, TITLE_SCALE) + 2 * MARGIN;
    let width = (left + grid_w + right).max(title_w);
    let top_h = if title.is_empty() {
        MARGIN
    } else {
        2 * MARGIN + text_height(TITLE_SCALE)
    };
    let height = top_h + grid_h + TICK + 4 + label_h + 8 + label_h + MARGIN;
    let mut canvas = Canvas::new(width, height, WHITE);
    draw_title(&mut canvas, title);
    let (gx, gy) = (left as i64, top_h as i64);

    for (r, row) in values.iter().enumerate() {
        for (c, &v) in row.iter().enumerate() {
            let color = scaled(v).map_or(FRAME, |s| viridis(t_of(s)));
            let x = gx + (c * col_w) as i64;
            canvas.fill_rect(x, gy + (r * row_h) as i64, col_w, row_h, color);
        }
        let label = row_labels[r].as_ref();
        let x = gx - 6 - text_width(label, 1) as i64;
        let y = gy + (r * row_h) as i64 + (row_h as i64 - 7) / 2;
        draw_text(&mut canvas, x, y, label, INK, 1);
    }
    canvas.rect(gx - 1, gy - 1, grid_w + 2, grid_h + 2, INK);

    // The time axis: column c covers times[c] up to the next column's time.
    let (t0, t1) = (times[0], times[cols - 1]);
    let below = gy + grid_h as i64 + 1;
    let col_of = |t: f64| -> f64 {
        if cols == 1 || t1 <= t0 {
            return 0.5;
        }
        // Columns are evenly spaced in time when taken every N steps; interpolate.
        let k = times.partition_point(|&x| x <= t).clamp(1, cols - 1);
        let (a, b) = (times[k - 1], times[k]);
        (k - 1) as f64 + if b > a { (t - a) / (b - a) } else { 0.0 } + 0.5
    };
    let time_ticks = if t1 > t0 {
        ticks_with_labels(t0, t1, grid_w, 70)
    } else {
        // One time (a single column, or repeated times): one tick, as written.
        vec![(t0, format_tick(t0, 1.0))]
    };
    for (t, label) in time_ticks {
        let x = gx + (col_of(t) * col_w as f64).floor() as i64;
        canvas.vline(x, below, below + TICK as i64 - 1, 1, INK);
        text_centred(&mut canvas, x, below + (TICK + 3) as i64, &label, INK, 1);
    }
    let ty = below + (TICK + 4 + label_h + 6) as i64;
    text_centred(&mut canvas, gx + grid_w as i64 / 2, ty, time_label, INK, 1);

    // Colour bar: hi at the top, lo at the bottom.
    let bx = gx + (grid_w + bar_gap) as i64;
    for i in 0..grid_h {
        let t = 1.0 - i as f32 / (grid_h - 1).max(1) as f32;
        canvas.hline(bx, bx + bar_w as i64 - 1, gy + i as i64, 1, viridis(t));
    }
    canvas.rect(bx - 1, gy - 1, bar_w + 2, grid_h + 2, INK);
    let bar = Axis {
        lo,
        hi,
        from: (gy + grid_h as i64 - 1) as f64,
        to: gy as f64,
    };
    for (v, label) in &bar_ticks {
        let y = bar.px(*v).round() as i64;
        let tx = bx + bar_w as i64 + 1;
        canvas.hline(tx, tx + TICK as i64 - 1, y, 1, INK);
        draw_text(&mut canvas, tx + (TICK + 3) as i64, y - 3, label, INK, 1);
    }
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_ticks(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn nice_ticks_for_known_ranges() {
        assert_ticks(&nice_ticks(0.0, 1.0, 6), &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_ticks(
            &nice_ticks(0.0, 1.0, 11),
            &[0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        );
        assert_ticks(&nice_ticks(0.0, 1.0, 3), &[0.0, 0.5, 1.0]);
        assert_ticks(&nice_ticks(0.0, 100.0, 5), &[0.0, 50.0, 100.0]);
        assert_ticks(&nice_ticks(0.05, 20.95, 8), &[5.0, 10.0, 15.0, 20.0]);
        assert_ticks(&nice_ticks(-1.3, 2.7, 6), &[-1.0, 0.0, 1.0, 2.0]);
        assert_ticks(&nice_ticks(0.0113, 0.0487, 5), &[0.02, 0.03, 0.04]);
        assert_ticks(&nice_ticks(3.0, 3.0, 5), &[3.0]);
        // The noise of 3 × 0.1 is rounded away.
        assert_eq!(nice_ticks(0.0, 0.5, 6)[3], 0.3);
    }

    #[test]
    fn nice_steps_are_one_two_or_five_times_a_power_of_ten() {
        for (span, max_ticks) in [(1.0, 6), (7.3, 5), (0.003, 4), (12345.0, 9), (0.9, 2)] {
            let step = nice_step(span, max_ticks);
            let mantissa = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-9),
                "{span}: step {step}"
            );
            assert!(
                span / step <= (max_ticks - 1) as f64 + 1e-9,
                "{span}: step {step} too small"
            );
            assert!(
                span / step > (max_ticks - 1) as f64 / 5.0 - 1e-9,
                "{span}: step {step} too big"
            );
        }
    }

    #[test]
    fn tick_labels_show_what_the_step_needs() {
        assert_eq!(format_tick(0.4, 0.2), "0.4");
        assert_eq!(format_tick(1.0, 0.2), "1.0");
        assert_eq!(format_tick(0.25, 0.05), "0.25");
        assert_eq!(format_tick(20.0, 5.0), "20");
        assert_eq!(format_tick(-0.0, 0.5), "0.0");
        assert_eq!(format_tick(2_000_000.0, 1_000_000.0), "2.0e6");
    }

    #[test]
    fn a_log_heatmap_colours_by_decade_and_greys_what_it_cannot_place() {
        let values = vec![vec![1e-4, 1e-2, 1.0], vec![0.0, f64::NAN, 1e-3]];
        let canvas = heatmap_over_time(
            "",
            &["a", "b"],
            &[1.0, 11.0, 21.0],
            &values,
            "step",
            ColorScale::Log,
            30,
        );
        let (gx, gy) = (MARGIN + text_width("a", 1) + 6, MARGIN);
        let cell = |r: usize, c: usize| {
            canvas
                .pixel(gx + c * 10 + 5, gy + r * (LINE_HEIGHT + 1) + 5)
                .unwrap()
        };
        // Smallest (1e-4) darkest, largest (1) brightest; 0 and NaN grey.
        assert_eq!(cell(0, 0), viridis(0.0));
        assert_eq!(cell(0, 2), viridis(1.0));
        assert_eq!(cell(0, 1), viridis(0.5));
        assert_eq!(cell(1, 0), FRAME);
        assert_eq!(cell(1, 1), FRAME);
        assert_eq!(cell(1, 2), viridis(0.25));
    }

    #[test]
    fn a_heatmap_of_one_time_or_one_value_draws() {
        for (times, row) in [(vec![5.0], vec![0.5]), (vec![5.0, 5.0], vec![2.0, 2.0])] {
            let values = vec![row];
            for scale in [ColorScale::Log, ColorScale::Linear(0.0, 1.0)] {
                let canvas = heatmap_over_time("t", &["a"], &times, &values, "step", scale, 40);
                assert!(canvas.width > 40 && canvas.height > 20);
            }
        }
    }

    #[test]
    fn padded_range_handles_constants_and_nothing() {
        assert_eq!(padded_range([0.0, 10.0].into_iter()), (-0.5, 10.5));
        let (lo, hi) = padded_range([2.0, 2.0].into_iter());
        assert!(
            (lo - 1.8).abs() < 1e-12 && (hi - 2.2).abs() < 1e-12,
            "{lo}..{hi}"
        );
        assert_eq!(padded_range([0.0].into_iter()), (-1.0, 1.0));
        assert_eq!(padded_range([f64::NAN].into_iter()), (0.0, 1.0));
        assert_eq!(padded_range(std::iter::empty()), (0.0, 1.0));
    }
}
