//! Comparing models: shifted evaluation (the fill is a black pixel in normalised units),
//! the parameter-matched MLP of the zoo, the measurements of a run, and the table.

use ocellus::layers::{Conv2d, Conv2dConfig, Flatten, GlobalAvgPool, Linear, Relu};
use ocellus::LayerExt;
use ocellus::{zoo, Mode, Rng, Sequential, Tensor};
use ocellus_data::augment::shift;
use ocellus_data::{patterns, Dataset, Normalization};
use ocellus_train::compare::{
    evaluate_shifted, gradient_at_depth, gradient_flow_at_initialisation, measure,
    normalised_black, shifted, weight_layers, Comparison, GradientAtDepth, ModelResult, DIAGONALS,
};
use ocellus_train::diagnostics::read_diagnostics;
use ocellus_train::run::{EpochRecord, Run, RunConfig};
use ocellus_train::trainer;

fn numbered(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec(shape, (1..=n).map(|v| v as f32).collect()).unwrap()
}

#[test]
fn a_black_pixel_is_minus_mean_over_std_after_normalisation() {
    let norm = Normalization {
        mean: vec![0.3, 0.5],
        std: vec![0.2, 0.25],
    };
    let black = normalised_black(&norm).unwrap();
    assert_eq!(black.len(), 2);
    assert!((black[0] - -1.5).abs() < 1e-6, "{black:?}");
    assert!((black[1] - -2.0).abs() < 1e-6, "{black:?}");
}

#[test]
fn shifting_moves_pixels_and_fills_each_channel_with_its_value() {
    // Channel 0:          Channel 1:
    // 1 2 3    f f f      10 11 12    g  g  g
    // 4 5 6 →  2 3 f      13 14 15 →  11 12 g
    // 7 8 9    5 6 f      16 17 18    14 15 g      (down 1, left 1)
    let data = Dataset::new(numbered(&[1, 2, 3, 3]), vec![0], vec!["a".into()]).unwrap();
    let (f, g) = (-1.5, -2.0);
    let moved = shifted(&data, 1, -1, &[f, g]).unwrap();
    assert_eq!(
        moved.images().data(),
        &[f, f, f, 2.0, 3.0, f, 5.0, 6.0, f, g, g, g, 11.0, 12.0, g, 14.0, 15.0, g]
    );
    assert_eq!(moved.labels(), data.labels());
    // Up 2, right 1: only the bottom-left 1×2 block survives, at the top right.
    let moved = shifted(&data, -2, 1, &[f, g]).unwrap();
    assert_eq!(
        &moved.images().data()[..9],
        &[f, 7.0, 8.0, f, f, f, f, f, f]
    );
    // No shift is the identity.
    assert_eq!(shifted(&data, 0, 0, &[f, g]).unwrap(), data);
}

#[test]
fn shifting_normalised_images_equals_normalising_shifted_black_bordered_images() {
    let raw = patterns::generate_set(4, 3);
    let norm = Normalization::fit(&raw);
    let mut normalised = raw.clone();
    norm.apply(&mut normalised).unwrap();
    let black = normalised_black(&norm).unwrap();
    let (c, h, w) = raw.image_shape();
    for k in 1..=4isize {
        for (dy, dx) in DIAGONALS {
            // Shift the raw pixels, where black is 0, then normalise ...
            let mut expected = raw.images().clone();
            for image in expected.data_mut().chunks_exact_mut(c * h * w) {
                shift(image, c, h, w, dy * k, dx * k);
            }
            norm.apply_to_batch(&mut expected).unwrap();
            // ... which is what shifting the normalised images must give.
            let got = shifted(&normalised, dy * k, dx * k, &black).unwrap();
            assert_eq!(got.images(), &expected, "shift ({}, {})", dy * k, dx * k);
        }
    }
}

/// Images of 2 channels with a black margin of 4 pixels around random content.
fn margined_images(n: usize, seed: u64) -> Dataset {
    let (c, h, w, margin) = (2, 14, 14, 4);
    let mut rng = Rng::new(seed);
    let mut pixels = vec![0.0f32; n * c * h * w];
    for (i, v) in pixels.iter_mut().enumerate() {
        let (y, x) = ((i / w) % h, i % w);
        if (margin..h - margin).contains(&y) && (margin..w - margin).contains(&x) {
            *v = 0.1 + 0.9 * rng.uniform();
        }
    }
    let labels = (0..n).map(|_| rng.below(3)).collect();
    let images = Tensor::from_vec(&[n, c, h, w], pixels).unwrap();
    Dataset::new(images, labels, vec!["a".into(), "b".into(), "c".into()]).unwrap()
}

/// 1×1 convolution, ReLU, global average pooling, linear: the mean over positions of a
/// per-pixel function, so it does not change when content moves onto black pixels.
fn position_blind_model(rng: &mut Rng) -> Sequential {
    Sequential::new()
        .with(Conv2d::new(Conv2dConfig::new(2, 6, 1), rng).unwrap())
        .with(Relu::new())
        .with(GlobalAvgPool::new())
        .with(Flatten::new())
        .with(Linear::new(6, 3, rng).unwrap())
}

#[test]
fn a_position_blind_model_keeps_its_accuracy_on_shifted_images() {
    let mut data = margined_images(200, 5);
    let norm = Normalization::fit(&data);
    norm.apply(&mut data).unwrap();
    let mut model = position_blind_model(&mut Rng::new(9));
    let plain = trainer::evaluate(&mut model, &data, 64).unwrap();
    assert_eq!(
        evaluate_shifted(&mut model, &data, &norm, 0, 64).unwrap(),
        plain.accuracy
    );
    let black = normalised_black(&norm).unwrap();
    for k in 1..=4 {
        assert_eq!(
            evaluate_shifted(&mut model, &data, &norm, k, 64).unwrap(),
            plain.accuracy,
            "shift {k}"
        );
        for (dy, dx) in DIAGONALS {
            let (dy, dx) = (dy * k as isize, dx * k as isize);
            let moved = trainer::evaluate(&mut model, &shifted(&data, dy, dx, &black).unwrap(), 64)
                .unwrap();
            assert_eq!(moved.predictions, plain.predictions, "shift ({dy}, {dx})");
            let gap = (moved.loss - plain.loss).abs();
            assert!(
                gap < 1e-5,
                "shift ({dy}, {dx}): loss {} vs {}",
                moved.loss,
                plain.loss
            );
            // Filling with 0 (the training mean, a grey) instead of black changes the
            // pixels the model averages over, and so its outputs.
            let grey = trainer::evaluate(
                &mut model,
                &shifted(&data, dy, dx, &[0.0, 0.0]).unwrap(),
                64,
            )
            .unwrap();
            assert!(
                (grey.loss - plain.loss).abs() > 1e3 * gap.max(1e-7),
                "shift ({dy}, {dx}): a grey border left the loss at {} (plain {})",
                grey.loss,
                plain.loss
            );
        }
    }
}

#[test]
fn shifting_everything_out_leaves_the_answer_for_a_black_image() {
    let mut data = margined_images(120, 6);
    let norm = Normalization::fit(&data);
    norm.apply(&mut data).unwrap();
    let mut model = Sequential::new()
        .with(Flatten::new())
        .with(Linear::new(2 * 14 * 14, 3, &mut Rng::new(2)).unwrap());
    let black = normalised_black(&norm).unwrap();
    let mut image = Tensor::zeros(&[1, 2, 14, 14]);
    for (plane, b) in image.data_mut().chunks_exact_mut(14 * 14).zip(&black) {
        plane.fill(*b);
    }
    let answer = model
        .forward_ref(&image, Mode::Eval)
        .unwrap()
        .argmax_rows()
        .unwrap()[0];
    let expected = data.labels().iter().filter(|&&l| l == answer).count() as f32 / 120.0;
    let got = evaluate_shifted(&mut model, &data, &norm, 14, 32).unwrap();
    assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
}

#[test]
fn the_zoo_mlp_for_lenet5_has_lenet5s_parameter_count() {
    let params = |name: &str, input: [usize; 3], classes: usize| {
        let net = zoo::model(name, input, classes)
            .unwrap()
            .build(&mut Rng::new(0))
            .unwrap();
        net.param_count()
    };
    // LeNet-5 on 28×28: 156 + 2,416 + 48,120 + 10,164 + 850. The MLP: 784-78-10, that is
    // 785·78 + 79·10 = 62,020; 77 or 79 hidden units would be further away.
    assert_eq!(params("lenet5", [1, 28, 28], 10), 61_706);
    assert_eq!(params("mlp-lenet5", [1, 28, 28], 10), 62_020);
    assert_eq!(params("mlp", [1, 28, 28], 10), 235_146);
    for (input, classes) in [([1, 28, 28], 10), ([3, 32, 32], 10), ([1, 32, 32], 8)] {
        let (cnn, mlp) = (
            params("lenet5", input, classes),
            params("mlp-lenet5", input, classes),
        );
        // One hidden unit costs F + 1 + K parameters: the closest width is within half that.
        let unit = input.iter().product::<usize>() + 1 + classes;
        assert!(
            cnn.abs_diff(mlp) * 2 <= unit,
            "{input:?}: lenet5 {cnn}, mlp-lenet5 {mlp}"
        );
    }
    let err = zoo::model("mlp-lenet5", [1, 8, 8], 10)
        .unwrap_err()
        .to_string();
    assert!(err.contains("lenet5"), "{err}");
}

#[test]
fn measuring_a_run_reports_its_size_cost_accuracy_and_time() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let config = RunConfig {
        epochs: 1,
        batch_size: 32,
        seed: 3,
        ..RunConfig::default()
    };
    let arch = zoo::model("lenet5", [1, 28, 28], 8).unwrap();
    let mut run = Run::start(&dir, config, arch, patterns::generate(16, 6, 3)).unwrap();
    run.train_epoch(&mut |_| {}).unwrap();
    let result = measure(&mut run, &[1, 3]).unwrap();
    assert_eq!(result.parameters, 61_706 - 850 + 85 * 8);
    // conv1 6·1·25 per output over 28×28, conv2 16·6·25 over 10×10, then the linear layers.
    assert_eq!(
        result.macs_per_image,
        6 * 25 * 28 * 28 + 16 * 6 * 25 * 10 * 10 + 400 * 120 + 120 * 84 + 84 * 8
    );
    let test = run.evaluate_test().unwrap();
    assert_eq!(result.test_accuracy, test.accuracy);
    assert_eq!(result.shifted_accuracy.len(), 2);
    let norm = run.info.normalization.clone();
    let at3 = evaluate_shifted(&mut run.model, &run.test, &norm, 3, 256).unwrap();
    assert_eq!(result.shifted_accuracy[1], at3);
    assert_eq!(result.epochs.len(), 1);
    assert_eq!(result.train_seconds, result.epochs[0].seconds);
    assert!(dir.join("confusion.png").exists());
}

fn record(epoch: usize, accuracy: f32) -> EpochRecord {
    EpochRecord {
        epoch,
        train_loss: 1.0 / epoch as f32,
        train_accuracy: accuracy,
        val_loss: 1.2 / epoch as f32,
        val_accuracy: accuracy,
        lr: 1e-3,
        seconds: 10.0,
        images_per_second: 6000.0,
    }
}

fn example() -> Comparison {
    let result = |model: &str, parameters, macs, accuracy, shifted: Vec<f32>| ModelResult {
        model: model.into(),
        year: None,
        idea: None,
        parameters,
        macs_per_image: macs,
        test_accuracy: accuracy,
        test_loss: 0.3,
        train_seconds: 31.25,
        shifted_accuracy: shifted,
        run_dir: format!("runs/x/{model}"),
        epochs: vec![record(1, accuracy - 0.05), record(2, accuracy)],
        gradient: None,
    };
    Comparison {
        data: "fashion-mnist".into(),
        train_images: 60_000,
        test_images: 10_000,
        epochs: 2,
        batch_size: 64,
        optimizer: "AdamW(lr 0.001)".into(),
        seed: 0,
        threads: 2,
        shifts: vec![1, 2, 3, 4],
        shift: ocellus_train::compare::SHIFT_DESCRIPTION.into(),
        models: vec![
            result("lenet5", 61_706, 416_520, 0.8912, vec![0.85, 0.7, 0.5, 0.3]),
            result(
                "mlp-lenet5",
                62_020,
                61_932,
                0.8755,
                vec![0.6, 0.3, 0.2, 0.1],
            ),
        ],
    }
}

#[test]
fn the_table_is_aligned_markdown_with_every_measurement() {
    let table = example().table();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    let width = lines[0].chars().count();
    assert!(lines.iter().all(|l| l.chars().count() == width), "{table}");
    let cells = |line: &str| -> Vec<String> {
        line.trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    assert_eq!(
        cells(lines[0]),
        [
            "model",
            "parameters",
            "multiply-adds / image",
            "test accuracy",
            "train time (s)",
            "shift 1 px",
            "shift 2 px",
            "shift 3 px",
            "shift 4 px"
        ]
    );
    // The model column is left-aligned, the numbers right-aligned.
    let rule = cells(lines[1]);
    assert!(rule[0].chars().all(|c| c == '-'), "{table}");
    assert!(rule[1..]
        .iter()
        .all(|c| c.ends_with(":") && c.starts_with('-')));
    assert_eq!(
        cells(lines[2]),
        ["lenet5", "61,706", "416,520", "89.12%", "31.2", "85.00%", "70.00%", "50.00%", "30.00%"]
    );
    assert_eq!(
        cells(lines[3])[0..4],
        ["mlp-lenet5", "62,020", "61,932", "87.55%"]
    );
    assert!(lines[3].starts_with("| mlp-lenet5 |"));
    assert!(lines[2].starts_with("| lenet5     |"));

    let markdown = example().to_markdown();
    assert!(markdown.contains(&table));
    assert!(markdown.contains("60,000 training images, 10,000 test images"));
    assert!(markdown.contains("down-left, up-right and up-left"));
}

#[test]
fn models_of_the_architecture_timeline_get_their_year_and_idea() {
    let mut comparison = example();
    let lenet = ocellus::zoo::milestone("lenet5").unwrap();
    comparison.models[0].year = Some(lenet.year);
    comparison.models[0].idea = Some(lenet.idea.into());
    let table = comparison.table();
    let lines: Vec<&str> = table.lines().collect();
    let cells = |line: &str| -> Vec<String> {
        line.trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect()
    };
    assert_eq!(
        cells(lines[0])[..4],
        ["model", "year", "idea", "parameters"]
    );
    assert_eq!(
        cells(lines[2])[..4],
        ["lenet5", "1998", "conv → pool → FC", "61,706"]
    );
    // The baseline stands for no row of the timeline.
    assert_eq!(cells(lines[3])[..3], ["mlp-lenet5", "—", "—"]);
    assert!(ocellus::zoo::milestone("mlp-lenet5").is_none());
    // The idea is text: left-aligned.
    assert!(lines[3].contains("| —                |"), "{table}");
    let back: Comparison = serde_json::from_str(&comparison.to_json()).unwrap();
    assert_eq!(back, comparison);
}

#[test]
fn the_comparison_round_trips_through_json_and_draws_its_charts() {
    let comparison = example();
    let back: Comparison = serde_json::from_str(&comparison.to_json()).unwrap();
    assert_eq!(back, comparison);
    let curves = comparison.curves_picture();
    assert!(curves.width > curves.height);
    // Two models, two series colours besides black, white and grey.
    assert!(curves.distinct_colors() > 4);
    let mut data = patterns::generate_set(1, 4);
    let norm = Normalization::fit(&data);
    norm.apply(&mut data).unwrap();
    let examples = ocellus_train::compare::shift_examples(&data, &norm, 0, 4).unwrap();
    // Four directions (rows) of five shifts (0 to 4 pixels, columns).
    assert!(examples.height > examples.width / 2);
    let picture = comparison.shift_picture(&examples);
    assert!(picture.width >= comparison.shift_chart().width + examples.width);
}

#[test]
fn plain_and_residual_twins_have_the_same_weight_layers_and_widths() {
    for (depth, plain, resnet) in [
        (20, "plain20", "resnet20"),
        (32, "plain32", "resnet32"),
        (56, "plain56", "resnet56"),
    ] {
        let build = |name: &str| {
            zoo::model(name, [1, 28, 28], 10)
                .unwrap()
                .build(&mut Rng::new(0))
                .unwrap()
        };
        let (p, r) = (build(plain), build(resnet));
        assert_eq!(weight_layers(&p), depth, "{plain}");
        assert_eq!(weight_layers(&r), depth, "{resnet}");
        // The same convolutions: the residual twin only adds its two projection
        // shortcuts (1×1 convolutions 16→32 and 32→64, and their BatchNorms).
        let projections = 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64;
        assert_eq!(r.param_count(), p.param_count() + projections, "{resnet}");
        assert_eq!(
            p.shapes(&[1, 1, 28, 28]).unwrap(),
            r.shapes(&[1, 1, 28, 28]).unwrap()
        );
    }
}

#[test]
fn the_gradient_at_the_first_layer_is_measured_at_initialisation_and_in_training() {
    let tmp = tempfile::tempdir().unwrap();
    let config = RunConfig {
        epochs: 1,
        batch_size: 16,
        seed: 3,
        diagnostics_every: Some(2),
        ..RunConfig::default()
    };
    let arch = zoo::model("lenet5", [1, 28, 28], 8).unwrap();
    let dir = tmp.path().join("run");
    let mut run = Run::start(&dir, config, arch, patterns::generate(16, 6, 3)).unwrap();
    let before = ocellus::checkpoint::state_dict(&run.model);
    let at_init = gradient_flow_at_initialisation(&run).unwrap();
    // The run's own network is untouched by the measurement.
    assert_eq!(ocellus::checkpoint::state_dict(&run.model), before);
    run.train_epoch(&mut |_| {}).unwrap();
    let g = gradient_at_depth(&run, &at_init).unwrap();
    assert_eq!(g.weight_layers, 5);
    assert_eq!(g.first_layer_at_init, at_init.layers[0].grad_norm);
    assert!(g.first_layer_at_init > 0.0);
    let mut norms: Vec<f32> = read_diagnostics(&dir)
        .unwrap()
        .iter()
        .map(|r| r.layers[0].grad_norm)
        .collect();
    // 128 images in batches of 16: 8 steps, diagnosed 1, 3, 5, 7.
    assert_eq!(norms.len(), 4);
    norms.sort_by(f32::total_cmp);
    assert_eq!(g.first_layer_in_training, Some(norms[2]));
}

#[test]
fn gradients_at_depth_get_columns_and_a_chart() {
    let mut comparison = example();
    assert!(comparison.gradient_chart().is_none());
    comparison.models[0].model = "plain20".into();
    comparison.models[1].model = "resnet20".into();
    comparison.models[0].gradient = Some(GradientAtDepth {
        weight_layers: 20,
        first_layer_at_init: 0.00125,
        first_layer_in_training: None,
    });
    let table = comparison.table();
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("weight layers") && header.contains("at init"),
        "{table}"
    );
    assert!(!header.contains("in training"), "{table}");
    assert!(table.lines().nth(2).unwrap().contains("1.25e-3"), "{table}");
    assert!(table.lines().nth(3).unwrap().contains("—"), "{table}");
    assert!(comparison.gradient_chart().is_some());
}
