//! With the `cuda` feature, compiles `kernels/fused.cu` to PTX with nvcc (the
//! one ../shared/cuda/build-cuda.sh puts on PATH), for the compute capability
//! in CUDA_COMPUTE_CAP (default 90: H100/H200; bf16 tensor cores need 80+).
//! CPU builds need no CUDA toolkit.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=kernels/fused.cu");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let cap = std::env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let out = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("fused.ptx");
    let nvcc = std::env::var("NVCC").unwrap_or_else(|_| "nvcc".into());
    let status = std::process::Command::new(&nvcc)
        .args(["--ptx", "-O3", "-std=c++17", &format!("-arch=compute_{cap}"), "-o"])
        .arg(&out)
        .arg("kernels/fused.cu")
        .status()
        .unwrap_or_else(|e| {
            panic!("running {nvcc} for kernels/fused.cu: {e} (build with ../shared/cuda/build-cuda.sh)")
        });
    assert!(status.success(), "nvcc failed on kernels/fused.cu");
}
