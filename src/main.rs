//! The `wick` command line (the library's `cli` module, `src/cli/`). (The web app is the library's wasm build: see `src/web/`.)
//!
//! With `--features cuda`, `wick` is a launcher and the command line is `wick-cuda`, next to it:
//! that binary links the NVIDIA driver and the CUDA libraries (Candle links them, it does not load
//! them), and where one is missing the dynamic loader kills it before it can say a word. The
//! launcher looks for each library first and says what is missing, then hands over to `wick-cuda`.

use std::process::ExitCode;

// mimalloc, for the reason in `wick::cli` (the allocator is the binary's to choose).
#[cfg(not(feature = "cuda"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(feature = "cuda"))]
fn main() -> ExitCode {
    wick::cli::main()
}

#[cfg(feature = "cuda")]
fn main() -> ExitCode {
    cuda_launcher::main()
}

#[cfg(feature = "cuda")]
mod cuda_launcher {
    use std::ffi::CString;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, ExitCode};

    /// The CUDA libraries `wick-cuda` links (its DT_NEEDED entries, CUDA 13 sonames; `readelf -d`
    /// shows them), and where each comes from. Loading libcublas also loads the libcublasLt it needs.
    const LIBRARIES: [(&str, &str); 4] = [
        ("libcuda.so.1", "the NVIDIA driver"),
        ("libcublas.so.13", "cuBLAS 13 with cuBLASLt: pip install nvidia-cublas"),
        ("libcurand.so.10", "cuRAND: pip install nvidia-curand"),
        ("libcudart.so.13", "the CUDA 13 runtime: pip install nvidia-cuda-runtime"),
    ];

    pub fn main() -> ExitCode {
        let missing: Vec<&(&str, &str)> = LIBRARIES.iter().filter(|(name, _)| !loadable(name)).collect();
        if !missing.is_empty() {
            eprintln!("error: no CUDA available: this is Wick's CUDA build, and this machine lacks");
            for (name, source) in missing {
                eprintln!("  {name} ({source})");
            }
            eprintln!(
                "Install the NVIDIA driver and the CUDA 13 libraries (or add the folders that hold them to \
                 LD_LIBRARY_PATH), or use a CPU build: cargo build --release"
            );
            return ExitCode::FAILURE;
        }
        let cli = std::env::current_exe().map(|exe| exe.with_file_name("wick-cuda"));
        let error = match &cli {
            Ok(cli) => Command::new(cli).args(std::env::args_os().skip(1)).exec(),
            Err(e) => std::io::Error::new(e.kind(), e.to_string()),
        };
        eprintln!("error: cannot start wick-cuda (it belongs next to wick): {error}");
        ExitCode::FAILURE
    }

    /// Whether the dynamic loader finds `name` (the way it would for `wick-cuda`).
    fn loadable(name: &str) -> bool {
        let name = CString::new(name).expect("no NUL in a library name");
        // SAFETY: dlopen/dlclose on a valid C string; the handle is closed at once and never used.
        unsafe {
            let handle = libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
            if handle.is_null() {
                return false;
            }
            libc::dlclose(handle);
        }
        true
    }
}
