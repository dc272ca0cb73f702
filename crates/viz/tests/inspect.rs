//! Looking inside networks: finding convolutions by name, filter pictures, feature maps
//! and saliency (checked against finite differences), and the pictures they make.

use ocellus::layers::{AvgPool2d, Conv2d, Conv2dConfig, Flatten, Linear, Pool2dConfig, Tanh};
use ocellus::LayerExt;
use ocellus::{zoo, Mode, Rng, Sequential, Tensor};
use ocellus_viz::inspect::{
    conv_layers, feature_maps, feature_maps_picture, filters_picture, find_conv, saliency,
    saliency_picture, FilterLimits,
};
use ocellus_viz::{Canvas, Tile};

fn lenet(input: [usize; 3]) -> Sequential {
    zoo::model("lenet5", input, 10)
        .unwrap()
        .build(&mut Rng::new(0))
        .unwrap()
}

/// A picture is not blank: many colours, and not mostly one colour.
fn assert_not_trivial(what: &str, c: &Canvas, min_colors: usize) {
    assert_eq!(c.pixels.len(), 3 * c.width * c.height, "{what}");
    let colors = c.distinct_colors();
    assert!(colors >= min_colors, "{what}: only {colors} colours");
    let white = c
        .pixels
        .chunks_exact(3)
        .filter(|p| p == &[255, 255, 255])
        .count();
    assert!(
        white < c.width * c.height * 9 / 10,
        "{what}: {white} of {} pixels are white",
        c.width * c.height
    );
}

fn count_where(c: &Canvas, pred: impl Fn(&[u8]) -> bool) -> usize {
    c.pixels.chunks_exact(3).filter(|p| pred(p)).count()
}

#[test]
fn convolutions_are_found_by_their_parameter_names() {
    let net = lenet([1, 28, 28]);
    let names: Vec<String> = conv_layers(&net).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0", "3"]);
    assert_eq!(find_conv(&net, None).unwrap().0, "0");
    let (name, weight) = find_conv(&net, Some("3.weight")).unwrap();
    assert_eq!((name.as_str(), weight.shape()), ("3", &[16, 6, 5, 5][..]));

    let err = find_conv(&net, Some("12")).unwrap_err().to_string();
    assert!(err.contains("no convolution named '12'"), "{err}");
    assert!(err.contains("0 (6×1×5×5), 3 (16×6×5×5)"), "{err}");
    let err = find_conv(&net, Some("7")).unwrap_err().to_string();
    assert!(
        err.contains("(120, 400) weight, not a convolution"),
        "{err}"
    );

    let resnet = zoo::model("resnet20", [3, 32, 32], 10)
        .unwrap()
        .build(&mut Rng::new(0))
        .unwrap();
    let (_, w) = find_conv(&resnet, Some("6.shortcut.0")).unwrap();
    assert_eq!(w.shape(), [32, 16, 1, 1]);
    let mlp = zoo::model("mlp", [1, 28, 28], 10)
        .unwrap()
        .build(&mut Rng::new(0))
        .unwrap();
    let err = find_conv(&mlp, None).unwrap_err().to_string();
    assert!(err.contains("no convolution"), "{err}");
}

#[test]
fn first_layer_filters_are_pictures_in_grey_or_colour() {
    let grey = filters_picture(&lenet([1, 28, 28]), None, FilterLimits::default()).unwrap();
    assert_not_trivial("grey filters", &grey, 20);
    // Six 5×5 filters side by side, each at least 40 pixels wide.
    assert!(
        grey.width >= 6 * 40 && grey.height >= 60,
        "{}×{}",
        grey.width,
        grey.height
    );
    // Filter tiles are grey (the title and frames are grey too).
    assert_eq!(count_where(&grey, |p| p[0] != p[1] || p[1] != p[2]), 0);

    let rgb = filters_picture(&lenet([3, 32, 32]), None, FilterLimits::default()).unwrap();
    assert_not_trivial("RGB filters", &rgb, 50);
    assert!(
        count_where(&rgb, |p| p[0] != p[1] || p[1] != p[2]) > 6 * 25,
        "RGB filters show colour"
    );
}

#[test]
fn deeper_filters_are_a_signed_table_limited_in_size() {
    let net = lenet([1, 28, 28]);
    let full = filters_picture(&net, Some("3"), FilterLimits::default()).unwrap();
    assert_not_trivial("layer 3 filters", &full, 50);
    // Blue for negative and red for positive weights.
    let (r, b) = (|p: &[u8]| p[0] as i32, |p: &[u8]| p[2] as i32);
    assert!(count_where(&full, |p| b(p) > r(p) + 60) > 100, "blue");
    assert!(count_where(&full, |p| r(p) > b(p) + 60) > 100, "red");
    let small = filters_picture(
        &net,
        Some("3"),
        FilterLimits {
            outputs: 4,
            inputs: 3,
        },
    )
    .unwrap();
    // 16 rows of tiles become 4.
    assert!(
        small.height * 2 < full.height,
        "{} vs {}",
        small.height,
        full.height
    );
    assert!(filters_picture(&net, Some("12"), FilterLimits::default()).is_err());
}

#[test]
fn feature_maps_open_branches_and_show_each_blocks_joined_output() {
    let arch = zoo::model("inception", [1, 16, 16], 10).unwrap();
    let mut net = arch.build(&mut Rng::new(2)).unwrap();
    let x = Tensor::randn(&[1, 1, 16, 16], 1.0, &mut Rng::new(3));
    let maps = feature_maps(&mut net, &x, false).unwrap();
    let names: Vec<&str> = maps.iter().map(|m| m.name.as_str()).collect();
    // The stem, its pool, then block 4: each branch's convolutions (branch 3 starts with
    // its pool), and the joined channels.
    assert_eq!(
        names[..10],
        ["0", "3", "4.0.0", "4.1.0", "4.1.3", "4.2.0", "4.2.3", "4.3.0", "4.3.1", "4"]
    );
    let joined = &maps[9];
    assert_eq!(
        (joined.kind, joined.maps.shape()),
        ("concat", &[64, 8, 8][..])
    );
    // The joined maps are the branches' outputs, stacked: branch 0's 16 channels (after
    // its BatchNorm and ReLU) first.
    let all = feature_maps(&mut net, &x, true).unwrap();
    let branch0 = all.iter().find(|m| m.name == "4.0.2").unwrap();
    assert_eq!(branch0.kind, "relu");
    assert_eq!(&joined.maps.data()[..16 * 64], branch0.maps.data());
}

#[test]
fn feature_maps_are_the_outputs_of_convolutions_and_pools() {
    let mut net = lenet([1, 28, 28]);
    let x = Tensor::randn(&[1, 1, 28, 28], 1.0, &mut Rng::new(1));
    let maps = feature_maps(&mut net, &x, false).unwrap();
    let seen: Vec<(&str, &str, Vec<usize>)> = maps
        .iter()
        .map(|m| (m.name.as_str(), m.kind, m.maps.shape().to_vec()))
        .collect();
    assert_eq!(
        seen,
        [
            ("0", "conv2d", vec![6, 28, 28]),
            ("2", "maxpool2d", vec![6, 14, 14]),
            ("3", "conv2d", vec![16, 10, 10]),
            ("5", "maxpool2d", vec![16, 5, 5]),
        ]
    );
    // The maps are the layers' outputs: the first is the convolution of x.
    let first = net.layers_mut()[0].as_mut();
    let y = first.forward_ref(&x, Mode::Eval).unwrap();
    assert_eq!(maps[0].maps.data(), y.data());
    let with_relu = feature_maps(&mut net, &x, true).unwrap();
    let names: Vec<&str> = with_relu.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["0", "1", "2", "3", "4", "5"]);
    // One image at a time.
    let two = Tensor::zeros(&[2, 1, 28, 28]);
    assert!(feature_maps(&mut net, &two, false).is_err());
    let wrong = Tensor::zeros(&[1, 3, 28, 28]);
    let err = feature_maps(&mut net, &wrong, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("layer 0"), "{err}");

    let input = Tile::from_tensor(&x).unwrap();
    let picture = feature_maps_picture("feature maps", &input, &maps, 32);
    assert_not_trivial("feature maps", &picture, 100);
    // Four grids of maps under the input: tall.
    assert!(picture.height > 4 * 60 && picture.width > 16 * 20);
    let fewer = feature_maps_picture("feature maps", &input, &maps, 4);
    assert!(fewer.width < picture.width);
}

/// Conv → tanh → avg-pool → flatten → linear: smooth, so finite differences are exact
/// to O(ε²) everywhere.
fn smooth_net(channels: usize, rng: &mut Rng) -> Sequential {
    Sequential::new()
        .with(Conv2d::new(Conv2dConfig::new(channels, 4, 3).padding(1), rng).unwrap())
        .with(Tanh::new())
        .with(AvgPool2d::new(Pool2dConfig::new(2)).unwrap())
        .with(Flatten::new())
        .with(Linear::new(4 * 3 * 3, 5, rng).unwrap())
}

#[test]
fn saliency_is_the_gradient_of_the_class_score() {
    let mut rng = Rng::new(4);
    let mut net = smooth_net(3, &mut rng);
    let x = Tensor::randn(&[1, 3, 6, 6], 1.0, &mut rng);
    let s = saliency(&mut net, &x, Some(2)).unwrap();
    assert_eq!(s.class, 2);
    assert_eq!(s.gradient.shape(), x.shape());
    assert_eq!(s.map.shape(), [6, 6]);
    assert!((s.probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);

    // ∂ logit_2 / ∂x by central differences, at every position.
    let score = |net: &mut Sequential, x: &Tensor| -> f64 {
        net.forward_ref(x, Mode::Eval).unwrap().data()[2] as f64
    };
    let eps = 1e-2f32;
    for i in 0..x.len() {
        let mut plus = x.clone();
        plus.data_mut()[i] += eps;
        let mut minus = x.clone();
        minus.data_mut()[i] -= eps;
        let numeric = (score(&mut net, &plus) - score(&mut net, &minus)) / (2.0 * eps as f64);
        let analytic = s.gradient.data()[i] as f64;
        assert!(
            (numeric - analytic).abs() <= 1e-3 + 1e-2 * numeric.abs(),
            "position {i}: analytic {analytic}, numeric {numeric}"
        );
    }
    // The map is the largest magnitude over the three channels.
    for p in 0..36 {
        let expected = (0..3)
            .map(|c| s.gradient.data()[c * 36 + p].abs())
            .fold(0.0, f32::max);
        assert_eq!(s.map.data()[p], expected);
    }
    // The backward pass leaves no gradient behind in the parameters.
    assert!(net.params().iter().all(|(_, p)| p.grad().max_abs() == 0.0));
}

#[test]
fn saliency_defaults_to_the_predicted_class_and_rejects_unknown_ones() {
    let mut rng = Rng::new(5);
    let mut net = smooth_net(1, &mut rng);
    let x = Tensor::randn(&[1, 1, 6, 6], 1.0, &mut rng);
    let s = saliency(&mut net, &x, None).unwrap();
    let logits = net.forward_ref(&x, Mode::Eval).unwrap();
    assert_eq!(s.class, logits.argmax_rows().unwrap()[0]);
    assert_eq!(s.predicted(), s.class);
    let err = saliency(&mut net, &x, Some(5)).unwrap_err().to_string();
    assert!(
        err.contains("class 5 does not exist") && err.contains("5 classes"),
        "{err}"
    );
}

#[test]
fn the_saliency_picture_shows_three_panels_and_the_prediction() {
    let mut net = lenet([1, 28, 28]);
    let mut rng = Rng::new(6);
    let seen = Tensor::uniform(&[1, 1, 28, 28], 0.0, 1.0, &mut rng);
    let s = saliency(&mut net, &seen, None).unwrap();
    let classes: Vec<String> = (0..10).map(|k| format!("class{k}")).collect();
    let picture = saliency_picture(&Tile::from_tensor(&seen).unwrap(), &s, &classes, Some(3));
    assert_not_trivial("saliency", &picture, 100);
    // Three panels of at least 28·5 pixels side by side.
    assert!(picture.width >= 3 * 140 && picture.height >= 140);
    // Viridis yellow (the most salient pixel) appears.
    assert!(count_where(&picture, |p| p[0] > 200 && p[1] > 200 && p[2] < 80) > 0);
}

#[test]
fn a_tile_table_grows_with_its_rows_and_columns_and_maps_signs_to_colours() {
    use ocellus_viz::{tile_matrix, Colormap, TileRange, TileTable};
    let table = |rows: usize, columns: usize| TileTable {
        title: String::new(),
        corner: "out\\in".into(),
        row_labels: (0..rows).map(|r| r.to_string()).collect(),
        column_labels: (0..columns).map(|c| c.to_string()).collect(),
        tiles: (0..rows)
            .map(|r| {
                (0..columns)
                    .map(|c| Tile::gray(2, 2, vec![-1.0, 1.0, 0.0, (r + c) as f32 / 4.0]))
                    .collect()
            })
            .collect(),
    };
    let range = TileRange::Fixed(-1.0, 1.0);
    let small = tile_matrix(&table(2, 3), 10, range, Colormap::Diverging);
    let tall = tile_matrix(&table(4, 3), 10, range, Colormap::Diverging);
    let wide = tile_matrix(&table(2, 6), 10, range, Colormap::Diverging);
    // Each extra row or column adds a 20-pixel tile, its frame and the gap.
    assert_eq!(tall.height - small.height, 2 * (20 + 2 + 3));
    assert_eq!(wide.width - small.width, 3 * (20 + 2 + 3));
    // −1 is the blue end, +1 the red end, 0 white: 10×10 blocks of each per tile.
    let blue = ocellus_viz::colormap::diverging(0.0);
    let red = ocellus_viz::colormap::diverging(1.0);
    assert_eq!(count_where(&small, |p| p == blue), 6 * 100);
    assert!(count_where(&small, |p| p == red) >= 6 * 100);
}

#[test]
fn transposed_convolutions_are_not_drawn_as_convolution_filters() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/architectures");
    let arch = ocellus::arch::Architecture::from_file(&dir.join("autoencoder.toml")).unwrap();
    let net = arch.build(&mut Rng::new(0)).unwrap();
    // Layers 0 and 2 are convolutions; 4 and 6 are transposed convolutions, whose weights
    // are (IC, OC, KH, KW).
    let names: Vec<String> = conv_layers(&net).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0", "2"]);
    let err = filters_picture(&net, Some("4"), FilterLimits::default()).unwrap_err();
    assert!(err.to_string().contains("the convolutions are 0"), "{err}");
}
