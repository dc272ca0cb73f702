//! Numbers as tables and messages print them.

/// An integer with thousands separators: `61706` → `61,706`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in B, KiB, MiB, GiB, TiB or PiB (powers of 1024), three significant digits.
pub fn bytes_str(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ if value < 10.0 => format!("{value:.2} {}", UNITS[unit]),
        _ if value < 100.0 => format!("{value:.1} {}", UNITS[unit]),
        _ => format!("{value:.0} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_grouped_by_three() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(61_706), "61,706");
        assert_eq!(grouped(1_234_567), "1,234,567");
    }

    #[test]
    fn bytes_are_scaled_by_1024() {
        assert_eq!(bytes_str(512), "512 B");
        assert_eq!(bytes_str(18_816), "18.4 KiB");
        assert_eq!(bytes_str(3 * 1024 * 1024), "3.00 MiB");
    }
}
