//! The `ocellus` command-line tool.

fn main() {
    println!("ocellus {}", env!("CARGO_PKG_VERSION"));
}
