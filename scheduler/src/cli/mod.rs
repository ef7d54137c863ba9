//! The `mesoflow` command-line tool: `run` a built-in job on the embedded local runtime and list
//! the built-in `jobs`. (Cluster commands — `list`, `cancel`, `savepoint`, `stop` — come with the
//! REST API.)

pub mod config;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use mesoflow_dataplane::checksum::checksum_line;
use mesoflow_dataplane::jobs::{self, Params};
use mesoflow_dataplane::runtime::JobResult;
use mesoflow_dataplane::{EnvConfig, JobMetrics, SinkSpec};

use config::LocalConfig;

/// mesoflow: a stateful stream processor for Apache Mesos.
#[derive(Debug, Parser)]
#[command(name = "mesoflow", version, about)]
pub struct Cli {
    /// Configuration override in Flink style, e.g. -Dparallelism.default=2 (repeatable).
    #[arg(short = 'D', value_name = "KEY=VALUE", global = true)]
    pub config: Vec<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a built-in job on the embedded local runtime.
    Run(RunArgs),
    /// List the built-in jobs and their parameters.
    Jobs,
}

/// Where results go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    /// One line per record on stdout.
    Print,
    /// One part file per sink subtask under --output.
    File,
    /// Only `records=<N> checksum=<16 hex>` on stdout.
    Checksum,
    /// Nothing (count only).
    Discard,
}

/// `mesoflow run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Built-in job (see `mesoflow jobs`).
    pub job: String,
    /// Job parameter key=value (repeatable), e.g. -p input=examples/data/words.txt.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE")]
    pub params: Vec<String>,
    /// Default parallelism of every operator.
    #[arg(long)]
    pub parallelism: Option<u32>,
    /// Directory for part files (implies --sink file).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Where results go (default: file with --output, else print).
    #[arg(long, value_enum)]
    pub sink: Option<SinkKind>,
}

/// Runs the CLI; returns the process exit code.
pub fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MESOFLOW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Jobs => {
            print!("{}", jobs_listing());
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run(args, &cli.config),
    }
}

/// The text `mesoflow jobs` prints.
pub fn jobs_listing() -> String {
    let mut s = String::new();
    for j in jobs::catalog() {
        s.push_str(&format!("{}\n    {}\n", j.name, j.about));
        for p in j.params {
            let default = if p.default.is_empty() {
                String::new()
            } else {
                format!(" (default {})", p.default)
            };
            s.push_str(&format!("    -p {}=...  {}{}\n", p.name, p.help, default));
        }
        s.push('\n');
    }
    s
}

/// Resolves the sink from the flags.
pub fn sink_spec(sink: Option<SinkKind>, output: Option<PathBuf>) -> Result<SinkSpec> {
    Ok(match (sink, output) {
        (Some(SinkKind::File) | None, Some(dir)) => SinkSpec::Files(dir),
        (Some(SinkKind::File), None) => bail!("--sink file needs --output DIR"),
        (Some(other), Some(_)) => bail!("--output only goes with --sink file, not {other:?}"),
        (None | Some(SinkKind::Print), None) => SinkSpec::Print,
        (Some(SinkKind::Checksum), None) => SinkSpec::Checksum,
        (Some(SinkKind::Discard), None) => SinkSpec::Discard,
    })
}

fn run(args: RunArgs, overrides: &[String]) -> Result<ExitCode> {
    let mut local = LocalConfig::default();
    local.apply(overrides)?;
    if let Some(p) = args.parallelism {
        if p == 0 {
            bail!("--parallelism must be positive");
        }
        local.parallelism = p;
    }
    let sink = sink_spec(args.sink, args.output.clone())?;
    let is_checksum = matches!(sink, SinkSpec::Checksum);
    let params = Params::parse(&args.params)?;
    let job = jobs::build(
        &args.job,
        &params,
        EnvConfig {
            job_name: args.job.clone(),
            parallelism: local.parallelism,
            max_parallelism: local.max_parallelism,
            sink,
        },
    )?;
    tracing::info!(job = %args.job, graph = %job.graph.to_json(), "starting");
    let handle = mesoflow_dataplane::start_local(job, local.runtime.clone())
        .with_context(|| format!("cannot start job '{}'", args.job))?;
    let cancel = handle.cancel_token();
    spawn_ctrl_c_handler(cancel);
    let metrics = handle.metrics();
    let progress = Progress::start(metrics);
    let result = handle.join();
    progress.finish();
    let result = match result {
        Ok(r) => r,
        Err(e) => return Err(anyhow::Error::new(e).context(format!("job '{}' failed", args.job))),
    };
    if result.cancelled && !INTERRUPTED.load(std::sync::atomic::Ordering::Acquire) {
        // Not Ctrl-C: stdout's reader went away (`mesoflow run ... | head`). Stop quietly.
        return Ok(ExitCode::SUCCESS);
    }
    if is_checksum {
        println!("{}", checksum_line(result.records_out, result.checksum));
    }
    eprintln!("{}", summary(&args.job, &result));
    if result.skipped > 0 {
        eprintln!(
            "warning: {} input line(s) could not be parsed and were skipped",
            result.skipped
        );
    }
    Ok(if result.cancelled {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// The summary line printed when a job ends.
pub fn summary(job: &str, r: &JobResult) -> String {
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    format!(
        "{job} {} in {:.2} s: {} records in ({:.0}/s), {} records out",
        if r.cancelled { "cancelled" } else { "finished" },
        secs,
        r.records_in,
        r.records_in as f64 / secs,
        r.records_out,
    )
}

/// Set when the user pressed Ctrl-C (as opposed to the job stopping for another reason).
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stops the job cleanly on Ctrl-C (SIGINT).
fn spawn_ctrl_c_handler(cancel: mesoflow_dataplane::CancelToken) {
    let spawned = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::warn!("no signal handling: {e}");
                    return;
                }
            };
            rt.block_on(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    INTERRUPTED.store(true, std::sync::atomic::Ordering::Release);
                    eprintln!("\nstopping (Ctrl-C)...");
                    cancel.cancel();
                }
            });
        });
    if let Err(e) = spawned {
        tracing::warn!("no Ctrl-C handling: {e}");
    }
}

/// Progress line on a terminal for runs longer than ~2 s.
struct Progress {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(metrics: std::sync::Arc<JobMetrics>) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Self { stop, thread: None };
        }
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                use std::sync::atomic::Ordering;
                let started = std::time::Instant::now();
                while started.elapsed() < Duration::from_secs(2) {
                    if flag.load(Ordering::Acquire) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                let bar = indicatif::ProgressBar::new_spinner();
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                let (mut last_in, mut last_t) = (metrics.records_in(), std::time::Instant::now());
                while !flag.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(250));
                    let (now_in, now_t) = (metrics.records_in(), std::time::Instant::now());
                    let rate = (now_in - last_in) as f64 / (now_t - last_t).as_secs_f64().max(1e-6);
                    bar.set_message(format!(
                        "records in {now_in}  out {}  {:.2} M/s",
                        metrics.records_out(),
                        rate / 1e6
                    ));
                    bar.tick();
                    (last_in, last_t) = (now_in, now_t);
                }
                bar.finish_and_clear();
            })
            .ok();
        Self { stop, thread }
    }

    fn finish(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses_run_with_params_and_flink_style_overrides() {
        let cli = Cli::try_parse_from([
            "mesoflow",
            "run",
            "wordcount",
            "-p",
            "input=x.txt",
            "--parallelism",
            "4",
            "-Dparallelism.default=2",
            "--sink",
            "checksum",
        ])
        .unwrap();
        assert_eq!(cli.config, vec!["parallelism.default=2"]);
        let Command::Run(r) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(r.job, "wordcount");
        assert_eq!(r.params, vec!["input=x.txt"]);
        assert_eq!(r.parallelism, Some(4));
        assert_eq!(r.sink, Some(SinkKind::Checksum));
    }

    #[test]
    fn sink_flags_resolve_or_explain() {
        assert!(matches!(sink_spec(None, None).unwrap(), SinkSpec::Print));
        assert!(matches!(
            sink_spec(None, Some("out".into())).unwrap(),
            SinkSpec::Files(_)
        ));
        assert!(sink_spec(Some(SinkKind::File), None).is_err());
        assert!(sink_spec(Some(SinkKind::Checksum), Some("o".into())).is_err());
    }

    #[test]
    fn jobs_listing_names_every_job_and_parameter() {
        let s = jobs_listing();
        for j in jobs::catalog() {
            assert!(s.contains(j.name));
            for p in j.params {
                assert!(s.contains(&format!("-p {}=", p.name)));
            }
        }
    }
}
