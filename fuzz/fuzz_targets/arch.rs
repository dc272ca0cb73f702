//! Architecture descriptions, TOML (or JSON when the text starts with `{`), parsed, then
//! built with every shape checked, and written back out.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocellus::arch::Architecture;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let json = text.trim_start().starts_with('{');
    if let Ok(arch) = Architecture::parse(text, json) {
        let _ = arch.output_shape();
        let _ = arch.to_toml();
        let _ = arch.to_json();
    }
});
