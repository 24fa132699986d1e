//! End-to-end tests of the `thresher` binary live in `tests/e2e/`; this library is empty.
