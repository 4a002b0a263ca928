//! Link step for every binary, test, bench and example of this package.
//!
//! torch-sys links `libtorch_cpu`/`libc10` but nothing references a symbol of `libtorch_cuda`, so
//! `--as-needed` drops CUDA and `tch::Cuda::is_available()` turns false on a GPU machine
//! (tch-rs#907). `--no-as-needed -ltorch` keeps `libtorch.so` (which needs `libtorch_cuda.so`), and
//! the rpath lets the binaries find libtorch without `LD_LIBRARY_PATH`. `DEP_TCH_LIBTORCH_LIB` is
//! only visible because `torch-sys` is a direct dependency.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
        }
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg=-ltorch");
    }
}
