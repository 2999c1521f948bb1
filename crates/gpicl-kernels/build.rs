//! With the `cuda` feature, compiles `src/cuda/kernels.cu` to PTX for
//! `CUDA_COMPUTE_CAP` (default 90) with the `nvcc` on `PATH` (or `$NVCC`);
//! `src/cuda.rs` embeds it. Without the feature this does nothing, so the
//! CPU build needs no CUDA toolkit.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    println!("cargo:rerun-if-changed=src/cuda/kernels.cu");
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo:rerun-if-env-changed=NVCC");
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let cap = cap.trim().trim_start_matches("sm_").replace('.', "");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("gpicl_kernels.ptx");
    let status = std::process::Command::new(&nvcc)
        .args(["--ptx", "-O3", "-std=c++17"])
        .arg(format!("-arch=compute_{cap}"))
        .arg("src/cuda/kernels.cu")
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("gpicl-kernels: `{nvcc}` failed on src/cuda/kernels.cu ({s})"),
        Err(e) => panic!(
            "gpicl-kernels: the `cuda` feature needs nvcc (tried `{nvcc}`: {e}); \
             build with `cargo xtask build-cuda` (docs/gpu.md)"
        ),
    }
}
