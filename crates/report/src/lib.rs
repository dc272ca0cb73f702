//! The report of a training run: one self-contained HTML page — the settings, the summary
//! table, the training curves, the confusion matrix, the filters, feature maps and the
//! misclassified test images with their Grad-CAM — that opens offline in any browser.
//!
//! Every picture is drawn with [`ocellus_viz`] / [`ocellus_viz::inspect`], encoded as PNG and
//! embedded as a `data:image/png;base64,…` URI; the styles are in the page itself. Text
//! that comes from files (model, dataset and class names, layer descriptions) is escaped
//! with [`escape_html`].

use std::fmt::Write as _;

use base64::engine::{general_purpose, GeneralPurpose};
use base64::Engine as _;
use ocellus::error::{Error, Result};
use ocellus::layers::Mode;
use ocellus::loss;
use ocellus::network::Sequential;
use ocellus::summary::{Summary, COLUMNS};
use ocellus::text::{bytes_str, grouped};
use ocellus::LayerExt;
use ocellus_data::Dataset;
use ocellus_train::diagnostics::{gradflow_picture, StepDiagnostics};
use ocellus_train::run::{confusion_picture, curves_picture, EpochRecord, ModelInfo, RunConfig};
use ocellus_train::trainer::{self, Evaluation};
use ocellus_viz::inspect::{self, FilterLimits};
use ocellus_viz::{hstack, image_grid, vstack, Canvas, Colormap, Tile, TileRange};

/// Misclassified test images shown at most.
pub const MAX_MISTAKES: usize = 16;
/// Test images whose feature maps are shown.
pub const FEATURE_IMAGES: usize = 3;
/// Feature maps shown at most per layer.
const MAX_MAPS: usize = 16;

/// Everything a report describes besides the model itself.
pub struct RunReport<'a> {
    /// The run's name as the reader knows it (its directory).
    pub name: &'a str,
    pub config: &'a RunConfig,
    pub info: &'a ModelInfo,
    pub metrics: &'a [EpochRecord],
    /// The test set as loaded, values in [0, 1]: it is shown as is and normalised with
    /// the model's statistics for evaluation.
    pub test: &'a Dataset,
    /// The diagnosed steps of `diagnostics.jsonl` (empty when the run was trained
    /// without diagnostics).
    pub diagnostics: &'a [StepDiagnostics],
}

/// `&`, `<`, `>`, `"` and `'` as HTML entities, so that any text is shown as text, in an
/// element or in an attribute.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The base64 of data URIs: the standard alphabet (RFC 4648 §4, with `+` and `/`) and `=`
/// padding.
const DATA_URI_BASE64: GeneralPurpose = general_purpose::STANDARD;

/// An `<img>` element showing `canvas`, embedded as a PNG data URI, at its own size (a
/// narrower page scales it down).
pub fn img_tag(canvas: &Canvas, alt: &str) -> Result<String> {
    Ok(format!(
        "<img src=\"data:image/png;base64,{}\" width=\"{}\" height=\"{}\" alt=\"{}\">",
        DATA_URI_BASE64.encode(canvas.to_png_bytes()?),
        canvas.width,
        canvas.height,
        escape_html(alt)
    ))
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
p.note{color:#555;max-width:52em}img{max-width:100%;height:auto;image-rendering:pixelated;display:block;margin:.6em 0}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0}td,th{padding:.25em .7em;border-bottom:1px solid #e4e4e4;text-align:left}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tr.total td{font-weight:600;border-top:2px solid #999}
tr.inner td:first-child,tr.inner td:nth-child(2){padding-left:1.8em}dl.facts{display:grid;grid-template-columns:max-content auto;gap:.2em 1.2em}
dl.facts dt{color:#555}dl.facts dd{margin:0;font-weight:600}";

/// The report of one run as an HTML page. `model` is the trained network; it is run in
/// [`Mode::Eval`] on the test set (its confusion matrix and mistakes) and on a few test
/// images (their feature maps).
pub fn html(model: &mut Sequential, run: &RunReport) -> Result<String> {
    let config = run.config;
    let info = run.info;
    let classes = &info.classes;
    let [c, h, w] = info.architecture.input;
    let (tc, th, tw) = run.test.image_shape();
    if [tc, th, tw] != [c, h, w] || run.test.num_classes() != classes.len() {
        return Err(Error::config(
            "report",
            format!(
                "the model takes {c}×{h}×{w} images and {} classes, but the test set has {tc}×{th}×{tw} images and {} classes",
                classes.len(),
                run.test.num_classes()
            ),
        ));
    }
    if run.test.is_empty() {
        return Err(Error::config("report", "the test set has no images"));
    }
    let summary = Summary::of(model, &[1, c, h, w])?;
    let mut normalised = run.test.clone();
    info.normalization.apply(&mut normalised)?;
    let evaluation = trainer::evaluate(model, &normalised, config.batch_size.max(256))?;

    let mut page = String::new();
    let title = format!("{} on {}", config.model, config.data);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>ocellus report: {}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n",
        escape_html(&title)
    );
    header(&mut page, run, &summary, &evaluation, &title);
    summary_section(&mut page, &summary);
    curves_section(&mut page, run, &evaluation)?;
    gradflow_section(&mut page, run)?;
    filters_section(&mut page, model)?;
    features_section(&mut page, model, run, &normalised)?;
    mistakes_section(&mut page, model, run, &normalised, &evaluation)?;
    page.push_str(
        "<p class=\"note\">Written by <code>ocellus report</code>. Every picture is embedded in this file, so it can be mailed, archived or opened offline.</p>\n</body>\n</html>\n",
    );
    Ok(page)
}

/// `64.00%`.
fn percent(fraction: f32) -> String {
    format!("{:.2}%", 100.0 * fraction)
}

/// Section 1: what was trained, how, and how well.
fn header(page: &mut String, run: &RunReport, summary: &Summary, result: &Evaluation, title: &str) {
    let config = run.config;
    let name = run
        .info
        .architecture
        .name
        .as_deref()
        .unwrap_or(&config.model);
    let correct: usize = (0..result.confusion.len())
        .map(|i| result.confusion[i][i])
        .sum();
    let last = run.metrics.last();
    let mut facts: Vec<(&str, String)> = vec![
        ("run", escape_html(run.name)),
        ("model", escape_html(name)),
        ("dataset", escape_html(&config.data)),
        (
            "epochs",
            format!("{} of {} planned", run.info.epoch, config.epochs),
        ),
        (
            "optimiser",
            format!(
                "{}, learning rate {} ({} schedule), batch size {}",
                escape_html(&config.optimizer),
                config.lr,
                escape_html(&config.schedule),
                config.batch_size
            ),
        ),
        (
            "test accuracy",
            format!(
                "{} ({} of {} test images right)",
                percent(result.accuracy),
                grouped(correct as u64),
                grouped(run.test.len() as u64)
            ),
        ),
        (
            "parameters",
            format!(
                "{} ({} as f32)",
                grouped(summary.total_params as u64),
                bytes_str((std::mem::size_of::<f32>() * summary.total_params) as u64)
            ),
        ),
    ];
    if let Some(last) = last {
        facts.push((
            "last epoch",
            format!(
                "training accuracy {}, {} accuracy {}, {:.0} images/s",
                percent(last.train_accuracy),
                config.eval_name(),
                percent(last.val_accuracy),
                last.images_per_second
            ),
        ));
    }
    let _ = writeln!(page, "<h1>{}</h1>", escape_html(title));
    page.push_str("<p class=\"note\">What was trained, how, and how well. The test accuracy is measured now, on every image of the test set, which the model never trained on.</p>\n<dl class=\"facts\">\n");
    for (key, value) in facts {
        let _ = writeln!(page, "<dt>{key}</dt><dd>{value}</dd>");
    }
    page.push_str("</dl>\n");
}

/// Section 2: the summary table, one row per layer, with a totals row.
fn summary_section(page: &mut String, summary: &Summary) {
    page.push_str("<h2>The network, layer by layer</h2>\n<p class=\"note\">For one image: the shape each layer outputs (channels × height × width), its learned parameters, the multiply-adds it costs, its receptive field (how many input pixels one output value sees) and jump (how many input pixels apart two neighbouring outputs are), and the memory its output takes. Indented rows are inside the block above them.</p>\n<table class=\"summary\">\n<tr>");
    for (k, column) in COLUMNS.iter().enumerate() {
        let class = if k >= 2 { " class=\"n\"" } else { "" };
        let _ = write!(page, "<th{class}>{}</th>", escape_html(column));
    }
    page.push_str("</tr>\n");
    for row in &summary.rows {
        let class = if row.depth > 0 {
            " class=\"inner\""
        } else {
            ""
        };
        let _ = write!(page, "<tr{class}>");
        for (k, cell) in row.cells().iter().enumerate() {
            let class = if k >= 2 { " class=\"n\"" } else { "" };
            let _ = write!(page, "<td{class}>{}</td>", escape_html(cell));
        }
        page.push_str("</tr>\n");
    }
    let _ = writeln!(
        page,
        "<tr class=\"total\"><td>total</td><td></td><td></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td></td><td></td><td class=\"n\">{}</td></tr>\n</table>",
        grouped(summary.total_params as u64),
        grouped(summary.total_macs),
        bytes_str(summary.total_activation_bytes)
    );
}

/// Section 3: loss and accuracy per epoch, and the confusion matrix.
fn curves_section(page: &mut String, run: &RunReport, result: &Evaluation) -> Result<()> {
    let eval_name = run.config.eval_name();
    page.push_str("<h2>Training</h2>\n");
    if run.metrics.is_empty() {
        page.push_str("<p class=\"note\">No epoch was recorded in metrics.jsonl, so there are no curves to draw.</p>\n");
    } else {
        let _ = writeln!(
            page,
            "<p class=\"note\">Loss and accuracy after every epoch, on the training images and on the {eval_name} images. When the training curve keeps improving while the {eval_name} curve stalls or worsens, the network is memorising rather than learning (overfitting).</p>\n{}",
            img_tag(&curves_picture(run.metrics, eval_name), "training curves")?
        );
    }
    let _ = writeln!(
        page,
        "<p class=\"note\">The confusion matrix counts the test images of each true class (rows) by the class the network predicted (columns): the diagonal is right, everything off it is a mistake, and the largest off-diagonal cells show which classes it confuses.</p>\n{}",
        img_tag(&confusion_picture(result, &run.info.classes), "confusion matrix")?
    );
    Ok(())
}

/// Section 3b: how the gradients flowed through the layers while the network trained.
fn gradflow_section(page: &mut String, run: &RunReport) -> Result<()> {
    page.push_str("<h2>Gradient flow</h2>\n");
    let (Some(first), Some(last)) = (run.diagnostics.first(), run.diagnostics.last()) else {
        page.push_str("<p class=\"note\">The run was trained without <code>--diagnostics</code>, so there is no record of its gradients. <code>ocellus gradflow --model RUN</code> shows them for one batch at initialisation.</p>\n");
        return Ok(());
    };
    let _ = writeln!(
        page,
        "<p class=\"note\">One row per layer (0 at the input), one column per diagnosed step ({} steps, from step {} to {}), on log colour scales: the size of the gradient reaching each layer's input and of its parameters' gradient, and how far each optimiser step moved its parameters relative to their size. A gradient that fades row by row towards the input is the vanishing gradient of deep plain networks; dark rows of the update ratio are layers that barely learn. The last panel shows the ReLU channels that were zero for the whole batch (dead units): a dead channel passes no gradient back. Grey cells have no value (a layer without parameters, or the first layer's input, which is data) or are exactly zero.</p>\n{}",
        run.diagnostics.len(),
        first.step,
        last.step,
        img_tag(&gradflow_picture(run.diagnostics)?, "gradient flow per layer over training")?
    );
    Ok(())
}

/// Section 4: the filters of the first convolution and of one deeper one.
fn filters_section(page: &mut String, model: &Sequential) -> Result<()> {
    let convs: Vec<String> = inspect::conv_layers(model)
        .into_iter()
        .map(|(name, _)| name)
        .take(2)
        .collect();
    page.push_str("<h2>Filters</h2>\n");
    if convs.is_empty() {
        page.push_str("<p class=\"note\">The model has no convolution, so there are no filters to show.</p>\n");
        return Ok(());
    }
    page.push_str("<p class=\"note\">The weights the convolutions learned. A filter of the first layer looks directly at the pixels, so it can be shown as a small picture: it responds most to the pattern it resembles (edges, stripes, spots). A deeper filter combines the maps of the layer before, one kernel per input channel (blue negative, red positive).</p>\n");
    for name in convs {
        let picture = inspect::filters_picture(model, Some(&name), FilterLimits::default())?;
        let _ = writeln!(
            page,
            "{}",
            img_tag(&picture, &format!("filters of layer {name}"))?
        );
    }
    Ok(())
}

/// The first test image of each of `count` classes spread over the class list (all
/// classes when there are fewer), so the pictures show different kinds of image.
fn one_per_class(test: &Dataset, count: usize) -> Vec<usize> {
    let classes: Vec<usize> = (0..test.num_classes()).collect();
    spread(&classes, count)
        .into_iter()
        .filter_map(|class| test.labels().iter().position(|&l| l == class))
        .collect()
}

/// Section 5: the feature maps of a few test images.
fn features_section(
    page: &mut String,
    model: &mut Sequential,
    run: &RunReport,
    normalised: &Dataset,
) -> Result<()> {
    page.push_str("<h2>Feature maps</h2>\n<p class=\"note\">What the convolution and pooling layers make of a few test images: every small picture is one channel of a layer's output, bright where the channel responds strongly. Early layers still look like the image; deeper ones are smaller and more abstract.</p>\n");
    for n in one_per_class(run.test, FEATURE_IMAGES) {
        let (x, labels) = normalised.gather(&[n]);
        let maps = inspect::feature_maps(model, &x, false)?;
        if maps.is_empty() {
            page.push_str("<p class=\"note\">The model has no convolution or pooling layer, so there are no feature maps to show.</p>\n");
            return Ok(());
        }
        let (seen, _) = run.test.gather(&[n]);
        let title = format!(
            "feature maps for test image {n} ({})",
            run.info.classes[labels[0]]
        );
        let picture =
            inspect::feature_maps_picture(&title, &Tile::from_tensor(&seen)?, &maps, MAX_MAPS);
        let _ = writeln!(page, "{}", img_tag(&picture, &title)?);
    }
    Ok(())
}

/// Up to `count` of `items`, evenly spread over them (all when there are fewer).
fn spread(items: &[usize], count: usize) -> Vec<usize> {
    if items.len() <= count {
        return items.to_vec();
    }
    (0..count).map(|k| items[k * items.len() / count]).collect()
}

/// Section 6: test images the network got wrong, with what it predicted.
fn mistakes_section(
    page: &mut String,
    model: &mut Sequential,
    run: &RunReport,
    normalised: &Dataset,
    result: &Evaluation,
) -> Result<()> {
    let classes = &run.info.classes;
    let labels = run.test.labels();
    let wrong: Vec<usize> = (0..labels.len())
        .filter(|&n| result.predictions[n] != labels[n])
        .collect();
    let _ = writeln!(
        page,
        "<h2 id=\"misclassified\">Misclassified test images</h2>\n<p class=\"note\">{} of {} test images were classified wrongly ({}).",
        grouped(wrong.len() as u64),
        grouped(labels.len() as u64),
        percent(wrong.len() as f32 / labels.len() as f32)
    );
    if wrong.is_empty() {
        page.push_str(" There is nothing to show.</p>\n");
        return Ok(());
    }
    let shown = spread(&wrong, MAX_MISTAKES);
    let _ = writeln!(
        page,
        " {} shown below, each captioned <em>true class → predicted class (the network's probability for its prediction)</em>. A confident mistake often points to an ambiguous or mislabelled image; an unsure one to a class the network has not yet learned to tell apart.</p>",
        if shown.len() < wrong.len() {
            format!("{} of them, spread over the test set, are", shown.len())
        } else {
            "They are".to_string()
        }
    );
    let (x, _) = normalised.gather(&shown);
    let probabilities = loss::softmax(&model.forward_ref(&x, Mode::Eval)?)?;
    let k = classes.len();
    let tiles: Vec<Tile> = shown
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let (seen, _) = run.test.gather(&[n]);
            let predicted = result.predictions[n];
            let p = probabilities.data()[i * k + predicted];
            Ok(Tile::from_tensor(&seen)?.with_caption(format!(
                "{} → {} ({:.0}%)",
                classes[labels[n]],
                classes[predicted],
                100.0 * p
            )))
        })
        .collect::<Result<_>>()?;
    let (_, h, w) = run.test.image_shape();
    let scale = (96 / h.max(w).max(1)).max(1);
    let grid = image_grid(
        "",
        &tiles,
        8,
        scale,
        TileRange::Fixed(0.0, 1.0),
        Colormap::Gray,
    );
    let _ = writeln!(page, "{}", img_tag(&grid, "misclassified test images")?);
    gradcam_of_mistakes(page, model, run, normalised, &shown)
}

/// The Grad-CAM of each mistake shown, for the class the network predicted: where its
/// evidence for the wrong answer lies.
fn gradcam_of_mistakes(
    page: &mut String,
    model: &mut Sequential,
    run: &RunReport,
    normalised: &Dataset,
    shown: &[usize],
) -> Result<()> {
    let [c, h, w] = run.info.architecture.input;
    let Some(layer) = inspect::default_gradcam_layer(model, &[1, c, h, w])? else {
        return Ok(());
    };
    let classes = &run.info.classes;
    let labels = run.test.labels();
    let scale = (96 / h.max(w).max(1)).max(1);
    let mut panels = Vec::with_capacity(shown.len());
    for &n in shown {
        let (x, _) = normalised.gather(&[n]);
        let gradcam = inspect::grad_cam(model, &x, &layer, None)?;
        let (seen, _) = run.test.gather(&[n]);
        let overlay = inspect::gradcam_overlay(&Tile::from_tensor(&seen)?, &gradcam, scale);
        let caption = format!("{} → {}", classes[labels[n]], classes[gradcam.predicted()]);
        panels.push((caption, overlay));
    }
    let rows: Vec<Canvas> = panels
        .chunks(8)
        .map(|row| {
            let row: Vec<(&str, &Canvas)> = row.iter().map(|(t, c)| (t.as_str(), c)).collect();
            hstack(&row)
        })
        .collect();
    let rows: Vec<(&str, &Canvas)> = rows.iter().map(|r| ("", r)).collect();
    let grid = vstack(&rows);
    let description = model.layers()[layer.parse::<usize>().expect("a top-level layer")].describe();
    let _ = writeln!(
        page,
        "<h3>Where the network looked</h3>\n<p class=\"note\">Grad-CAM of the same images for the predicted class, at layer {} ({}): the layer's maps weighted by their mean gradient of the predicted score, ReLU'd and interpolated to the image (yellow: most evidence for the wrong answer). <code>ocellus viz gradcam --checkpoint RUN --layer L --sample K</code> draws one image at any layer, for any class.</p>",
        escape_html(&layer),
        escape_html(&description)
    );
    let _ = writeln!(
        page,
        "{}",
        img_tag(&grid, "Grad-CAM of the misclassified test images")?
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
        // RFC 4648 §10.
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(DATA_URI_BASE64.encode(input), expected, "{input:?}");
        }
    }

    #[test]
    fn base64_uses_the_whole_alphabet() {
        // 0x00 0x10 0x83 … : the bytes whose 6-bit groups count 0, 1, 2, … 63.
        let mut bits: Vec<bool> = Vec::new();
        for v in 0u8..64 {
            bits.extend((0..6).rev().map(|b| v >> b & 1 == 1));
        }
        let bytes: Vec<u8> = bits
            .chunks(8)
            .map(|c| c.iter().fold(0, |acc, &b| acc << 1 | b as u8))
            .collect();
        assert_eq!(
            DATA_URI_BASE64.encode(&bytes),
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        );
        assert_eq!(DATA_URI_BASE64.encode([0xff, 0xff]), "//8=");
    }

    #[test]
    fn html_escaping_leaves_no_markup() {
        assert_eq!(
            escape_html(r#"<b>"cat" & 'dog'</b>"#),
            "&lt;b&gt;&quot;cat&quot; &amp; &#39;dog&#39;&lt;/b&gt;"
        );
        assert_eq!(escape_html("T-shirt/top → 5×5"), "T-shirt/top → 5×5");
    }

    /// An untrained LeNet-5 on random images of two classes named like markup, so the
    /// page has mistakes and text from "files" that must be escaped.
    #[test]
    fn page_escapes_names_and_embeds_every_picture() {
        let mut rng = ocellus::rng::Rng::new(7);
        let arch = ocellus::zoo::model("lenet5", [1, 28, 28], 2).unwrap();
        let mut model = arch.build(&mut rng).unwrap();
        let classes = vec!["<b>bold</b>".to_string(), "cats & \"dogs\"".to_string()];
        let images = ocellus::tensor::Tensor::uniform(&[12, 1, 28, 28], 0.0, 1.0, &mut rng);
        let labels = (0..12).map(|n| n % 2).collect();
        let test = Dataset::new(images, labels, classes.clone()).unwrap();
        let config = RunConfig {
            model: "<script>alert(1)</script>".into(),
            data: "folder".into(),
            epochs: 1,
            batch_size: 4,
            optimizer: "sgd".into(),
            lr: 0.1,
            momentum: 0.0,
            ..RunConfig::default()
        };
        let info = ModelInfo {
            architecture: arch,
            normalization: ocellus_data::Normalization {
                mean: vec![0.5],
                std: vec![0.3],
            },
            classes,
            epoch: 1,
        };
        let run = RunReport {
            name: "a<run>",
            config: &config,
            info: &info,
            metrics: &[],
            test: &test,
            diagnostics: &[],
        };
        let page = html(&mut model, &run).unwrap();
        for raw in ["<script", "<b>", "<run>", "\"dogs\""] {
            assert!(!page.contains(raw), "{raw} is not escaped");
        }
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        // No curves without metrics; confusion, 2 filters, 2 feature maps, mistakes and
        // their Grad-CAM (at layer 3, LeNet-5's last convolution).
        assert!(page.contains("no curves to draw"));
        assert_eq!(page.matches("<img src=\"data:image/png;base64,").count(), 7);
        assert_eq!(page.matches("<img ").count(), 7);
        assert!(page
            .contains("Grad-CAM of the same images for the predicted class, at layer 3 (Conv2d"));
        assert!(page.contains("trained without <code>--diagnostics</code>"));

        // With diagnosed steps, the gradient flow is one picture more.
        let mut optimizer = ocellus::optim::Sgd::new(ocellus::optim::SgdConfig::new(0.1)).unwrap();
        let (x, labels) = test.gather(&[0, 1, 2, 3]);
        let step =
            ocellus_train::diagnostics::at_initialisation(&mut model, &mut optimizer, &x, &labels)
                .unwrap();
        let diagnosed = RunReport {
            diagnostics: &[step.clone(), step],
            ..run
        };
        let page = html(&mut model, &diagnosed).unwrap();
        assert_eq!(page.matches("<img ").count(), 8);
        assert!(page.contains("alt=\"gradient flow per layer over training\""));
    }

    #[test]
    fn spread_keeps_all_or_an_even_sample() {
        assert_eq!(spread(&[4, 7], 16), [4, 7]);
        let items: Vec<usize> = (0..100).collect();
        assert_eq!(spread(&items, 4), [0, 25, 50, 75]);
    }
}
