//! What the binaries share: bad input (exit code 2) vs failure (exit code 1), and the
//! allocator.

/// mimalloc instead of the system allocator: the tensor path allocates tensors of tens of MB
/// per op, which glibc serves by mmap and returns by munmap each time (page faults, zeroing):
/// measured on `bench-gpu` (synth3x32, batch 1024): LGS-3 steps 3.3 s -> 0.97 s with glibc's
/// mmap threshold raised, sys time 10.7 s -> 0.7 s.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Thread settings of candle's CPU backend, unless the user set them: `CANDLE_NUM_THREADS=1`
/// (candle's element-wise ops otherwise split across a spin-barrier pool, which on a busy
/// 2-core machine spends most of its time spinning: `bench-gpu`, synth3x32, LGS-3 step at
/// batch 64, 204 -> 8.2k sample-steps/s; matmuls stay parallel) and
/// `RAYON_NUM_THREADS` = the available parallelism (rayon's own default; without it candle
/// re-reads /proc/cpuinfo on every matmul). Call first in `main`, before any thread starts.
#[allow(dead_code)]
pub fn init_candle_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}

/// An error caused by the user's input: exit code 2.
#[derive(Debug)]
pub struct BadInput(pub anyhow::Error);

/// Wraps an error as bad input.
#[allow(dead_code)]
pub fn bad<E: Into<anyhow::Error>>(e: E) -> BadInput {
    BadInput(e.into())
}

/// How a run ended when it did not succeed.
pub enum Outcome {
    /// Bad input: exit code 2.
    Bad(BadInput),
    /// A failure (I/O, drawing): exit code 1.
    Failed(anyhow::Error),
}

impl From<BadInput> for Outcome {
    fn from(b: BadInput) -> Self {
        Outcome::Bad(b)
    }
}

/// Wraps an error as a failure.
#[allow(dead_code)]
pub fn failed<E: Into<anyhow::Error>>(e: E) -> Outcome {
    Outcome::Failed(e.into())
}

/// Prints the error on stderr and exits with 2 (bad input) or 1 (failure); returns on success.
pub fn finish(result: Result<(), Outcome>) {
    match result {
        Ok(()) => {}
        Err(Outcome::Bad(e)) => {
            eprintln!("error: {:#}", e.0);
            std::process::exit(2);
        }
        Err(Outcome::Failed(e)) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// Exits 1 when `result` is `Ok(false)` (a check failed), as [`finish`] on errors.
#[allow(dead_code)]
pub fn finish_check(result: Result<bool, Outcome>) {
    match result {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => finish(Err(e)),
    }
}

/// Writes `doc` as pretty JSON to `path` (creating its directory; atomically: a killed run
/// leaves the previous file intact) and says so on stderr.
#[allow(dead_code)]
pub fn write_json(path: &std::path::Path, doc: &serde_json::Value) -> anyhow::Result<()> {
    covlab::output::write_bytes_atomic(
        path,
        (serde_json::to_string_pretty(doc)? + "\n").as_bytes(),
    )?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Checks, before any computation, that the output `path` of `flag` can be written (its
/// directory created, a temporary file created and removed there, not a directory): bad input
/// naming the flag otherwise.
#[allow(dead_code)]
pub fn check_output(flag: &str, path: &std::path::Path) -> Result<(), Outcome> {
    covlab::output::check_writable(path).map_err(|e| {
        Outcome::Bad(BadInput(
            anyhow::Error::from(e).context(format!("`{flag}`")),
        ))
    })
}

/// Checks every file the figures `names` write under `stem` before any computation, as
/// [`check_output`]; a figure never fails a run (the JSON is the result), so a problem is a
/// warning on stderr naming `flag`, and the run goes on to write its JSON.
#[allow(dead_code, clippy::unnecessary_wraps)]
pub fn check_figures(
    flag: &str,
    stem: &std::path::Path,
    names: &[covlab::study::FigureName],
) -> Result<(), Outcome> {
    for n in names {
        for p in n.paths(stem) {
            if let Err(e) = covlab::output::check_writable(&p) {
                eprintln!(
                    "warning: `{flag}`: {:#}; the JSON will be written, this figure not",
                    anyhow::Error::from(e)
                );
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Refuses a comma list of `flag` with a repeated entry (bad input naming the flag and the
/// entry): `--data grid9,grid9` would compute and report the same rows twice.
#[allow(dead_code)]
pub fn unique_list<T: PartialEq + std::fmt::Display>(
    flag: &'static str,
    items: &[T],
) -> Result<(), Outcome> {
    covlab::study::ensure_unique(flag.trim_start_matches('-'), items).map_err(param)
}

/// A parameter error as bad input, the key written as the flag (`--steps`).
#[allow(dead_code)]
pub fn param(e: covlab::study::ParamError) -> Outcome {
    Outcome::Bad(BadInput(anyhow::anyhow!(e.as_flag())))
}

/// A study error: bad input (exit 2) for the user's mistakes and, when `compute_is_bad`, for
/// every computation error too (the binaries whose computations fail only on bad input);
/// otherwise a failure (exit 1).
#[allow(dead_code)]
pub fn study_error(e: covlab::study::StudyError, compute_is_bad: bool) -> Outcome {
    use covlab::study::StudyError;
    match e {
        StudyError::BadParam(p) => param(p),
        e if e.is_bad_input() => Outcome::Bad(BadInput(e.into())),
        e @ StudyError::Covlab(_) if compute_is_bad => Outcome::Bad(BadInput(e.into())),
        e => Outcome::Failed(e.into()),
    }
}

/// A progress bar on stderr fed by a study's observer: one tick per cell, or the inner
/// progress (e.g. grid times) when the kind reports it.
#[allow(dead_code)]
pub struct Bar(pub indicatif::ProgressBar);

#[allow(dead_code)]
impl Bar {
    /// A bar with `total` cells and the template's prefix `what`.
    pub fn new(what: &str, total: usize) -> Self {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{spinner}} {what}: {{pos}}/{{len}} [{{elapsed_precise}} < {{eta_precise}}] {{msg}}"
            ))
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Self(bar)
    }
}

impl covlab::study::Observer for Bar {
    fn cell_started(&self, _index: usize, label: &str) {
        self.0.set_message(label.to_string());
    }
    fn cell_done(&self, _index: usize, _label: &str) {
        self.0.inc(1);
    }
}

/// Like [`Bar`], but showing the inner progress (grid times of a path-KL sweep).
#[allow(dead_code)]
pub struct InnerBar(pub indicatif::ProgressBar);

impl covlab::study::Observer for InnerBar {
    fn inner(&self, done: usize, total: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(done as u64);
    }
}

/// Saves the assembled figures under `stem` (creating directories) after the JSON is written:
/// a figure that cannot be drawn or written is reported on stderr and never fails the run (the
/// JSON is the result). Returns the files written.
#[allow(dead_code)]
pub fn save_figures(
    stem: &std::path::Path,
    figures: &[(String, covlab::study::Figure)],
) -> Vec<std::path::PathBuf> {
    let (written, errors) = covlab::study::figure::save_each(stem, figures);
    for (suffix, e) in errors {
        eprintln!(
            "warning: figure {}{suffix} not written: {:#}",
            stem.display(),
            anyhow::Error::from(e)
        );
    }
    written
}

/// The most worker threads a binary starts: results are identical for any count, and more
/// threads than this only cost memory (`--threads 100000` never finished starting).
#[allow(dead_code)]
pub const MAX_THREADS: usize = 1024;

/// The rayon pool of `--threads` (default: all cores): exit 2 for 0 or more than
/// [`MAX_THREADS`].
#[allow(dead_code)]
pub fn thread_pool(threads: Option<usize>) -> Result<rayon::ThreadPool, Outcome> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let n = threads.unwrap_or(cores);
    if n == 0 || n > MAX_THREADS {
        return Err(bad(anyhow::anyhow!(
            "`--threads`: must be in 1..={MAX_THREADS} (this machine has {cores} cores), got {n}"
        ))
        .into());
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map_err(|e| Outcome::Failed(e.into()))
}

/// diffusers' scheduler options, for `--schedule diffusers:<beta_schedule>` (and, for the
/// timestep rule, a schedule file without `timesteps`). Unset: diffusers' defaults.
#[allow(dead_code)]
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ScheduleFlags {
    /// diffusers' `num_train_timesteps` N (default 1000).
    #[arg(long)]
    pub num_train_timesteps: Option<usize>,
    /// diffusers' `beta_start` (default 1e-4; linear and scaled_linear).
    #[arg(long)]
    pub beta_start: Option<f64>,
    /// diffusers' `beta_end` (default 0.02; linear and scaled_linear).
    #[arg(long)]
    pub beta_end: Option<f64>,
    /// diffusers' `timestep_spacing`: leading (default), linspace or trailing.
    #[arg(long)]
    pub timestep_spacing: Option<String>,
    /// diffusers' `steps_offset` (default 0).
    #[arg(long)]
    pub steps_offset: Option<usize>,
}

#[allow(dead_code)]
impl ScheduleFlags {
    /// The options as the library takes them.
    pub fn options(&self) -> covlab::process::spec::DiffusersOptions {
        covlab::process::spec::DiffusersOptions {
            num_train_timesteps: self.num_train_timesteps,
            beta_start: self.beta_start,
            beta_end: self.beta_end,
            timestep_spacing: self.timestep_spacing.clone(),
            steps_offset: self.steps_offset,
        }
    }
}

/// Runs a study under a progress bar of its inner progress (`what`: the bar's label), prints
/// its table on stdout, then writes the JSON (the result) and the figures (which never fail the
/// run). Every computation error of these studies comes from their input: exit 2.
#[allow(dead_code)]
pub fn run_with_bar(
    study: &dyn covlab::study::StudyKind,
    what: &str,
    pool: &rayon::ThreadPool,
    json_path: &std::path::Path,
    fig_path: &std::path::Path,
) -> Result<(), Outcome> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {what}: grid times {{pos}}/{{len}} [{{elapsed_precise}} < {{eta_precise}}]"
        ))
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let obs = InnerBar(bar);
    let (out, _) = pool
        .install(|| covlab::study::run_all(study, &obs))
        .map_err(|e| study_error(e, true))?;
    obs.0.finish_and_clear();
    print!("{}", out.table);
    write_json(json_path, &out.doc).map_err(Outcome::Failed)?;
    for w in save_figures(fig_path, &out.figures) {
        eprintln!("wrote {}", w.display());
    }
    Ok(())
}
