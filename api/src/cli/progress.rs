//! Progress of long commands (`index`, `compact`): a bar on a terminal, and a line every
//! [`LOG_EVERY`] on stderr otherwise, so a build run under `nohup`, a job scheduler or CI
//! still says how far it is.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a progress line is written when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// A progress bar, or periodic progress lines where no terminal draws one.
pub struct Progress {
    bar: ProgressBar,
    what: String,
    /// When the last line was written (`None` on a terminal: the bar draws itself).
    logged: Option<Mutex<Instant>>,
}

impl Progress {
    /// Progress over `total` items (`None`: unknown until [`Progress::set_length`]), named
    /// `what` ("encoding", "graph").
    pub fn new(total: Option<u64>, what: &str) -> Progress {
        let bar = match total {
            Some(n) => ProgressBar::new(n),
            None => ProgressBar::new_spinner(),
        };
        let style = ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_message(what.to_string());
        let logged = (!std::io::stderr().is_terminal()).then(|| Mutex::new(Instant::now()));
        Progress { bar, what: what.to_string(), logged }
    }

    /// Advances by `n` items.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        self.log();
    }

    /// Sets the position and the total (for steps that report `done of total`).
    pub fn set(&self, done: u64, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(done);
        self.log();
    }

    /// Removes the bar (a terminal's line is cleared; nothing is written otherwise).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn log(&self) {
        let Some(logged) = &self.logged else { return };
        let Ok(mut last) = logged.lock() else { return };
        if last.elapsed() < LOG_EVERY {
            return;
        }
        *last = Instant::now();
        let (done, rate) = (self.bar.position(), self.bar.per_sec());
        match self.bar.length() {
            Some(total) if total > 0 => eprintln!(
                "{}: {done}/{total} ({:.1}%, {rate:.0}/s, ETA {})",
                self.what,
                done as f64 * 100.0 / total as f64,
                indicatif::HumanDuration(self.bar.eta())
            ),
            _ => eprintln!("{}: {done} ({rate:.0}/s)", self.what),
        }
    }
}
