//! Link step for every binary, test, bench and example of this package.
//!
//! torch-sys links `libtorch_cpu`/`libc10` but nothing references a symbol of `libtorch_cuda`, so
//! `--as-needed` drops CUDA and `tch::Cuda::is_available()` turns false on a GPU machine
//! (tch-rs#907). `--no-as-needed -ltorch` keeps `libtorch.so` (which needs `libtorch_cuda.so`), and
//! the rpath lets the binaries find libtorch without `LD_LIBRARY_PATH`. `DEP_TCH_LIBTORCH_LIB` is
//! only visible because `torch-sys` is a direct dependency.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // The PKU-MMD model is embedded in the binary when the checkout has it. The registry package
    // leaves it out (crates.io's 10 MB limit), and `skelseg train` then asks for `--init` or
    // `--from-scratch` instead of starting from it.
    println!("cargo:rustc-check-cfg=cfg(skelseg_bundled_pku)");
    println!("cargo:rerun-if-changed=fixtures/models/pku-mmd.safetensors");
    println!("cargo:rerun-if-changed=fixtures/models/pku-mmd.json");
    if ["fixtures/models/pku-mmd.safetensors", "fixtures/models/pku-mmd.json"]
        .iter()
        .all(|f| std::path::Path::new(f).is_file())
    {
        println!("cargo:rustc-cfg=skelseg_bundled_pku");
    }
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
        }
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}
