//! Pictures without system fonts: a pixel canvas written as PNG, an embedded bitmap font,
//! colormaps, charts (training curves, confusion matrices) and image grids (filters,
//! feature maps, saliency overlays).
//!
//! Everything draws into a [`Canvas`] in memory; [`Canvas::save_png`] writes it out.
//! [`inspect`] uses them to show what a network learned: filters, feature maps, saliency.

pub mod canvas;
pub mod charts;
pub mod colormap;
pub mod font;
pub mod images;
pub mod inspect;

pub use canvas::{Canvas, Rgb};
pub use charts::{heatmap_matrix, heatmap_over_time, line_chart, nice_ticks, ColorScale, Series};
pub use colormap::Colormap;
pub use font::{draw_text, text_width};
pub use images::{
    hstack, image_grid, overlay_heat, render_tile, tile_matrix, vstack, Tile, TileRange, TileTable,
};
