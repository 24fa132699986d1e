pub mod error;
pub mod readers;
pub mod storage;
pub use error::{Error, Result};
