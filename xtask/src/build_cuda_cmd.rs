//! `cargo xtask build-cuda`: a release binary with CUDA support, built on a
//! machine with or without a GPU.
//!
//! Two things stand between `cargo build --features cuda` and a binary that
//! can be copied to a GPU machine:
//!
//! - the CUDA toolkit. We use NVIDIA's PyPI wheels pinned to CUDA 13.0
//!   (nvcc 13.0.88): newer nvcc emits PTX that the 580 drivers cannot load.
//!   They install into `target/cuda-toolkit/` without root.
//! - candle 0.11.1 links the CUDA libraries at build time (cudarc's
//!   `dynamic-linking`, and `-lcudart` in candle-kernels), so its binary
//!   needs `libcuda.so` to link and to start, even on a machine that only
//!   ever uses the CPU. We build against a patched copy of the two crates
//!   (cudarc's `dynamic-loading`, the CUDA runtime linked statically),
//!   taken from cargo's registry into `target/cuda-patched/` and passed
//!   with `--config patch...`, so the workspace's manifests and the CPU
//!   build stay untouched. Patching was chosen over a stub `libcuda.so`
//!   because a stub still leaves the binary unable to start without the
//!   driver; with dynamic loading it starts anywhere and names the missing
//!   library only when a CUDA device is asked for.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The PyPI wheels of the CUDA 13.0 toolchain (nvcc and what it needs to
/// compile candle's and our kernels).
pub const TOOLKIT_WHEELS: &[&str] = &[
    "nvidia-cuda-nvcc==13.0.88",
    "nvidia-nvvm==13.0.88",
    "nvidia-cuda-crt==13.0.88",
    "nvidia-cuda-runtime==13.0.96",
    "nvidia-cuda-cccl==13.0.85",
];
const CANDLE_VERSION: &str = "0.11.1";

/// Where the CUDA toolkit comes from and what to compile for: shared by
/// `build-cuda` and `check-cuda`.
#[derive(Args)]
pub struct ToolkitArgs {
    /// CUDA toolkit root (holding bin/nvcc and include/) [default: $CUDA_HOME,
    /// else the wheels in target/cuda-toolkit/, installed on first use].
    #[arg(long, value_name = "DIR")]
    cuda_home: Option<PathBuf>,
    /// GPU compute capability to compile for (90: H100/H200).
    #[arg(long, default_value = "90")]
    compute_cap: String,
    /// Python used to install the toolkit wheels.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Only print the cargo command and environment, do not run it.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args)]
pub struct BuildCudaArgs {
    #[command(flatten)]
    toolkit: ToolkitArgs,
    /// Run clippy (-D warnings) on the whole workspace with CUDA instead of
    /// building, as CI does for the CPU build.
    #[arg(long)]
    clippy: bool,
}

/// `cargo xtask check-cuda`: the same toolkit and patched candle as
/// `build-cuda`, running `cargo check --features cuda` on the workspace.
#[derive(Args)]
pub struct CheckCudaArgs {
    #[command(flatten)]
    toolkit: ToolkitArgs,
}

/// What the cargo call with the CUDA toolkit does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `cargo build --release -p xtask --features cuda`.
    Build,
    /// `cargo clippy --workspace --all-targets` with CUDA, `-D warnings`.
    Clippy,
    /// `cargo check --workspace --all-targets` with CUDA.
    Check,
}

pub fn run(args: BuildCudaArgs) -> Result<()> {
    let mode = if args.clippy {
        Mode::Clippy
    } else {
        Mode::Build
    };
    run_mode(args.toolkit, mode)
}

/// `cargo xtask check-cuda`: type-checks every crate with the `cuda`
/// feature (the CUDA halves of the kernels included), without a GPU.
pub fn check(args: CheckCudaArgs) -> Result<()> {
    run_mode(args.toolkit, Mode::Check)
}

fn run_mode(args: ToolkitArgs, mode: Mode) -> Result<()> {
    let root = workspace_root()?;
    let target = root.join("target");
    let cuda_home = match args
        .cuda_home
        .clone()
        .or_else(|| std::env::var_os("CUDA_HOME").map(PathBuf::from))
    {
        Some(dir) => dir,
        None => install_toolkit(&target.join("cuda-toolkit"), &args.python)?,
    };
    let nvcc = cuda_home.join("bin").join("nvcc");
    if !nvcc.is_file() {
        bail!(
            "--cuda-home {}: no bin/nvcc there (expected a CUDA toolkit root)",
            cuda_home.display()
        );
    }
    let version = nvcc_version(&nvcc)?;
    if !version.starts_with("13.0") {
        errln!(
            "warning: nvcc {version}; CUDA 13.0 is the tested toolchain (newer PTX may not load on 580 drivers)"
        );
    }
    let patched = target.join("cuda-patched");
    let registry = registry_sources(&root)?;
    patch_candle(&registry, &patched)?;

    let path = format!(
        "{}:{}",
        cuda_home.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cccl = cuda_home.join("include").join("cccl");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root);
    match mode {
        Mode::Clippy | Mode::Check => {
            let command = if mode == Mode::Clippy {
                "clippy"
            } else {
                "check"
            };
            cmd.args([
                command,
                "--workspace",
                "--all-targets",
                "--features",
                "xtask/cuda",
            ]);
        }
        Mode::Build => {
            cmd.args(["build", "--release", "-p", "xtask", "--features", "cuda"]);
        }
    }
    cmd.arg("--target-dir")
        .arg(target.join("cuda"))
        .arg("--config")
        .arg(format!(
            "patch.crates-io.candle-core.path={:?}",
            patched.join("candle-core").display().to_string()
        ))
        .arg("--config")
        .arg(format!(
            "patch.crates-io.candle-kernels.path={:?}",
            patched.join("candle-kernels").display().to_string()
        ))
        .env("PATH", &path)
        .env("CUDA_HOME", &cuda_home)
        .env("CUDA_COMPUTE_CAP", &args.compute_cap)
        .env("GPICL_CUDA_LIB_DIR", cuda_home.join("lib"))
        .env("NVCC_APPEND_FLAGS", format!("-I{}", cccl.display()));
    if mode == Mode::Clippy {
        cmd.args(["--", "-D", "warnings"]);
    }
    errln!("CUDA toolkit: {} (nvcc {version})", cuda_home.display());
    errln!("running: {cmd:?}");
    if args.dry_run {
        return Ok(());
    }
    // The patch turns the two crates into path dependencies in Cargo.lock;
    // the workspace's lock file must stay the CPU build's.
    let lock = root.join("Cargo.lock");
    let saved_lock = std::fs::read(&lock).context("reading Cargo.lock")?;
    let status = cmd.status().context("running cargo");
    std::fs::write(&lock, saved_lock).context("restoring Cargo.lock")?;
    if !status?.success() {
        bail!("the CUDA build failed (see above)");
    }
    match mode {
        Mode::Clippy => {
            outln!("clippy found nothing in the CUDA build");
            return Ok(());
        }
        Mode::Check => {
            outln!("the workspace type-checks with the cuda feature");
            return Ok(());
        }
        Mode::Build => {}
    }
    let binary = target.join("cuda/release/xtask");
    outln!("built {}", binary.display());
    outln!(
        "copy it to the GPU machine and run `./xtask gpu-check`; it loads libcuda, libcublas, libcublasLt, libcurand and libnvrtc (CUDA 13) at run time (docs/gpu.md)"
    );
    Ok(())
}

fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(manifest
        .parent()
        .context("xtask lives inside the workspace")?
        .to_path_buf())
}

/// Installs the pinned wheels into `dir/venv` (once) and returns the
/// toolkit root inside it.
fn install_toolkit(dir: &Path, python: &str) -> Result<PathBuf> {
    let venv = dir.join("venv");
    let marker = dir.join("installed.txt");
    let wanted = TOOLKIT_WHEELS.join("\n");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
        errln!(
            "installing the CUDA 13.0 toolkit wheels into {} (PyPI, once)",
            venv.display()
        );
        let ok = Command::new(python)
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .with_context(|| format!("running `{python} -m venv`"))?
            .success();
        if !ok {
            bail!("`{python} -m venv {}` failed", venv.display());
        }
        let ok = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet"])
            .args(TOOLKIT_WHEELS)
            .status()
            .context("running pip")?
            .success();
        if !ok {
            bail!(
                "pip could not install {} (is PyPI reachable?); or pass --cuda-home",
                TOOLKIT_WHEELS.join(" ")
            );
        }
        std::fs::write(&marker, &wanted)?;
    }
    let lib = venv.join("lib");
    for entry in std::fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let root = entry?.path().join("site-packages/nvidia/cu13");
        if root.join("bin/nvcc").is_file() {
            return Ok(root);
        }
    }
    bail!("no nvidia/cu13/bin/nvcc under {}", lib.display())
}

fn nvcc_version(nvcc: &Path) -> Result<String> {
    let out = Command::new(nvcc)
        .arg("--version")
        .output()
        .with_context(|| format!("running {}", nvcc.display()))?;
    parse_nvcc_version(&String::from_utf8_lossy(&out.stdout))
}

/// `13.0` from `... Cuda compilation tools, release 13.0, V13.0.88 ...`.
fn parse_nvcc_version(text: &str) -> Result<String> {
    text.split("release ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .map(|v| v.trim().to_string())
        .with_context(|| format!("unexpected `nvcc --version` output: {text}"))
}

/// The folder of cargo's registry sources that holds candle
/// (`$CARGO_HOME/registry/src/<index>/`), fetching the crates first.
fn registry_sources(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(&cargo)
        .current_dir(root)
        .args(["fetch", "--locked"])
        .status()
        .context("running cargo fetch")?
        .success();
    if !ok {
        bail!("`cargo fetch --locked` failed");
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set")?;
    let src = home.join("registry/src");
    for entry in std::fs::read_dir(&src).with_context(|| format!("reading {}", src.display()))? {
        let dir = entry?.path();
        if dir
            .join(format!("candle-kernels-{CANDLE_VERSION}"))
            .is_dir()
            && dir.join(format!("candle-core-{CANDLE_VERSION}")).is_dir()
        {
            return Ok(dir);
        }
    }
    bail!(
        "candle-core and candle-kernels {CANDLE_VERSION} are not in {}; run `cargo fetch` with network",
        src.display()
    )
}

/// Copies candle-core and candle-kernels into `patched/` with the two
/// link-time changes (see the module docs). Fails loudly if the sources no
/// longer read as expected, rather than building something else.
fn patch_candle(registry: &Path, patched: &Path) -> Result<()> {
    for (krate, file, from, to) in [
        (
            "candle-core",
            "Cargo.toml",
            "    \"dynamic-linking\",\n",
            "    \"dynamic-loading\",\n",
        ),
        (
            "candle-kernels",
            "build.rs",
            "    println!(\"cargo:rustc-link-lib=dylib=cudart\");\n",
            concat!(
                "    // gpicl: link the CUDA runtime statically so that the binary starts on\n",
                "    // machines without CUDA; libcudart_static loads the driver on first use.\n",
                "    if let Ok(dir) = env::var(\"GPICL_CUDA_LIB_DIR\") {\n",
                "        println!(\"cargo:rustc-link-search=native={dir}\");\n",
                "    }\n",
                "    println!(\"cargo:rerun-if-env-changed=GPICL_CUDA_LIB_DIR\");\n",
                "    println!(\"cargo:rustc-link-lib=static=cudart_static\");\n",
                "    println!(\"cargo:rustc-link-lib=dylib=dl\");\n",
                "    println!(\"cargo:rustc-link-lib=dylib=rt\");\n",
                "    println!(\"cargo:rustc-link-lib=dylib=pthread\");\n",
            ),
        ),
    ] {
        let source = registry.join(format!("{krate}-{CANDLE_VERSION}"));
        let dest = patched.join(krate);
        let original = std::fs::read_to_string(source.join(file))
            .with_context(|| format!("reading {}", source.join(file).display()))?;
        if original.matches(from).count() != 1 {
            bail!(
                "{}: expected exactly one `{}`; candle changed, update xtask/src/build_cuda_cmd.rs",
                source.join(file).display(),
                from.trim()
            );
        }
        let edited = original.replace(from, to);
        // Copy once; rewrite the patched file only when it differs, so that
        // cargo does not rebuild candle on every call.
        if !dest.join(file).is_file() {
            copy_dir(&source, &dest)?;
        }
        if std::fs::read_to_string(dest.join(file)).ok().as_deref() != Some(edited.as_str()) {
            std::fs::write(dest.join(file), edited)?;
        }
    }
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gpicl_testing::absent_path;

    /// A registry folder holding just the two files the patch edits.
    fn fake_registry(root: &Path, core_toml: &str, kernels_build: &str) {
        let core = root.join(format!("candle-core-{CANDLE_VERSION}"));
        let kernels = root.join(format!("candle-kernels-{CANDLE_VERSION}/src"));
        std::fs::create_dir_all(&core).unwrap();
        std::fs::create_dir_all(&kernels).unwrap();
        std::fs::write(core.join("Cargo.toml"), core_toml).unwrap();
        std::fs::write(kernels.join("../build.rs"), kernels_build).unwrap();
        std::fs::write(kernels.join("lib.rs"), "// kernels").unwrap();
    }

    #[test]
    fn patching_candle_switches_to_dynamic_loading_and_a_static_cuda_runtime() {
        let root = absent_path("patch");
        let registry = root.join("registry");
        fake_registry(
            &registry,
            "features = [\n    \"nvrtc\",\n    \"dynamic-linking\",\n]\n",
            "fn main() {\n    println!(\"cargo:rustc-link-lib=dylib=cudart\");\n}\n",
        );
        let patched = root.join("patched");
        patch_candle(&registry, &patched).unwrap();
        let core = std::fs::read_to_string(patched.join("candle-core/Cargo.toml")).unwrap();
        assert!(
            core.contains("\"dynamic-loading\"") && !core.contains("dynamic-linking"),
            "{core}"
        );
        let build = std::fs::read_to_string(patched.join("candle-kernels/build.rs")).unwrap();
        assert!(
            build.contains("static=cudart_static") && !build.contains("dylib=cudart\""),
            "{build}"
        );
        assert!(
            patched.join("candle-kernels/src/lib.rs").is_file(),
            "the rest is copied"
        );
        // A second call leaves the patched files alone (no rebuild of candle).
        let before = std::fs::metadata(patched.join("candle-kernels/build.rs"))
            .unwrap()
            .modified()
            .unwrap();
        patch_candle(&registry, &patched).unwrap();
        let after = std::fs::metadata(patched.join("candle-kernels/build.rs"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(before, after);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_changed_candle_is_refused_rather_than_patched_blindly() {
        let root = absent_path("changed");
        let registry = root.join("registry");
        fake_registry(
            &registry,
            "features = [\"dynamic-loading\"]\n",
            "fn main() {}\n",
        );
        let err = patch_candle(&registry, &root.join("patched"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("candle changed") && err.contains("Cargo.toml"),
            "{err}"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_nvcc_release_is_read_from_its_version_banner() {
        let banner = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 13.0, V13.0.88\n";
        assert_eq!(parse_nvcc_version(banner).unwrap(), "13.0");
        assert!(parse_nvcc_version("command not found").is_err());
    }
}
