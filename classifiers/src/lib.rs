//! Model code for thresher's judgements about documents.
//!
//! Today this holds [`LanguageIdentifier`], the language-ID model behind the
//! `langid` stage (whatlang's script and trigram model). The Llama-class quality
//! classifier and the code classifier join it here, so that stages stay thin
//! wrappers that turn a model's verdict into tags and decisions.
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
pub mod llama_classifier;
/// candle, re-exported so that stages name devices and dtypes without their own dependency.
pub use candle_core;
pub use llama_classifier::{checkpoint_tokenizer, judge, ClassifierInput, Judgement, LlamaClassifier};
pub mod train;
