//! Helpers shared by the commands: logging, JSON output, devices, bundled defaults.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use tracing_subscriber::EnvFilter;

/// The bundled model trained on synthetic data (`fixtures/models/synth.*`), embedded in the
/// binary so that an installed `skelseg` needs no checkout; written out on first use (see
/// [`bundled_dir`]).
pub fn bundled_model() -> Result<PathBuf> {
    Ok(bundled_dir()?.join("models/synth.safetensors"))
}

/// The bundled PKU-MMD model (`fixtures/models/pku-mmd.*`, 52 classes of daily actions), the
/// backbone `train` starts from by default.
pub fn bundled_pku_model() -> Result<PathBuf> {
    if BUNDLED_PKU.is_empty() {
        anyhow::bail!(
            "this build of skelseg has no bundled PKU-MMD model (the crates.io package leaves it \
             out): give --init MODEL (e.g. fixtures/models/pku-mmd.safetensors from the \
             repository) or --from-scratch"
        );
    }
    Ok(bundled_dir()?.join("models/pku-mmd.safetensors"))
}

/// The bundled synthetic sequence (PKU-MMD format, with its label file), embedded like the model.
pub fn bundled_sequence() -> Result<PathBuf> {
    Ok(bundled_dir()?.join("skeleton/synth_0000.txt"))
}

/// The embedded files, by their path under the bundled folder.
const BUNDLED: [(&str, &[u8]); 4] = [
    ("models/synth.safetensors", include_bytes!("../../../fixtures/models/synth.safetensors")),
    ("models/synth.json", include_bytes!("../../../fixtures/models/synth.json")),
    ("skeleton/synth_0000.txt", include_bytes!("../../../fixtures/synth/skeleton/synth_0000.txt")),
    ("label/synth_0000.txt", include_bytes!("../../../fixtures/synth/label/synth_0000.txt")),
];

/// The PKU-MMD model, embedded when the checkout has it (see `build.rs`): the registry package
/// leaves it out to stay under crates.io's size limit.
#[cfg(skelseg_bundled_pku)]
const BUNDLED_PKU: &[(&str, &[u8])] = &[
    ("models/pku-mmd.safetensors", include_bytes!("../../../fixtures/models/pku-mmd.safetensors")),
    ("models/pku-mmd.json", include_bytes!("../../../fixtures/models/pku-mmd.json")),
];
#[cfg(not(skelseg_bundled_pku))]
const BUNDLED_PKU: &[(&str, &[u8])] = &[];

/// Where the embedded files are written for the code that reads files:
/// `$XDG_CACHE_HOME/skelseg/bundled-VERSION`, else `~/.cache/skelseg/bundled-VERSION`, else the
/// system's temporary folder. A file that differs from the embedded bytes (another build of the
/// same version) is replaced; each file is written under a unique name and renamed into place,
/// so concurrent runs never see half a file.
pub fn bundled_dir() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|d| !d.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join("skelseg").join(concat!("bundled-", env!("CARGO_PKG_VERSION")));
    for &(rel, bytes) in BUNDLED.iter().chain(BUNDLED_PKU) {
        let path = dir.join(rel);
        if std::fs::read(&path).is_ok_and(|on_disk| on_disk == bytes) {
            continue;
        }
        let parent = path.parent().unwrap_or(&dir);
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {} for the bundled model", parent.display()))?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("moving {} into place", path.display()))?;
    }
    Ok(dir)
}

/// Whether log lines on stderr get ANSI colours: only on a terminal, and never when `NO_COLOR`
/// is set to anything but the empty string (<https://no-color.org>).
pub fn log_colours(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Logs to stderr; `-v` raises the level, `RUST_LOG` overrides it. Colours as [`log_colours`]
/// says, so a log piped to a file or a CI console holds no escape codes.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = log_colours(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

/// Prints `value` as one JSON object on stdout.
pub fn print_json(value: &impl Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, value).context("writing JSON")?;
    writeln!(out).context("writing JSON")?;
    Ok(())
}

/// Refuses to start when stdout is redirected into the metadata file (`M.json`) that the
/// command writes beside the checkpoint `weights` (`M.safetensors`): `train --out M.safetensors
/// --json > M.json` would put the report where the metadata goes, and one of the two would be
/// lost. The error suggests `M.report.json` instead.
pub fn ensure_stdout_is_not_metadata_of(weights: &Path) -> Result<()> {
    let meta = skelseg::model::checkpoint::meta_path(weights);
    if stdout_is(&meta) {
        anyhow::bail!(
            "stdout is redirected to {}, the file this command writes its checkpoint metadata \
             to: redirect the report elsewhere (e.g. `> {}`)",
            meta.display(),
            weights.with_extension("report.json").display()
        );
    }
    Ok(())
}

/// Whether stdout is the regular file `file` (same device and inode).
#[cfg(unix)]
fn stdout_is(file: &Path) -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Ok(fd) = std::io::stdout().as_fd().try_clone_to_owned() else { return false };
    let (Ok(out), Ok(target)) = (std::fs::File::from(fd).metadata(), std::fs::metadata(file))
    else {
        return false;
    };
    out.is_file() && (out.dev(), out.ino()) == (target.dev(), target.ino())
}

#[cfg(not(unix))]
fn stdout_is(_file: &Path) -> bool {
    false
}

/// Where to run the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// CUDA when libtorch reports a GPU, else CPU.
    #[default]
    Auto,
    /// CPU.
    Cpu,
    /// The first CUDA device.
    Cuda,
}

impl DeviceArg {
    /// The tch device; `cuda` without a GPU is an error.
    pub fn device(self) -> Result<tch::Device> {
        match self {
            DeviceArg::Auto => Ok(tch::Device::cuda_if_available()),
            DeviceArg::Cpu => Ok(tch::Device::Cpu),
            DeviceArg::Cuda if tch::Cuda::is_available() => Ok(tch::Device::Cuda(0)),
            DeviceArg::Cuda => anyhow::bail!("--device cuda: libtorch sees no CUDA device"),
        }
    }
}

/// Name of a device for reports.
pub fn device_name(device: tch::Device) -> String {
    match device {
        tch::Device::Cpu => format!("cpu ({} threads)", tch::get_num_threads()),
        tch::Device::Cuda(i) => format!("cuda:{i}"),
        other => format!("{other:?}"),
    }
}

/// The `--viz` option: where to show the stream (Rerun).
#[derive(Clone, Debug, clap::Args)]
pub struct VizArgs {
    /// Show skeletons, labels, probabilities and segments in Rerun: `off`, `spawn` (needs the
    /// `rerun` viewer on PATH), `connect[:URL]` (a running viewer) or `save:PATH` (an .rrd file).
    #[cfg(feature = "viz")]
    #[arg(long, default_value = "off")]
    pub viz: skelseg::viz::VizTarget,
}

/// A running visualiser (or none) and the tap that feeds it.
pub struct Viz {
    #[cfg(feature = "viz")]
    inner: Option<skelseg::viz::Visualizer>,
    /// Feed this to the pipeline or the segmenter.
    pub tap: skelseg::stream::VizTap,
}

impl VizArgs {
    /// Starts the visualiser the arguments ask for.
    pub fn start(&self, classes: &skelseg::io::ClassMap) -> Result<Viz> {
        #[cfg(feature = "viz")]
        {
            let inner = skelseg::viz::Visualizer::start(&self.viz, "skelseg", classes)?;
            let tap = inner.as_ref().map_or_else(skelseg::stream::VizTap::off, |v| {
                skelseg::stream::VizTap::new(v.sender())
            });
            Ok(Viz { inner, tap })
        }
        #[cfg(not(feature = "viz"))]
        {
            let _ = classes;
            Ok(Viz { tap: skelseg::stream::VizTap::off() })
        }
    }
}

impl Viz {
    /// Flushes and closes the visualiser, reporting dropped messages.
    pub fn finish(self) -> Result<()> {
        #[cfg(feature = "viz")]
        if let Some(v) = self.inner {
            let dropped = v.dropped();
            if dropped > 0 {
                tracing::warn!(dropped, "the visualiser could not keep up and dropped messages");
            }
            v.finish()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(log_colours(true, None));
        assert!(log_colours(true, Some(OsStr::new(""))));
        assert!(!log_colours(true, Some(OsStr::new("1"))));
        assert!(!log_colours(false, None));
    }
}
