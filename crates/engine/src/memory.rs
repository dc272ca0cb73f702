//! What fits in this machine's memory: sizes that users choose (channels, kernels, image
//! sizes, batch sizes) are checked against it before anything that large is allocated, so
//! a mistake is an error saying how much is needed rather than an aborted process.

use crate::error::{Error, Result};

/// Bytes of one value: ocellus computes in `f32`.
pub const BYTES_PER_VALUE: u128 = std::mem::size_of::<f32>() as u128;

/// The machine's memory in bytes (`MemTotal` of `/proc/meminfo` on Linux), or `None`
/// where it cannot be read; then only sizes beyond the address space are refused.
pub fn machine_bytes() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `bytes` as tables print them ([`crate::text::bytes_str`]).
fn human(bytes: u128) -> String {
    crate::text::bytes_str(u64::try_from(bytes).unwrap_or(u64::MAX))
}

/// Checks that `values` f32 values for `what` (e.g. "its weights") fit in memory; `None`
/// stands for a count too large to compute. The error names `layer` and both sizes:
/// `conv2d: needs 373 GiB for its weights; the machine has 23.6 GiB`.
pub fn expect_fits(layer: &str, what: &str, values: Option<u128>) -> Result<()> {
    let needed = values.and_then(|v| v.checked_mul(BYTES_PER_VALUE));
    let limit = machine_bytes().unwrap_or(isize::MAX as u128);
    match needed {
        Some(bytes) if bytes <= limit => Ok(()),
        Some(bytes) => Err(Error::config(
            layer,
            format!(
                "needs {} for {what}; the machine has {}",
                human(bytes),
                human(limit)
            ),
        )),
        None => Err(Error::config(
            layer,
            format!("{what} would be more values than any machine holds"),
        )),
    }
}

/// The product of `sizes`, or `None` when it exceeds `u128`.
pub fn product(sizes: &[usize]) -> Option<u128> {
    sizes
        .iter()
        .try_fold(1u128, |acc, &s| acc.checked_mul(s as u128))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_cannot_fit_is_an_error_naming_the_sizes() {
        assert!(expect_fits("conv2d", "its weights", Some(1000)).is_ok());
        let err = expect_fits("conv2d", "its weights", Some(u64::MAX as u128))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("conv2d: needs ") && err.contains("for its weights"),
            "{err}"
        );
        let err = expect_fits(
            "linear",
            "its weights",
            product(&[usize::MAX, usize::MAX, 4]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("more values than any machine holds"), "{err}");
    }
}
