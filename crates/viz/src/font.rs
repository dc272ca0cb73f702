//! An embedded 5×7 bitmap font (with 2 rows of descenders) for labels, so pictures render
//! the same everywhere with no system font.
//!
//! Glyphs are 5 pixels wide and 9 tall: rows 0–6 hold capitals and digits (the baseline is
//! under row 6), rows 7–8 the descenders of `g j p q y , ;`. Each character advances 6
//! pixels; lines are 11 pixels apart. An integer `scale` multiplies everything. The shapes
//! follow the classic public-domain 5×7 dot-matrix character set.

use super::canvas::{Canvas, Rgb};

/// Width of a glyph in font pixels.
pub const GLYPH_WIDTH: usize = 5;
/// Height of a glyph cell in font pixels, descenders included.
pub const GLYPH_HEIGHT: usize = 9;
/// Horizontal distance between the starts of two characters.
pub const ADVANCE: usize = GLYPH_WIDTH + 1;
/// Vertical distance between two lines of text.
pub const LINE_HEIGHT: usize = GLYPH_HEIGHT + 2;

/// Rows of one glyph, top to bottom; bit 4 is the leftmost column.
type Glyph = [u8; GLYPH_HEIGHT];

/// Printable ASCII, `' '` (32) to `'~'` (126).
#[rustfmt::skip]
const ASCII: [Glyph; 95] = [
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // space
    [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000, 0b00100, 0b00000, 0b00000], // !
    [0b01010, 0b01010, 0b01010, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // "
    [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010, 0b00000, 0b00000], // #
    [0b00100, 0b01111, 0b10100, 0b01110, 0b00101, 0b11110, 0b00100, 0b00000, 0b00000], // $
    [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011, 0b00000, 0b00000], // %
    [0b01100, 0b10010, 0b10100, 0b01000, 0b10101, 0b10010, 0b01101, 0b00000, 0b00000], // &
    [0b00100, 0b00100, 0b01000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // '
    [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010, 0b00000, 0b00000], // (
    [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000, 0b00000, 0b00000], // )
    [0b00000, 0b00100, 0b10101, 0b01110, 0b10101, 0b00100, 0b00000, 0b00000, 0b00000], // *
    [0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000, 0b00000, 0b00000], // +
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100, 0b00100, 0b01000], // ,
    [0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // -
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100, 0b00000, 0b00000], // .
    [0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000, 0b00000, 0b00000], // /
    [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110, 0b00000, 0b00000], // 0
    [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000, 0b00000], // 1
    [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111, 0b00000, 0b00000], // 2
    [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110, 0b00000, 0b00000], // 3
    [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010, 0b00000, 0b00000], // 4
    [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110, 0b00000, 0b00000], // 5
    [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110, 0b00000, 0b00000], // 6
    [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00000, 0b00000], // 7
    [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110, 0b00000, 0b00000], // 8
    [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100, 0b00000, 0b00000], // 9
    [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000, 0b00000, 0b00000], // :
    [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00100, 0b01000, 0b00000], // ;
    [0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010, 0b00000, 0b00000], // <
    [0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000, 0b00000], // =
    [0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000, 0b00000, 0b00000], // >
    [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100, 0b00000, 0b00000], // ?
    [0b01110, 0b10001, 0b00001, 0b01101, 0b10101, 0b10101, 0b01110, 0b00000, 0b00000], // @
    [0b01110, 0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b00000, 0b00000], // A
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110, 0b00000, 0b00000], // B
    [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110, 0b00000, 0b00000], // C
    [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100, 0b00000, 0b00000], // D
    [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111, 0b00000, 0b00000], // E
    [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000, 0b00000, 0b00000], // F
    [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111, 0b00000, 0b00000], // G
    [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001, 0b00000, 0b00000], // H
    [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000, 0b00000], // I
    [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100, 0b00000, 0b00000], // J
    [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001, 0b00000, 0b00000], // K
    [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111, 0b00000, 0b00000], // L
    [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001, 0b00000, 0b00000], // M
    [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001, 0b00000, 0b00000], // N
    [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000, 0b00000], // O
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000, 0b00000, 0b00000], // P
    [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101, 0b00000, 0b00000], // Q
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001, 0b00000, 0b00000], // R
    [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110, 0b00000, 0b00000], // S
    [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000, 0b00000], // T
    [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000, 0b00000], // U
    [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00000, 0b00000], // V
    [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010, 0b00000, 0b00000], // W
    [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001, 0b00000, 0b00000], // X
    [0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000, 0b00000], // Y
    [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111, 0b00000, 0b00000], // Z
    [0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110, 0b00000, 0b00000], // [
    [0b00000, 0b10000, 0b01000, 0b00100, 0b00010, 0b00001, 0b00000, 0b00000, 0b00000], // \
    [0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110, 0b00000, 0b00000], // ]
    [0b00100, 0b01010, 0b10001, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // ^
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111, 0b00000], // _
    [0b01000, 0b00100, 0b00010, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000], // `
    [0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111, 0b00000, 0b00000], // a
    [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110, 0b00000, 0b00000], // b
    [0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110, 0b00000, 0b00000], // c
    [0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111, 0b00000, 0b00000], // d
    [0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110, 0b00000, 0b00000], // e
    [0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000, 0b00000, 0b00000], // f
    [0b00000, 0b00000, 0b01111, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110], // g
    [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0b00000, 0b00000], // h
    [0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000, 0b00000], // i
    [0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100], // j
    [0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b00000, 0b00000], // k
    [0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110, 0b00000, 0b00000], // l
    [0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10101, 0b10101, 0b00000, 0b00000], // m
    [0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001, 0b00000, 0b00000], // n
    [0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110, 0b00000, 0b00000], // o
    [0b00000, 0b00000, 0b11110, 0b10001, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000], // p
    [0b00000, 0b00000, 0b01111, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b00001], // q
    [0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000, 0b00000, 0b00000], // r
    [0b00000, 0b00000, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110, 0b00000, 0b00000], // s
    [0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110, 0b00000, 0b00000], // t
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101, 0b00000, 0b00000], // u
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00000, 0b00000], // v
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010, 0b00000, 0b00000], // w
    [0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b00000, 0b00000], // x
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110], // y
    [0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111, 0b00000, 0b00000], // z
    [0b00010, 0b00100, 0b00100, 0b01000, 0b00100, 0b00100, 0b00010, 0b00000, 0b00000], // {
    [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000, 0b00000], // |
    [0b01000, 0b00100, 0b00100, 0b00010, 0b00100, 0b00100, 0b01000, 0b00000, 0b00000], // }
    [0b00000, 0b00000, 0b01000, 0b10101, 0b00010, 0b00000, 0b00000, 0b00000, 0b00000], // ~
];

/// A few non-ASCII characters that labels use.
#[rustfmt::skip]
const EXTRA: [(char, Glyph); 10] = [
    ('×', [0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b00000, 0b00000, 0b00000]),
    ('·', [0b00000, 0b00000, 0b00000, 0b01100, 0b01100, 0b00000, 0b00000, 0b00000, 0b00000]),
    ('°', [0b01100, 0b10010, 0b10010, 0b01100, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000]),
    ('±', [0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000, 0b11111, 0b00000, 0b00000]),
    ('µ', [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b11101, 0b10000, 0b10000]),
    ('…', [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b10101, 0b00000, 0b00000]),
    ('→', [0b00000, 0b00100, 0b00010, 0b11111, 0b00010, 0b00100, 0b00000, 0b00000, 0b00000]),
    ('∂', [0b01100, 0b00010, 0b00001, 0b01111, 0b10001, 0b10001, 0b01110, 0b00000, 0b00000]),
    ('θ', [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b01110, 0b00000, 0b00000]),
    ('Δ', [0b00100, 0b00100, 0b01010, 0b01010, 0b10001, 0b10001, 0b11111, 0b00000, 0b00000]),
];

/// Drawn for any character the font does not have.
#[rustfmt::skip]
const UNKNOWN: Glyph = [0b11111, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11111, 0b00000, 0b00000];

fn glyph(c: char) -> &'static Glyph {
    match c {
        ' '..='~' => &ASCII[c as usize - 32],
        '–' | '—' | '−' => &ASCII['-' as usize - 32],
        _ => EXTRA
            .iter()
            .find(|(e, _)| *e == c)
            .map_or(&UNKNOWN, |(_, g)| g),
    }
}

/// Width in pixels of `text` drawn at `scale` (no trailing gap after the last character).
pub fn text_width(text: &str, scale: usize) -> usize {
    let n = text.chars().count();
    if n == 0 {
        0
    } else {
        (n * ADVANCE - 1) * scale
    }
}

/// Height in pixels of one line of text at `scale`, descenders included.
pub fn text_height(scale: usize) -> usize {
    GLYPH_HEIGHT * scale
}

/// Draws `text` with its top-left corner at `(x, y)`; every font pixel becomes a
/// `scale × scale` block. Returns the width drawn.
pub fn draw_text(
    canvas: &mut Canvas,
    x: i64,
    y: i64,
    text: &str,
    color: Rgb,
    scale: usize,
) -> usize {
    let s = scale as i64;
    for (i, c) in text.chars().enumerate() {
        let left = x + (i * ADVANCE) as i64 * s;
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..GLYPH_WIDTH {
                if bits & (1 << (GLYPH_WIDTH - 1 - col)) != 0 {
                    canvas.fill_rect(
                        left + col as i64 * s,
                        y + row as i64 * s,
                        scale,
                        scale,
                        color,
                    );
                }
            }
        }
    }
    text_width(text, scale)
}

/// Draws `text` turned 90° counter-clockwise (reading upwards, as a y-axis title), with the
/// bounding box's top-left corner at `(x, y)`. The box is `text_height(scale)` wide and
/// `text_width(text, scale)` tall.
pub fn draw_text_up(canvas: &mut Canvas, x: i64, y: i64, text: &str, color: Rgb, scale: usize) {
    let s = scale as i64;
    let bottom = y + text_width(text, scale) as i64 - s;
    for (i, c) in text.chars().enumerate() {
        // Glyph column `col` runs up the page, glyph row `row` runs to the right.
        let base = bottom - (i * ADVANCE) as i64 * s;
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..GLYPH_WIDTH {
                if bits & (1 << (GLYPH_WIDTH - 1 - col)) != 0 {
                    canvas.fill_rect(
                        x + row as i64 * s,
                        base - col as i64 * s,
                        scale,
                        scale,
                        color,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvas::{BLACK, WHITE};

    fn inked(c: &Canvas) -> usize {
        c.pixels.chunks_exact(3).filter(|p| *p == BLACK).count()
    }

    #[test]
    fn every_printable_ascii_glyph_is_distinct_and_only_space_is_empty() {
        for (i, a) in ASCII.iter().enumerate() {
            let c = (i as u8 + 32) as char;
            assert_eq!(a.iter().any(|&r| r != 0), c != ' ', "glyph {c:?}");
            assert!(
                a.iter().all(|&r| r < 1 << GLYPH_WIDTH),
                "glyph {c:?} too wide"
            );
            for (j, b) in ASCII.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "{c:?} and {:?} look the same", (j as u8 + 32) as char);
            }
        }
    }

    #[test]
    fn text_changes_pixels_and_wider_text_is_wider() {
        let mut c = Canvas::new(100, 20, WHITE);
        let w = draw_text(&mut c, 2, 2, "0.25", BLACK, 1);
        assert_eq!(w, text_width("0.25", 1));
        assert!(inked(&c) > 20);
        // Nothing is drawn outside the text box.
        for y in 0..20 {
            for x in 0..100 {
                let inside = (2..2 + w).contains(&x) && (2..2 + text_height(1)).contains(&y);
                if !inside {
                    assert_eq!(c.pixel(x, y), Some(WHITE), "({x}, {y})");
                }
            }
        }
        assert!(text_width("accuracy", 1) > text_width("loss", 1));
        assert_eq!(text_width("", 3), 0);
        assert_eq!(text_width("ab", 1), 11);
        assert_eq!(text_width("ab", 2), 2 * text_width("ab", 1));
    }

    #[test]
    fn scale_multiplies_the_ink() {
        let mut one = Canvas::new(60, 30, WHITE);
        let mut three = Canvas::new(60, 30, WHITE);
        draw_text(&mut one, 0, 0, "Ag%", BLACK, 1);
        draw_text(&mut three, 0, 0, "A", BLACK, 3);
        let mut a = Canvas::new(60, 30, WHITE);
        draw_text(&mut a, 0, 0, "A", BLACK, 1);
        assert_eq!(inked(&three), 9 * inked(&a));
        assert!(inked(&one) > inked(&a));
    }

    #[test]
    fn unknown_characters_draw_a_box_and_known_extras_do_not() {
        let mut c = Canvas::new(10, 10, WHITE);
        draw_text(&mut c, 0, 0, "\u{263A}", BLACK, 1);
        // The box outline: 5 + 5 + 5 + 5 - 4 corners.
        assert_eq!(inked(&c), 2 * 5 + 2 * 5);
        assert_eq!(c.pixel(0, 0), Some(BLACK));
        assert_eq!(c.pixel(2, 3), Some(WHITE));
        for ch in ['×', '±', 'µ', '°', '·', '…', '—', '→', '∂'] {
            assert_ne!(glyph(ch), &UNKNOWN, "{ch:?}");
        }
        assert_eq!(glyph('—'), glyph('-'));
    }

    #[test]
    fn upward_text_is_the_transpose_of_horizontal_text() {
        let text = "loss";
        let (w, h) = (text_width(text, 1), text_height(1));
        let mut flat = Canvas::new(w, h, WHITE);
        let mut up = Canvas::new(h, w, WHITE);
        draw_text(&mut flat, 0, 0, text, BLACK, 1);
        draw_text_up(&mut up, 0, 0, text, BLACK, 1);
        for y in 0..h {
            for x in 0..w {
                // Flat (x, y) lands at (y, w - 1 - x) once turned counter-clockwise.
                assert_eq!(flat.pixel(x, y), up.pixel(y, w - 1 - x), "({x}, {y})");
            }
        }
    }
}
