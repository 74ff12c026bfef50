//! A progress bar on stderr: a ticker thread redraws `[#####.....] 45% <label>` while
//! phases run; the fraction comes from elapsed time over the planned total. When stderr
//! is not a terminal (CI logs), only the per-phase notes are printed.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const WIDTH: usize = 30;
const TICK: Duration = Duration::from_millis(250);

/// Renders one progress line (pure).
pub fn line(fraction: f64, label: &str) -> String {
    let f = fraction.clamp(0.0, 1.0);
    let done = (f * WIDTH as f64).round() as usize;
    format!(
        "[{}{}] {:3.0}% {label}",
        "#".repeat(done),
        ".".repeat(WIDTH - done),
        f * 100.0
    )
}

/// A running progress bar.
pub struct Progress {
    label: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts a bar expected to take `total`.
    pub fn start(total: Duration) -> Self {
        let label = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (l, s) = (label.clone(), stop.clone());
        let start = Instant::now();
        if !std::io::stderr().is_terminal() {
            return Progress {
                label,
                stop,
                ticker: None,
            };
        }
        let ticker = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let f = start.elapsed().as_secs_f64() / total.as_secs_f64().max(0.001);
                let text = l.lock().map(|g| g.clone()).unwrap_or_default();
                eprint!("\r{:<100}", line(f.min(0.99), &text));
                let _ = std::io::stderr().flush();
                std::thread::sleep(TICK);
            }
        });
        Progress {
            label,
            stop,
            ticker: Some(ticker),
        }
    }

    /// Sets what is running now.
    pub fn set(&self, label: impl Into<String>) {
        if let Ok(mut g) = self.label.lock() {
            *g = label.into();
        }
    }

    /// Prints a finished phase on its own line above the bar.
    pub fn note(&self, text: &str) {
        if self.ticker.is_some() {
            eprint!("\r{:<100}\r", "");
        }
        eprintln!("{text}");
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
            eprintln!("\r{:<100}", line(1.0, "done"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_fraction_and_label() {
        assert_eq!(
            line(0.5, "rr"),
            format!("[{}{}]  50% rr", "#".repeat(15), ".".repeat(15))
        );
        assert!(line(2.0, "x").contains("100%"));
        assert!(line(-1.0, "x").contains("  0%"));
    }
}
