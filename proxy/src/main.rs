//! The `zring` binary.
fn main() {
    eprintln!("zring: not built yet");
    std::process::exit(2);
}
