//! Model code for thresher's judgements about documents.
//!
//! It holds [`LanguageIdentifier`] (the `langid` stage), the code classifier
//! (`code`), the Llama-class quality classifier (`quality`, with its fused GPU
//! kernels in `fused_ops` and `kernels/`), the tokenizers and head training,
//! so that stages stay thin wrappers that turn a model's verdict into tags and
//! decisions.
//!
//! ```
//! use thresher_classifiers::LanguageIdentifier;
//! let id = LanguageIdentifier::new(4096);
//! let lang = id.identify("Der schnelle braune Fuchs springt über den faulen Hund, \
//!     während die Katze auf dem Sofa schläft und träumt.").unwrap();
//! assert_eq!(lang.iso639_3, "deu");
//! assert_eq!(lang.iso639_1, Some("de"));
//! ```

pub mod code_classifier;
pub mod langid;
pub mod ngram_langid;

pub use langid::{Language, LanguageIdentifier};
pub mod tokenizer;
pub use tokenizer::TextTokenizer;
pub mod fused_ops;
pub mod llama_classifier;
/// candle, re-exported so that stages name devices and dtypes without their own dependency.
pub use candle_core;
pub use llama_classifier::{checkpoint_tokenizer, judge, ClassifierInput, Judgement, Kernels, LlamaClassifier};
pub mod train;
