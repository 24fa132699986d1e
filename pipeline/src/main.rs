//! The `thresher` binary: parse arguments, call the library, print errors with
//! their whole chain.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use thresher::cli::{ClassifierCommand, Cli, Command, EvalCommand, LogFormat, RunArgs, SubmitArgs};
use thresher::config::PipelineConfig;
use thresher::runner::{render_plan, Pipeline, RunOptions, Tasks};

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Documents of a few hundred KB are common on the web; glibc serves such
/// allocations with mmap and gives them back at once, so every document cost
/// page faults (12% of shard read+write time in a profile). Serving them from
/// the heap and keeping freed memory for the next document removes that.
fn tune_allocator() {
    // SAFETY: mallopt only changes allocator parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_target(false).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run_pipeline(args),
        Command::Plan { config, tasks } => {
            let pipeline = Pipeline::new(PipelineConfig::load(&config)?)?;
            print!("{}", render_plan(&pipeline.plan(tasks)?));
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect {
            output_root,
            stage: Some(stage),
            samples: Some(k),
            json,
        } => {
            let reasons = thresher::inspect::rejected_samples(&output_root, &stage, k)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reasons)?);
            } else {
                print!("{}", thresher::inspect::render_samples(&stage, &reasons));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            output_root,
            format,
            out,
            html,
        } => {
            report(&output_root, &format, out.as_deref(), html.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Inspect { output_root, json, .. } => {
            let inspection = thresher::inspect::inspect(&output_root)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&inspection)?);
            } else {
                print!("{}", thresher::inspect::render(&inspection));
            }
            Ok(if inspection.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Submit(args) => submit(args),
        Command::Bench(args) => {
            thresher::bench::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(EvalCommand::Langid {
            data,
            doc_sentences,
            sample_bytes,
            identifier,
            folds,
            model,
            json,
        }) => {
            let evaluation = thresher::eval::run_langid_eval(
                &data,
                doc_sentences,
                sample_bytes,
                &identifier,
                folds,
                model.as_deref(),
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&evaluation)?);
            } else {
                print!("{}", thresher::eval::render_langid(&evaluation));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Classifier(ClassifierCommand::TrainCode {
            data,
            out,
            max_bytes,
            prose,
            epochs,
            class_balance,
            catch_all,
            catch_all_weight,
            document_bits,
            windows_per_file,
            seeds,
        }) => {
            use thresher_classifiers::code_classifier::{CodeClassifier, TrainOptions};
            use thresher_classifiers::ngram_langid::read_labelled_files;
            let labelled = read_labelled_files(&data, max_bytes)?;
            let prose: Vec<&str> = prose.split(',').map(str::trim).collect();
            let options = TrainOptions {
                epochs,
                class_balance,
                catch_all: (!catch_all.is_empty()).then_some(catch_all),
                catch_all_weight,
                document_bits,
                windows_per_file,
                seeds,
                ..TrainOptions::default()
            };
            let model = CodeClassifier::train(&labelled, &prose, &options)?;
            let bytes = model.to_bytes();
            std::fs::write(&out, &bytes).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
            println!(
                "{} labels, {} files; {} bytes written to {}",
                model.labels.len(),
                labelled.iter().map(|l| l.1.len()).sum::<usize>(),
                bytes.len(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(EvalCommand::Tokenizer {
            tokenizer,
            reference,
            input,
            max_docs,
            max_tokens,
            json,
        }) => {
            let evaluation =
                thresher::eval::evaluate_tokenizer(&tokenizer, reference.as_deref(), &input, max_docs, max_tokens)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&evaluation)?);
            } else {
                print!("{}", thresher::eval::render_tokenizer(&evaluation));
            }
            let differing = evaluation.whole_differing.unwrap_or(0) + evaluation.first_differing.unwrap_or(0);
            Ok(if differing > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Eval(EvalCommand::Code {
            model,
            data,
            sentences,
            sample_bytes,
            json,
            misjudged,
        }) => {
            let evaluation = thresher::eval::evaluate_code(&model, &data, &sentences, sample_bytes)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&evaluation)?);
            } else {
                if misjudged {
                    println!("{}", thresher::eval::render_misjudged(&evaluation));
                }
                print!("{}", thresher::eval::render_code(&evaluation));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Classifier(ClassifierCommand::TrainLangid { data, out }) => {
            let model = thresher_classifiers::ngram_langid::NgramLangid::train_folder(&data)?;
            let bytes = model.to_bytes();
            std::fs::write(&out, &bytes).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
            println!(
                "{} languages, {} n-grams; {} bytes written to {}",
                model.languages.len(),
                model.ngram_count(),
                bytes.len(),
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Classifier(ClassifierCommand::Train(args)) => {
            let report = thresher_classifiers::train::train(&thresher_classifiers::train::TrainOptions {
                backbone: args.backbone,
                data: args.data,
                out: args.out.clone(),
                tokenizer: args.tokenizer,
                max_tokens: args.max_tokens,
                batch_tokens: args.batch_tokens,
                l2: args.l2,
                eval: args.eval,
            })?;
            let fit = if report.kind == "regression" { "R²" } else { "accuracy" };
            let held_out = report
                .eval_fit
                .map(|f| format!(", held-out {fit} {f:.3}"))
                .unwrap_or_default();
            println!(
                "{} head on {} examples (labels: {}); training {fit} {:.3}{held_out}; checkpoint written to {}",
                report.kind,
                report.examples,
                report.labels.join(", "),
                report.fit,
                args.out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `thresher submit`: see `thresher::submit`.
fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    use thresher::submit::{absolute, k8s_manifests, submit_slurm, task_arrays, K8sOptions, SlurmOptions};
    let pipeline = Pipeline::new(PipelineConfig::load(&args.config)?)?;
    let arrays = task_arrays(&pipeline, args.tasks.max(1));
    if args.k8s {
        let name = args
            .config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        print!(
            "{}",
            k8s_manifests(
                &arrays,
                &K8sOptions {
                    config: args
                        .config_in_container
                        .unwrap_or_else(|| args.config.to_string_lossy().into_owned()),
                    image: args.image.unwrap_or_default(),
                    namespace: args.namespace,
                    name,
                },
            )
        );
        return Ok(ExitCode::SUCCESS);
    }
    let options = SlurmOptions {
        config: absolute(&args.config)?,
        program: std::env::current_exe()?,
        workdir: std::env::current_dir()?,
        script_dir: absolute(&args.script_dir)?,
        sbatch_args: args.sbatch_args,
    };
    let submitted = submit_slurm(&arrays, &options, args.dry_run)?;
    if args.dry_run {
        for (i, s) in submitted.iter().enumerate() {
            let after = match i {
                0 => String::new(),
                _ => format!(" --dependency=afterok:<job of #{i}>"),
            };
            println!(
                "### #{} would be submitted as: sbatch{}{after} {}",
                i + 1,
                options
                    .sbatch_args_of(&s.array)
                    .iter()
                    .map(|a| format!(" {a}"))
                    .collect::<String>(),
                s.script.display()
            );
            print!("{}", std::fs::read_to_string(&s.script)?);
        }
    }
    println!(
        "{:<4} {:<16} {:<8} {:>5}  {:<10} script",
        "#", "stage", "step", "tasks", "job"
    );
    for (i, s) in submitted.iter().enumerate() {
        println!(
            "{:<4} {:<16} {:<8} {:>5}  {:<10} {}",
            i + 1,
            s.array.stage,
            s.array.step,
            s.array.tasks,
            s.job_id.as_deref().unwrap_or("(dry run)"),
            s.script.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Task index and count: flags first, then Slurm's and Kubernetes' variables.
fn tasks_from(args: &RunArgs) -> anyhow::Result<Tasks> {
    let env = |name: &str| -> anyhow::Result<Option<usize>> {
        match std::env::var(name) {
            Ok(v) => Ok(Some(
                v.trim()
                    .parse()
                    .with_context(|| format!("{name}={v} is not a number"))?,
            )),
            Err(_) => Ok(None),
        }
    };
    let slurm_index = match env("SLURM_ARRAY_TASK_ID")? {
        Some(id) => Some(id - env("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0).min(id)),
        None => None,
    };
    let index = args
        .task_index
        .or(slurm_index)
        .or(env("JOB_COMPLETION_INDEX")?)
        .unwrap_or(0);
    let count = args.tasks.or(env("SLURM_ARRAY_TASK_COUNT")?).unwrap_or(1);
    Ok(Tasks::new(index, count)?)
}

fn run_pipeline(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut config = PipelineConfig::load(&args.config)?;
    if let Some(threads) = args.threads {
        config.run.threads = threads;
    }
    if let Some(rate) = args.max_error_rate {
        anyhow::ensure!(
            (0.0..=1.0).contains(&rate),
            "--max-error-rate must be within 0..1, got {rate}"
        );
    }
    let options = RunOptions {
        stage: args.stage.clone(),
        step: args.step.clone(),
        tasks: tasks_from(&args)?,
        force: args.force,
        max_error_rate: args.max_error_rate,
    };
    let threads = config.run.threads;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start worker threads")?;
    let pipeline = Pipeline::new(config)?;
    pool.install(|| pipeline.run(&options))?;
    Ok(ExitCode::SUCCESS)
}

/// `thresher report`: builds the report and writes it in `format`.
fn report(root: &str, format: &str, out: Option<&Path>, html: Option<&Path>) -> anyhow::Result<()> {
    use thresher::report;
    report::configure_terminal_tables();
    let built = report::build(root)?;
    let write_or_print = |text: String| -> anyhow::Result<()> {
        match out {
            Some(path) => std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display())),
            None => {
                print!("{text}");
                Ok(())
            }
        }
    };
    match format {
        "table" => write_or_print(report::render_terminal(&built)?)?,
        "markdown" => write_or_print(report::render_markdown(&built)?)?,
        "json" => write_or_print(format!(
            "{}\n",
            serde_json::to_string_pretty(&report::render_json(&built)?)?
        ))?,
        "csv" | "parquet" => {
            let dir = out.context("--format csv or parquet writes one file per table: give the folder with --out")?;
            for path in report::write_files(&built, dir, format)? {
                eprintln!("wrote {}", path.display());
            }
        }
        other => anyhow::bail!("unknown --format {other:?}: table, csv, parquet, json or markdown"),
    }
    if let Some(path) = html {
        std::fs::write(path, report::render_html(&built)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
