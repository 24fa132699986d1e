//! End-to-end tests: each runs the real `thresher` binary on real text.

mod util;

mod bad_input;
mod code_eval;
mod demo_classifier;
mod eval;
mod heuristics;
mod inspect;
mod line_dedup;
mod minhash;
mod pack;
mod quality;
mod quickstart;
mod report;
mod resume;
mod routing;
mod s3;
mod slurm;
mod tasks;
mod warc;
