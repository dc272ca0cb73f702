//! IDX files, raw or gzipped, through the readers `idx::load` uses; images that parse
//! become a data set as `load` makes them.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ocellus_data::idx::{read_images_from, read_labels_from};
use ocellus_data::Dataset;

fuzz_target!(|data: &[u8]| {
    let source = Path::new("fuzz.idx");
    if let Ok(images) = read_images_from(data, source) {
        let labels = vec![0; images.n];
        let classes = (0..10).map(|k| k.to_string()).collect();
        let shape = [images.n, 1, images.rows, images.cols];
        let _ = Dataset::from_u8(shape, &images.pixels, labels, classes);
    }
    let _ = read_labels_from(data, source);
});
