//! Pictures: charts, heatmaps, image grids and overlays have the expected size, show their
//! data in the expected colours, and survive degenerate input (one point, constants, NaN).

use ocellus::{Error, Tensor};
use ocellus_viz::canvas::WHITE;
use ocellus_viz::charts::PALETTE;
use ocellus_viz::colormap::{diverging, viridis};
use ocellus_viz::{
    heatmap_matrix, hstack, image_grid, line_chart, overlay_heat, render_tile, vstack, Canvas,
    Colormap, Rgb, Series, Tile, TileRange,
};

fn count(c: &Canvas, color: Rgb) -> usize {
    c.pixels.chunks_exact(3).filter(|p| *p == color).count()
}

fn curve(n: usize, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    (0..n).map(|i| (i as f64, f(i as f64))).collect()
}

#[test]
fn line_chart_has_the_requested_size_and_draws_every_series() {
    let series = [
        Series::new("train", curve(20, |e| 2.0 * (-e / 4.0).exp())),
        Series::new("validation", curve(20, |e| 2.2 * (-e / 5.0).exp() + 0.2)),
    ];
    let c = line_chart("loss", "epoch", "loss", &series, 640, 400);
    assert_eq!((c.width, c.height), (640, 400));
    assert!(c.distinct_colors() >= 20, "{} colours", c.distinct_colors());
    assert!(
        count(&c, PALETTE[0]) > 200,
        "first series drawn in the first palette colour"
    );
    assert!(
        count(&c, PALETTE[1]) > 200,
        "second series in the second colour"
    );
    // An explicit colour overrides the palette.
    let red = [200, 10, 10];
    let custom = Series {
        color: Some(red),
        ..series[0].clone()
    };
    let c = line_chart("", "", "", &[custom], 300, 200);
    assert!(count(&c, red) > 100);
    assert_eq!(count(&c, PALETTE[0]), 0);
}

#[test]
fn degenerate_series_do_not_panic_and_still_show() {
    let cases: Vec<Vec<Series>> = vec![
        vec![Series::new("one point", vec![(3.0, 5.0)])],
        vec![Series::new("constant", curve(10, |_| 0.7))],
        vec![Series::new("zero", curve(10, |_| 0.0))],
        vec![Series::new(
            "all NaN",
            vec![(f64::NAN, 1.0), (2.0, f64::NAN)],
        )],
        vec![Series::new("", vec![])],
        vec![],
    ];
    for (i, series) in cases.iter().enumerate() {
        let c = line_chart("degenerate", "x", "y", series, 400, 300);
        assert_eq!((c.width, c.height), (400, 300), "case {i}");
        assert!(
            c.distinct_colors() > 2,
            "case {i}: axes and labels are drawn"
        );
        if i < 3 {
            // Without a name there is no legend: what is in the series colour is data.
            let unnamed = Series {
                name: String::new(),
                ..series[0].clone()
            };
            let c = line_chart("degenerate", "x", "y", &[unnamed], 400, 300);
            assert!(count(&c, PALETTE[0]) > 8, "case {i}");
        }
    }
    // Tiny sizes are raised to a usable minimum.
    let c = line_chart("t", "x", "y", &cases[0], 10, 10);
    assert_eq!((c.width, c.height), (160, 120));
}

#[test]
fn nan_breaks_the_line() {
    let connected = Series::new("", vec![(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)]);
    let broken = Series::new("", vec![(0.0, 0.0), (1.0, f64::NAN), (2.0, 0.0)]);
    let a = count(&line_chart("", "", "", &[connected], 400, 300), PALETTE[0]);
    let b = count(&line_chart("", "", "", &[broken], 400, 300), PALETTE[0]);
    assert!(b > 0, "the end points are still drawn as dots");
    assert!(
        4 * b < a,
        "no line across the gap: {b} pixels vs {a} connected"
    );
}

#[test]
fn confusion_matrix_shows_counts_in_viridis_with_labels() {
    let k = 10;
    let m: Vec<Vec<usize>> = (0..k)
        .map(|r| {
            (0..k)
                .map(|c| if r == c { 900 + r } else { (r + c) % 4 })
                .collect()
        })
        .collect();
    let names: Vec<String> = (0..k).map(|i| format!("class {i}")).collect();
    let plain = heatmap_matrix("confusion", &m, &names, &names, false);
    let annotated = heatmap_matrix("confusion", &m, &names, &names, true);
    assert_eq!(
        (plain.width, plain.height),
        (annotated.width, annotated.height)
    );
    assert!(plain.width > 10 * 30 && plain.height > 10 * 30);
    assert!(annotated.distinct_colors() >= 20);
    // Zero is the low end of the scale, the largest count the high end.
    assert!(count(&plain, viridis(0.0)) > 100);
    assert!(count(&plain, viridis(1.0)) > 100);
    assert_ne!(plain, annotated, "numbers are drawn");
    // Numbers on the dark off-diagonal cells are white.
    assert!(count(&annotated, WHITE) > count(&plain, WHITE));

    // Labels too wide for a cell are turned upwards, making the picture taller.
    let long: Vec<String> = (0..k).map(|i| format!("a long class name {i}")).collect();
    let tall = heatmap_matrix("confusion", &m, &names, &long, false);
    assert!(tall.height > plain.height + 50);
    assert_eq!(tall.width, plain.width);
}

#[test]
fn heatmap_of_reals_and_default_labels() {
    let m = vec![vec![0.9f64, 0.1], vec![0.25, 0.75]];
    let c = heatmap_matrix::<f64, &str>("", &m, &[], &[], true);
    assert!(c.width > 60 && c.height > 60);
    assert!(count(&c, viridis(1.0)) > 0, "0.9 is the top of the scale");
    let f32s = vec![vec![0.9f32, 0.1], vec![0.25, 0.75]];
    let d = heatmap_matrix::<f32, &str>("", &f32s, &[], &[], true);
    assert_eq!(c, d);
}

fn ramp(h: usize, w: usize, lo: f32, hi: f32) -> Vec<f32> {
    let n = h * w;
    (0..n)
        .map(|i| lo + (hi - lo) * i as f32 / (n - 1) as f32)
        .collect()
}

#[test]
fn image_grid_lays_out_tiles_and_captions() {
    let tiles: Vec<Tile> = (0..6)
        .map(|k| Tile::gray(5, 5, ramp(5, 5, -1.0, 1.0 + k as f32)).with_caption(format!("f{k}")))
        .collect();
    let wide = image_grid(
        "filters",
        &tiles,
        3,
        8,
        TileRange::Shared,
        Colormap::Diverging,
    );
    let tall = image_grid(
        "filters",
        &tiles,
        2,
        8,
        TileRange::Shared,
        Colormap::Diverging,
    );
    assert!(wide.width >= 3 * 40 && wide.height >= 2 * 40);
    assert!(tall.width < wide.width && tall.height > wide.height);
    assert!(wide.distinct_colors() >= 30);
    // Signed values: the largest positive is the red end; blue is never full because the
    // range is symmetric and the minimum (-1) is smaller than the maximum (6).
    assert!(count(&wide, diverging(1.0)) >= 64);
    assert_eq!(count(&wide, diverging(0.0)), 0);

    let uncaptioned: Vec<Tile> = tiles
        .iter()
        .map(|t| Tile {
            caption: String::new(),
            ..t.clone()
        })
        .collect();
    let bare = image_grid(
        "filters",
        &uncaptioned,
        3,
        8,
        TileRange::Shared,
        Colormap::Diverging,
    );
    assert!(bare.height < wide.height, "captions take room");
    let untitled = image_grid("", &tiles, 3, 8, TileRange::Shared, Colormap::Diverging);
    assert!(untitled.height < wide.height, "the title takes room");
    let empty = image_grid("nothing yet", &[], 4, 8, TileRange::PerTile, Colormap::Gray);
    assert!(empty.width > 0 && empty.height > 0);
}

#[test]
fn per_tile_range_stretches_each_tile_and_shared_does_not() {
    let scale = 4;
    let tiles = [
        Tile::gray(3, 3, ramp(3, 3, 0.0, 1.0)),
        Tile::gray(3, 3, ramp(3, 3, 0.0, 100.0)),
    ];
    let top = viridis(1.0);
    let per = image_grid("", &tiles, 2, scale, TileRange::PerTile, Colormap::Viridis);
    let shared = image_grid("", &tiles, 2, scale, TileRange::Shared, Colormap::Viridis);
    // Each maximum is one value drawn as a scale × scale block.
    assert_eq!(count(&per, top), 2 * scale * scale);
    assert_eq!(count(&shared, top), scale * scale);
    let fixed = image_grid(
        "",
        &tiles,
        2,
        scale,
        TileRange::Fixed(0.0, 1.0),
        Colormap::Viridis,
    );
    assert!(
        count(&fixed, top) > 2 * scale * scale,
        "values above the range clamp to the top"
    );
}

#[test]
fn rgb_tiles_keep_their_colours_and_render_tile_has_the_exact_size() {
    // Red channel 1, green and blue 0: pure red after stretching 0..1.
    let mut data = vec![0.0; 3 * 4 * 6];
    data[..24].fill(1.0);
    let red = render_tile(&Tile::rgb(4, 6, data), Colormap::Viridis, 5);
    assert_eq!((red.width, red.height), (30, 20));
    assert_eq!(count(&red, [255, 0, 0]), 30 * 20);

    let gray = render_tile(
        &Tile::gray(2, 2, vec![0.0, 1.0, 2.0, 3.0]),
        Colormap::Gray,
        1,
    );
    assert_eq!(
        gray.pixels,
        vec![0, 0, 0, 85, 85, 85, 170, 170, 170, 255, 255, 255]
    );
}

#[test]
fn tiles_from_tensors() {
    let t = Tensor::from_vec(&[1, 3, 2, 2], (0..12).map(|v| v as f32).collect()).unwrap();
    let tile = Tile::from_tensor(&t).unwrap();
    assert_eq!((tile.channels, tile.height, tile.width), (3, 2, 2));
    assert_eq!(tile.data, t.data());
    assert_eq!(
        Tile::from_tensor(&Tensor::zeros(&[7, 9])).unwrap().channels,
        1
    );
    let err = Tile::from_tensor(&Tensor::zeros(&[2, 4, 5, 5])).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err:?}");
    assert!(err.to_string().contains("(2, 4, 5, 5)"), "{err}");
}

#[test]
fn overlay_blends_image_and_heat() {
    let (h, w, scale) = (6, 7, 3);
    let image = Tile::gray(h, w, ramp(h, w, 0.0, 1.0));
    let heat: Vec<f32> = (0..h * w).map(|i| ((i * 7) % 11) as f32).collect();
    let half = overlay_heat(&image, &heat, 0.5, scale);
    assert_eq!((half.width, half.height), (w * scale, h * scale));
    // alpha = 0 is the grey image, alpha = 1 the heat in viridis.
    assert_eq!(
        overlay_heat(&image, &heat, 0.0, scale),
        render_tile(&image, Colormap::Gray, scale)
    );
    let heat_tile = Tile::gray(h, w, heat.clone());
    assert_eq!(
        overlay_heat(&image, &heat, 1.0, scale),
        render_tile(&heat_tile, Colormap::Viridis, scale)
    );
    assert!(half.distinct_colors() >= 20);
}

#[test]
fn stacks_place_every_panel_under_its_label() {
    let a = Canvas::new(30, 20, [200, 0, 0]);
    let b = Canvas::new(50, 10, [0, 0, 200]);
    let row = hstack(&[("red", &a), ("blue", &b)]);
    assert!(row.width >= 80 && row.height >= 20);
    assert_eq!(count(&row, [200, 0, 0]), 600);
    assert_eq!(count(&row, [0, 0, 200]), 500);
    let unlabelled = hstack(&[("", &a), ("", &b)]);
    assert!(unlabelled.height < row.height, "labels take room");

    let col = vstack(&[("red", &a), ("blue", &b)]);
    assert!(col.width >= 50 && col.height >= 30);
    assert_eq!(count(&col, [200, 0, 0]), 600);
    assert_eq!(count(&col, [0, 0, 200]), 500);
    assert!(col.distinct_colors() > 3, "labels drawn");
}
