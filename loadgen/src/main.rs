//! zring-loadgen: builds the two-node topology and drives load through it.
fn main() {
    eprintln!("zring-loadgen: not built yet");
    std::process::exit(2);
}
