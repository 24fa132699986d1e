//! A progress bar per step (bytes read, MB/s, documents), drawn only when
//! stderr is a terminal, so logs and CI output stay clean.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    documents: Arc<AtomicU64>,
}

impl Progress {
    pub fn new(label: &str, total_bytes: u64) -> Self {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(total_bytes), target);
        bar.set_style(
            ProgressStyle::with_template("{prefix:>16} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        Self {
            bar,
            documents: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn inc_bytes(&self, n: u64) {
        self.bar.inc(n);
    }

    pub fn add_documents(&self, n: u64) {
        let total = self.documents.fetch_add(n, Ordering::Relaxed) + n;
        if !self.bar.is_hidden() {
            self.bar.set_message(format!("{total} docs"));
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
