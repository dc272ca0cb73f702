//! PNG and JPEG files through the decoding, conversion and resizing of `load_image`: to
//! gray for inputs of even length, to RGB for odd ones, at a size smaller in one direction
//! and larger in the other than most inputs.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ocellus_data::folder::decode_image;

fuzz_target!(|data: &[u8]| {
    let channels = if data.len() % 2 == 0 { 1 } else { 3 };
    let _ = decode_image(data, Path::new("fuzz.img"), channels, 6, 20);
});
