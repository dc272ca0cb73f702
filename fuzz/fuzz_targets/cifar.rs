//! CIFAR-10 batch files through the parser `cifar::read_batch` uses.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ocellus_data::cifar::parse_batch;

fuzz_target!(|data: &[u8]| {
    let _ = parse_batch(data, Path::new("fuzz_batch.bin"));
});
