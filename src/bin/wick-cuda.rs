//! `wick` built with `--features cuda`: the command line itself, started by the `wick` launcher
//! once it has found the CUDA libraries this binary links (see `src/main.rs`).

// mimalloc, for the reason in `wick::cli` (the allocator is the binary's to choose).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wick::cli::main()
}
