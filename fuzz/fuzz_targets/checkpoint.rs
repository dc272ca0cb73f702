//! Model files (safetensors with ocellus's metadata) through the loading path of
//! `load_model`: the safetensors header and tensors, the metadata, the network the
//! metadata describes, and the strict load of the tensors into it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use ocellus_train::run::model_from_bytes;

fuzz_target!(|data: &[u8]| {
    let _ = model_from_bytes(data, Path::new("fuzz.safetensors"));
});
