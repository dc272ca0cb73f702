//! The lecture's last demo, measured: a CNN against a traditional (fully connected) network
//! trained under the same budget. For every model: parameters, multiply-adds per image,
//! test accuracy, training time, and test accuracy when the test images are **shifted** by
//! a few pixels — the translation argument for convolutions put to the test.
//!
//! A convolution slides the same filters everywhere, so a feature moved by one pixel gives
//! the same response one pixel further on, and max-pooling forgets small offsets. A fully
//! connected layer has a separate weight for every pixel: a shifted image meets weights it
//! was never trained with there.
//!
//! ## The shift
//!
//! A shift by `k` moves every test image `k` rows and `k` columns at once, in each of the
//! four diagonal directions ([`DIAGONALS`]: down-right, down-left, up-right, up-left); the
//! pixels uncovered at the border are black. The accuracy reported for `k` is the mean over
//! the four directions, i.e. the accuracy over the `4·N` shifted images, so no direction in
//! which the data happen to have a margin is favoured.
//!
//! The test images are already normalised (`(x − mean[c]) / std[c]`, see
//! [`Normalization`]), so "black" is not 0 but `(0 − mean[c]) / std[c]`
//! ([`normalised_black`]): filling with 0 would paint the border with the training mean, a
//! grey that no training image has.

use serde::{Deserialize, Serialize};

use crate::diagnostics::{self, StepDiagnostics};
use crate::run::{EpochRecord, Run};
use crate::trainer;
use ocellus::error::Result;
use ocellus::layers::Layer;
use ocellus::rng::Rng;
use ocellus::tensor::Tensor;
use ocellus::text::grouped;
use ocellus::LayerExt;
use ocellus_data::augment::shift_plane;
use ocellus_data::{Dataset, Normalization};
use ocellus_viz::{hstack, image_grid, line_chart, Canvas, Colormap, Series, Tile, TileRange};

/// The four diagonal directions of a shift, as `(dy, dx)` per pixel of shift: down-right,
/// down-left, up-right, up-left (`dy > 0` moves content down, `dx > 0` right).
pub const DIAGONALS: [(isize, isize); 4] = [(1, 1), (1, -1), (-1, 1), (-1, -1)];

/// Names of [`DIAGONALS`], in the same order.
const DIAGONAL_NAMES: [&str; 4] = ["down-right", "down-left", "up-right", "up-left"];

/// What a shift by `k` means, in one sentence (for tables and reports).
pub const SHIFT_DESCRIPTION: &str = "shift k: every test image moved k pixels down and k right, \
and likewise down-left, up-right and up-left, with black filling the uncovered border; \
the accuracy is the mean over the four directions";

/// The value a black pixel (0 before normalisation) takes after `normalization`, per
/// channel: `(0 − mean[c]) / std[c]`, computed by the normalisation itself.
pub fn normalised_black(normalization: &Normalization) -> Result<Vec<f32>> {
    let c = normalization.mean.len();
    let mut black = Tensor::zeros(&[1, c, 1, 1]);
    normalization.apply_to_batch(&mut black)?;
    Ok(black.into_vec())
}

/// A copy of `data` with every image moved `dy` rows down and `dx` columns right (negative:
/// up, left): `out(c, y, x) = in(c, y − dy, x − dx)`, and `fill[c]` where that falls outside.
pub fn shifted(data: &Dataset, dy: isize, dx: isize, fill: &[f32]) -> Result<Dataset> {
    let (c, h, w) = data.image_shape();
    assert_eq!(fill.len(), c, "shifted: one fill value per channel");
    let mut images = data.images().clone();
    for image in images.data_mut().chunks_exact_mut(c * h * w) {
        for (plane, &f) in image.chunks_exact_mut(h * w).zip(fill) {
            shift_plane(plane, h, w, dy, dx, f);
        }
    }
    Dataset::new(images, data.labels().to_vec(), data.classes().to_vec())
}

/// Accuracy of `model` on `data` shifted by `k` pixels along each of the four
/// [`DIAGONALS`] (black border), averaged over the directions. `data` must be normalised
/// with `normalization`, as a run's test set is; `k = 0` is plain evaluation.
pub fn evaluate_shifted(
    model: &mut dyn Layer,
    data: &Dataset,
    normalization: &Normalization,
    k: usize,
    batch_size: usize,
) -> Result<f32> {
    if k == 0 {
        return Ok(trainer::evaluate(model, data, batch_size)?.accuracy);
    }
    let black = normalised_black(normalization)?;
    let k = k as isize;
    let mut sum = 0.0;
    for (dy, dx) in DIAGONALS {
        let moved = shifted(data, dy * k, dx * k, &black)?;
        sum += trainer::evaluate(model, &moved, batch_size)?.accuracy;
    }
    Ok(sum / DIAGONALS.len() as f32)
}

/// One model's line of a comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelResult {
    /// The model as given (zoo name or architecture file).
    pub model: String,
    /// The year of the design a zoo model follows, if it stands for one (zoo::milestone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub year: Option<u16>,
    /// The idea of the architecture timeline the model carries, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idea: Option<String>,
    pub parameters: usize,
    /// Multiply-adds of one forward pass for one image ([`Layer::macs`] on a batch of 1).
    pub macs_per_image: u64,
    pub test_accuracy: f32,
    pub test_loss: f32,
    /// Seconds spent in the training epochs (evaluation and checkpoints not counted).
    pub train_seconds: f64,
    /// `shifted_accuracy[i]`: test accuracy with the images shifted by `shifts[i]` pixels
    /// (see [`Comparison::shifts`]).
    pub shifted_accuracy: Vec<f32>,
    /// The run directory.
    pub run_dir: String,
    /// The run's metrics, one record per epoch.
    pub epochs: Vec<EpochRecord>,
    /// How large the gradient is at the first layer, for this depth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gradient: Option<GradientAtDepth>,
}

/// The gradient that reaches the first layer of a network, against its depth: the
/// lecture's claim that it fades through a deep plain network and that shortcuts keep it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradientAtDepth {
    /// Weight layers: convolutions and linear layers, projection shortcuts not counted
    /// (ResNet-20 and plain-20 have 20).
    pub weight_layers: usize,
    /// ‖∂L/∂θ‖ of the first layer with parameters, for the network as the run's seed
    /// builds it, on the first batch of a shuffle of the training set by that seed.
    pub first_layer_at_init: f32,
    /// The median of the same over the diagnosed steps of training, when the run took
    /// diagnostics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_layer_in_training: Option<f32>,
}

/// Weight layers of `model`: parameters named `…weight` with two or more axes
/// (convolution and linear weights; BatchNorm's are vectors), outside shortcuts.
pub fn weight_layers(model: &dyn Layer) -> usize {
    model
        .params()
        .iter()
        .filter(|(name, p)| {
            name.ends_with("weight") && p.shape().len() >= 2 && !name.contains("shortcut")
        })
        .count()
}

/// One diagnosed step of the run's network at initialisation — rebuilt from its
/// architecture and seed, as [`Run::start`] builds it, so the run itself is untouched —
/// on the first batch of its training set shuffled by the seed, with the run's optimiser.
pub fn gradient_flow_at_initialisation(run: &Run) -> Result<StepDiagnostics> {
    let mut model = run
        .info
        .architecture
        .build(&mut Rng::new(run.config.seed))?;
    let mut optimizer = run.config.build_optimizer()?;
    let mut batches = run
        .train
        .shuffled_batches(run.config.batch_size, &mut Rng::new(run.config.seed))?;
    let (mut x, mut labels) = (Tensor::default(), Vec::new());
    batches.next_into(&mut x, &mut labels);
    diagnostics::at_initialisation(&mut model, optimizer.as_mut(), &x, &labels)
}

/// [`GradientAtDepth`] of a run, from its step at initialisation and, if it took any,
/// its diagnosed training steps.
pub fn gradient_at_depth(run: &Run, at_init: &StepDiagnostics) -> Result<GradientAtDepth> {
    let first = |r: &StepDiagnostics| r.first_weighted_layer().map(|l| l.grad_norm);
    let in_training = if run.config.diagnostics_every.is_some() {
        let mut norms: Vec<f32> = diagnostics::read_diagnostics(&run.dir)?
            .iter()
            .filter_map(first)
            .filter(|v| v.is_finite())
            .collect();
        norms.sort_by(f32::total_cmp);
        norms.get(norms.len() / 2).copied()
    } else {
        None
    };
    Ok(GradientAtDepth {
        weight_layers: weight_layers(&run.model),
        first_layer_at_init: first(at_init).unwrap_or(f32::NAN),
        first_layer_in_training: in_training,
    })
}

/// Measures a trained run: evaluates it on the test set (drawing its confusion matrix with
/// [`Run::finish`]) and on the test set shifted by each of `shifts` pixels.
pub fn measure(run: &mut Run, shifts: &[usize]) -> Result<ModelResult> {
    let test = run.finish()?;
    let (c, h, w) = run.test.image_shape();
    let batch_size = run.eval_batch_size();
    let mut shifted_accuracy = Vec::with_capacity(shifts.len());
    for &k in shifts {
        shifted_accuracy.push(evaluate_shifted(
            &mut run.model,
            &run.test,
            &run.info.normalization,
            k,
            batch_size,
        )?);
    }
    let epochs = run.metrics()?;
    let milestone = ocellus::zoo::milestone(&run.config.model);
    Ok(ModelResult {
        model: run.config.model.clone(),
        year: milestone.map(|m| m.year),
        idea: milestone.map(|m| m.idea.to_string()),
        parameters: run.model.param_count(),
        macs_per_image: run.model.macs(&[1, c, h, w]),
        test_accuracy: test.accuracy,
        test_loss: test.loss,
        train_seconds: epochs.iter().map(|r| r.seconds).sum(),
        shifted_accuracy,
        run_dir: run.dir.display().to_string(),
        epochs,
        gradient: None,
    })
}

/// Models trained under one budget and measured the same way.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Dataset name.
    pub data: String,
    pub train_images: usize,
    pub test_images: usize,
    pub epochs: usize,
    pub batch_size: usize,
    /// The optimiser with its settings, e.g. `AdamW(lr 0.001, …)`.
    pub optimizer: String,
    pub seed: u64,
    /// Worker threads used (training time depends on it).
    pub threads: usize,
    /// The shifts measured, in pixels.
    pub shifts: Vec<usize>,
    /// What a shift is ([`SHIFT_DESCRIPTION`]).
    pub shift: String,
    pub models: Vec<ModelResult>,
}

impl Comparison {
    /// The table as Markdown, columns padded so it also reads as plain text: model (with
    /// its year and idea when models of the architecture timeline are compared),
    /// parameters, multiply-adds per image, test accuracy, training time, and the accuracy
    /// at every shift.
    pub fn table(&self) -> String {
        let timeline = self.models.iter().any(|m| m.year.is_some());
        let mut header: Vec<String> = vec!["model".into()];
        if timeline {
            header.extend(["year".into(), "idea".into()]);
        }
        header.extend(
            [
                "parameters",
                "multiply-adds / image",
                "test accuracy",
                "train time (s)",
            ]
            .map(String::from),
        );
        header.extend(self.shifts.iter().map(|k| format!("shift {k} px")));
        let gradients = self.models.iter().any(|m| m.gradient.is_some());
        let in_training = self.models.iter().any(|m| {
            m.gradient
                .as_ref()
                .is_some_and(|g| g.first_layer_in_training.is_some())
        });
        if gradients {
            header.extend(["weight layers".into(), "first-layer ‖∂L/∂W‖ at init".into()]);
            if in_training {
                header.push("first-layer ‖∂L/∂W‖ in training (median)".into());
            }
        }
        let rows: Vec<Vec<String>> = self
            .models
            .iter()
            .map(|m| {
                let mut row = vec![m.model.clone()];
                if timeline {
                    row.push(m.year.map_or("—".into(), |y| y.to_string()));
                    row.push(m.idea.clone().unwrap_or_else(|| "—".into()));
                }
                row.extend([
                    grouped(m.parameters as u64),
                    grouped(m.macs_per_image),
                    percent(m.test_accuracy),
                    format!("{:.1}", m.train_seconds),
                ]);
                row.extend(m.shifted_accuracy.iter().map(|&a| percent(a)));
                if gradients {
                    let g = m.gradient.as_ref();
                    row.push(g.map_or("—".into(), |g| g.weight_layers.to_string()));
                    row.push(g.map_or("—".into(), |g| format!("{:.2e}", g.first_layer_at_init)));
                    if in_training {
                        let median = g.and_then(|g| g.first_layer_in_training);
                        row.push(median.map_or("—".into(), |v| format!("{v:.2e}")));
                    }
                }
                row
            })
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|j| {
                rows.iter()
                    .map(|r| r[j].chars().count())
                    .chain([header[j].chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        // Words (model, idea) are left-aligned, numbers right-aligned.
        let text_column = |j: usize| j == 0 || (timeline && j == 2);
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .enumerate()
                .map(|(j, (cell, &w))| {
                    if text_column(j) {
                        format!("{cell:<w$}")
                    } else {
                        format!("{cell:>w$}")
                    }
                })
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(j, &w)| {
                if text_column(j) {
                    "-".repeat(w)
                } else {
                    format!("{}:", "-".repeat(w - 1))
                }
            })
            .collect();
        let mut out = line(&header);
        out += &format!("| {} |\n", rule.join(" | "));
        for row in &rows {
            out += &line(row);
        }
        out
    }

    /// A Markdown document: the settings, the table and what a shift is.
    pub fn to_markdown(&self) -> String {
        format!(
            "# Comparison on {}\n\n\
             {} training images, {} test images; every model trained {} epoch(s) with batch size {}, \
             {}, seed {}, on {} thread(s).\n\n{}\n\
             Multiply-adds: one forward pass of one image. Train time: the training epochs only \
             (evaluation and checkpoints not counted). Test accuracy after a shift by k pixels: \
             {}.\n",
            self.data,
            grouped(self.train_images as u64),
            grouped(self.test_images as u64),
            self.epochs,
            self.batch_size,
            self.optimizer,
            self.seed,
            self.threads,
            self.table(),
            SHIFT_DESCRIPTION.trim_start_matches("shift k: "),
        )
    }

    /// The comparison as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a comparison always serialises")
    }

    /// Test accuracy and test loss per epoch, one curve per model, side by side.
    pub fn curves_picture(&self) -> Canvas {
        let series = |value: fn(&EpochRecord) -> f32| -> Vec<Series> {
            self.models
                .iter()
                .map(|m| {
                    Series::new(
                        m.model.clone(),
                        m.epochs
                            .iter()
                            .map(|r| (r.epoch as f64, value(r) as f64))
                            .collect(),
                    )
                })
                .collect()
        };
        let accuracy = line_chart(
            "Test accuracy",
            "epoch",
            "fraction correct",
            &series(|r| r.val_accuracy),
            480,
            320,
        );
        let loss = line_chart(
            "Test loss",
            "epoch",
            "cross-entropy",
            &series(|r| r.val_loss),
            480,
            320,
        );
        hstack(&[("", &accuracy), ("", &loss)])
    }

    /// The gradient norm at the first layer against the number of weight layers, on a
    /// log scale: one line per family of models (the name without its digits: `plain`,
    /// `resnet`), at initialisation and, when measured, the median over training. `None`
    /// when no model has it.
    pub fn gradient_chart(&self) -> Option<Canvas> {
        // (family, points at initialisation, points in training)
        type Points = Vec<(f64, f64)>;
        let mut families: Vec<(String, Points, Points)> = Vec::new();
        for m in &self.models {
            let Some(g) = &m.gradient else { continue };
            let family = m
                .model
                .trim_end_matches(|c: char| c.is_ascii_digit())
                .to_string();
            let index = match families.iter().position(|f| f.0 == family) {
                Some(i) => i,
                None => {
                    families.push((family, Vec::new(), Vec::new()));
                    families.len() - 1
                }
            };
            let depth = g.weight_layers as f64;
            families[index]
                .1
                .push((depth, (g.first_layer_at_init as f64).log10()));
            if let Some(v) = g.first_layer_in_training {
                families[index].2.push((depth, (v as f64).log10()));
            }
        }
        if families.is_empty() {
            return None;
        }
        let mut series = Vec::new();
        for (family, init, training) in families {
            series.push(Series::new(format!("{family}, at initialisation"), init));
            if !training.is_empty() {
                series.push(Series::new(
                    format!("{family}, training (median)"),
                    training,
                ));
            }
        }
        for s in &mut series {
            s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        Some(line_chart(
            "Gradient at the first layer against depth",
            "weight layers",
            "log10 |∂L/∂W| of the first layer",
            &series,
            560,
            380,
        ))
    }

    /// Test accuracy against the shift in pixels (0 = the test set as it is), one line per
    /// model.
    pub fn shift_chart(&self) -> Canvas {
        let series: Vec<Series> = self
            .models
            .iter()
            .map(|m| {
                let mut points = vec![(0.0, m.test_accuracy as f64)];
                points.extend(
                    self.shifts
                        .iter()
                        .zip(&m.shifted_accuracy)
                        .map(|(&k, &a)| (k as f64, a as f64)),
                );
                Series::new(m.model.clone(), points)
            })
            .collect();
        line_chart(
            "Test accuracy of shifted images",
            "shift (pixels, diagonal, mean of 4 directions)",
            "fraction correct",
            &series,
            520,
            360,
        )
    }

    /// [`Comparison::shift_chart`] beside examples of the shifted images
    /// ([`shift_examples`]).
    pub fn shift_picture(&self, examples: &Canvas) -> Canvas {
        hstack(&[("", &self.shift_chart()), ("", examples)])
    }
}

/// Test image `index` of `data` (normalised with `normalization`) shifted by `0..=max_shift`
/// pixels (columns) in each of the four [`DIAGONALS`] (rows), shown in original pixel values:
/// what the models are asked to classify.
pub fn shift_examples(
    data: &Dataset,
    normalization: &Normalization,
    index: usize,
    max_shift: usize,
) -> Result<Canvas> {
    let (c, h, w) = data.image_shape();
    let black = normalised_black(normalization)?;
    let one = data.subset(&[index]);
    let mut tiles = Vec::new();
    for ((dy, dx), name) in DIAGONALS.into_iter().zip(DIAGONAL_NAMES) {
        for k in 0..=max_shift as isize {
            let moved = shifted(&one, dy * k, dx * k, &black)?;
            let (mut x, _, _) = moved.into_parts();
            normalization.undo_batch(&mut x)?;
            let mut tile = Tile::new(c, h, w, x.into_vec());
            tile.caption = if k == 0 {
                "original".into()
            } else {
                format!("{k} {name}")
            };
            tiles.push(tile);
        }
    }
    Ok(image_grid(
        "The shifted test images",
        &tiles,
        max_shift + 1,
        3,
        TileRange::Fixed(0.0, 1.0),
        Colormap::Gray,
    ))
}

/// `0.8912` → `89.12%`.
fn percent(fraction: f32) -> String {
    format!("{:.2}%", 100.0 * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_grouped_by_three() {
        assert_eq!(percent(0.8912), "89.12%");
    }
}
