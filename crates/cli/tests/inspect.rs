//! The commands that look inside models — `summary`, `gradcheck` and `viz` — run as the
//! real binary: their tables reproduce the notes' numbers, their pictures are real
//! pictures, and mistakes end with a one-line error naming the thing.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

use ocellus::arch::Architecture;
use ocellus::zoo;
use ocellus_data::folder::save_png_rgb;
use ocellus_train::run::{load_model, save_model};
use tempfile::TempDir;

mod common;
use common::{ocellus, success};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command that must fail with one line on stderr (no panic) and returns it.
fn failure(args: &[&str]) -> String {
    let out = ocellus(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "ocellus {args:?}:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/architectures")
        .join(name)
        .display()
        .to_string()
}

/// A LeNet-5 trained briefly on the built-in patterns, once for all tests. Its directory
/// lives in a static, which is never dropped: it is made under Cargo's scratch directory
/// for tests (`target/tmp`), not the system's.
fn trained_run() -> &'static Path {
    static RUN: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    let (_, dir) = RUN.get_or_init(|| {
        let tmp = tempfile::Builder::new()
            .prefix("inspect-run-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let dir = tmp.path().join("run");
        let dir_str = dir.display().to_string();
        success(&[
            "train",
            "--epochs",
            "1",
            "--limit-train",
            "1000",
            "--out",
            &dir_str,
        ]);
        (tmp, dir)
    });
    dir
}

/// Decodes a PNG: (width, height, RGB or grey bytes, channels).
fn read_png(path: &Path) -> (usize, usize, Vec<u8>, usize) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let channels = info.color_type.samples();
    (info.width as usize, info.height as usize, buf, channels)
}

/// The picture at `path` is at least `min_w × min_h` and not blank: many colours, and
/// less than 90 % white.
fn assert_picture(path: &Path, min_w: usize, min_h: usize, min_colors: usize) {
    let (w, h, bytes, channels) = read_png(path);
    assert_eq!(channels, 3, "{}", path.display());
    assert!(w >= min_w && h >= min_h, "{}: {w}×{h}", path.display());
    let mut colors: Vec<&[u8]> = bytes.chunks_exact(3).collect();
    let white = colors.iter().filter(|p| **p == [255, 255, 255]).count();
    assert!(white < w * h * 9 / 10, "{}: mostly white", path.display());
    colors.sort_unstable();
    colors.dedup();
    assert!(
        colors.len() >= min_colors,
        "{}: {} colours",
        path.display(),
        colors.len()
    );
}

/// The cells of the table row whose first cell is `name`.
fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cells| cells.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name} in\n{table}"))
}

#[test]
fn summary_of_lenet5_counts_61706_parameters() {
    let file = success(&["summary", "--model", &example("lenet5.toml")]);
    assert!(file.contains("total: 61,706 parameters"), "{file}");
    let zoo_32 = success(&["summary", "--model", "lenet5", "--input", "1x32x32"]);
    assert!(zoo_32.contains("total: 61,706 parameters"), "{zoo_32}");
    // Layer 3: Conv2d(6→16, 5×5) on 14×14 gives 16×10×10 with 16·(150 + 1) parameters.
    let conv = row(&zoo_32, "3");
    assert!(
        conv.contains(&"16×10×10") && conv.contains(&"2,416"),
        "{conv:?}"
    );
}

#[test]
fn a_zoo_model_written_as_an_architecture_file_is_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, file) in [
        ("inception", "inception.toml"),
        ("densenet", "densenet.json"),
    ] {
        let path = tmp.path().join(file).display().to_string();
        let from_zoo = success(&["summary", "--model", name, "--write-architecture", &path]);
        let from_file = success(&["summary", "--model", &path]);
        assert_eq!(from_zoo, from_file);
        assert!(from_zoo.contains("Concat of 4 branches") || from_zoo.contains("Dense block"));
    }
    // Only a regular file is replaced.
    let out = ocellus(&[
        "summary",
        "--write-architecture",
        &tmp.path().display().to_string(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
}

#[test]
fn summary_reproduces_the_notes_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("summary");
    let conv = "[[layers]]\ntype = \"conv2d\"\nout_channels = 64\nkernel = 3\npadding = 1\n";
    let file = dir.with_extension("conv.toml");
    std::fs::write(&file, format!("input = [3, 32, 32]\n{conv}{conv}{conv}")).unwrap();
    let table = success(&["summary", "--model", &file.display().to_string()]);
    // §2.2: (3·3·3 + 1)·64 = 1,792 parameters.
    assert!(row(&table, "0").contains(&"1,792"), "{table}");
    // §2.4: receptive fields 3, 5, 7 after one, two, three 3×3 layers. The RF column is
    // fourth from the end: RF, jump, then the memory as value and unit.
    let rf_of = |r: &str| {
        let cells = row(&table, r);
        cells[cells.len() - 4]
    };
    let rf: Vec<&str> = ["0", "1", "2"].into_iter().map(rf_of).collect();
    assert_eq!(rf, ["3", "5", "7"], "{table}");

    let cifar = success(&["summary", "--model", &example("cifar_notes.toml")]);
    for (layer, shape) in [
        ("0", "32×32×32"),
        ("2", "32×32×32"),
        ("4", "32×16×16"),
        ("5", "64×16×16"),
        ("7", "64×8×8"),
        ("8", "4096"),
        ("9", "128"),
        ("12", "10"),
    ] {
        assert!(
            row(&cifar, layer).contains(&shape),
            "layer {layer}:\n{cifar}"
        );
    }
    assert!(
        cifar.contains("cifar_notes: 3×32×32 → 10 outputs"),
        "{cifar}"
    );
}

#[test]
fn summary_opens_residual_blocks() {
    let table = success(&["summary", "--model", &example("residual_small.toml")]);
    for name in ["3", "3.main.0", "3.add", "3.act", "5.shortcut.0"] {
        row(&table, name);
    }
    assert!(
        table.contains("indented rows are inside the block"),
        "{table}"
    );
    let batch = success(&[
        "summary", "--model", "resnet20", "--input", "3x32x32", "--batch", "4",
    ]);
    assert!(batch.contains("batch 4"), "{batch}");
}

#[test]
fn summary_errors_name_the_model_and_the_flag() {
    let err = failure(&["summary", "--model", "lenet7"]);
    assert!(err.contains("unknown model 'lenet7'"), "{err}");
    let err = failure(&[
        "summary",
        "--model",
        &example("lenet5.toml"),
        "--classes",
        "8",
    ]);
    assert!(err.contains("--classes") && err.contains("not 8"), "{err}");
    let err = failure(&["summary", "--model", "lenet5", "--input", "1x8x8"]);
    assert!(err.contains("layer 3"), "{err}");
}

#[test]
fn gradcheck_passes_on_a_zoo_model_and_an_architecture_file() {
    let lenet = success(&["gradcheck"]);
    assert!(
        lenet.contains("all 22 tensors of 12 layers pass"),
        "{lenet}"
    );
    let residual = success(&["gradcheck", "--model", &example("residual_small.toml")]);
    assert!(
        row(&residual, "5.shortcut.0").contains(&"pass"),
        "{residual}"
    );
    assert!(residual.contains("tensors of 21 layers pass"), "{residual}");
    let smallcnn = success(&[
        "gradcheck",
        "--model",
        "smallcnn",
        "--input",
        "3x16x16",
        "--seed",
        "3",
    ]);
    assert!(!smallcnn.contains("FAIL"), "{smallcnn}");
}

#[test]
fn filters_are_drawn_for_the_first_and_a_deeper_layer() {
    let tmp = tempfile::tempdir().unwrap();
    let run = trained_run().display().to_string();
    let first = tmp.path().join("filters.png");
    success(&[
        "viz",
        "filters",
        "--checkpoint",
        &run,
        "-o",
        &first.display().to_string(),
    ]);
    assert_picture(&first, 6 * 40, 80, 30);
    let deeper = tmp.path().join("filters3.png");
    let out = success(&[
        "viz",
        "filters",
        "--checkpoint",
        &run,
        "--layer",
        "3",
        "-o",
        &deeper.display().to_string(),
    ]);
    assert!(out.contains("wrote"), "{out}");
    // A row per filter (16) of 5×5 tiles.
    assert_picture(&deeper, 200, 16 * 30, 100);

    let err = failure(&[
        "viz",
        "filters",
        "--checkpoint",
        &run,
        "--layer",
        "4.main.0",
        "-o",
        "x.png",
    ]);
    assert!(
        err.contains("no convolution named '4.main.0'")
            && err.contains("0 (6×1×5×5), 3 (16×6×5×5)"),
        "{err}"
    );
}

#[test]
fn feature_maps_and_saliency_of_a_test_image() {
    let tmp = tempfile::tempdir().unwrap();
    let run = trained_run().display().to_string();
    let features = tmp.path().join("features.png");
    success(&[
        "viz",
        "features",
        "--checkpoint",
        &run,
        "--sample",
        "3",
        "-o",
        &features.display().to_string(),
    ]);
    assert_picture(&features, 16 * 30, 4 * 60, 200);
    let saliency = tmp.path().join("saliency.png");
    let out = success(&[
        "viz",
        "saliency",
        "--checkpoint",
        &run,
        "--sample",
        "3",
        "-o",
        &saliency.display().to_string(),
    ]);
    assert!(out.starts_with("predicted "), "{out}");
    assert_picture(&saliency, 3 * 140, 140, 200);
    // Another class than the predicted one.
    success(&[
        "viz",
        "saliency",
        "--checkpoint",
        &run,
        "--sample",
        "3",
        "--class",
        "0",
        "-o",
        &saliency.display().to_string(),
    ]);
}

#[test]
fn image_files_are_converted_to_the_models_input() {
    let tmp = tempfile::tempdir().unwrap();
    let run = trained_run().display().to_string();
    // An RGB picture of another size, for a model of grey 28×28 images.
    let image = tmp.path().join("rgb-40x30.png");
    let planes: Vec<f32> = (0..3 * 30 * 40)
        .map(|i| ((i * 7) % 255) as f32 / 255.0)
        .collect();
    save_png_rgb(&image, &planes, 30, 40).unwrap();
    let out = tmp.path().join("from-file.png");
    success(&[
        "viz",
        "saliency",
        "--checkpoint",
        &run,
        "--image",
        &image.display().to_string(),
        "-o",
        &out.display().to_string(),
    ]);
    assert_picture(&out, 3 * 140, 140, 50);
    success(&[
        "viz",
        "features",
        "--checkpoint",
        &run,
        "--image",
        &image.display().to_string(),
        "--activations",
        "-o",
        &out.display().to_string(),
    ]);
    assert_picture(&out, 16 * 30, 6 * 60, 100);
}

#[test]
fn viz_mistakes_end_with_one_line_naming_the_thing() {
    let tmp = tempfile::tempdir().unwrap();
    let run = trained_run().display().to_string();
    let out = tmp.path().join("never.png").display().to_string();
    let err = failure(&[
        "viz",
        "saliency",
        "--checkpoint",
        &run,
        "--sample",
        "99999",
        "-o",
        &out,
    ]);
    assert!(err.contains("there is no test image 99999"), "{err}");
    let err = failure(&[
        "viz",
        "saliency",
        "--checkpoint",
        &run,
        "--sample",
        "0",
        "--class",
        "8",
        "-o",
        &out,
    ]);
    assert!(err.contains("class 8 does not exist"), "{err}");
    let model_file = trained_run()
        .join("model.safetensors")
        .display()
        .to_string();
    let err = failure(&[
        "viz",
        "features",
        "--checkpoint",
        &model_file,
        "--sample",
        "0",
        "-o",
        &out,
    ]);
    assert!(err.contains("--sample") && err.contains("--image"), "{err}");
    let missing = tmp.path().join("missing.png").display().to_string();
    let err = failure(&[
        "viz",
        "features",
        "--checkpoint",
        &run,
        "--image",
        &missing,
        "-o",
        &out,
    ]);
    assert!(err.contains("missing.png"), "{err}");
    let not_png = tmp.path().join("not-an-image.png");
    std::fs::write(&not_png, b"hello").unwrap();
    let err = failure(&[
        "viz",
        "saliency",
        "--checkpoint",
        &run,
        "--image",
        &not_png.display().to_string(),
        "-o",
        &out,
    ]);
    assert!(err.contains("not-an-image.png"), "{err}");
    assert!(!Path::new(&out).exists());
}

#[test]
fn a_checkpoint_that_does_not_fit_its_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // The weights of LeNet-5 stored under the description of another network.
    let (model, mut info) = load_model(trained_run()).unwrap();
    let mut wider: Architecture = zoo::model("lenet5", [1, 28, 28], 8).unwrap();
    if let ocellus::arch::LayerSpec::Conv2d { out_channels, .. } = &mut wider.layers[0] {
        *out_channels = 8;
    }
    info.architecture = wider;
    let file = tmp.path().join("mismatched.safetensors");
    save_model(&file, &model, &info).unwrap();
    let file = file.display().to_string();
    let out = tmp.path().join("never.png").display().to_string();
    for args in [
        vec!["viz", "filters", "--checkpoint", &file, "-o", &out],
        vec![
            "viz",
            "features",
            "--checkpoint",
            &file,
            "--sample",
            "0",
            "-o",
            &out,
        ],
    ] {
        let err = failure(&args);
        assert!(
            err.contains("mismatched.safetensors") && err.contains("does not fit"),
            "{err}"
        );
    }
}
