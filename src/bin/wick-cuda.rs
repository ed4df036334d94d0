//! `wick` built with `--features cuda`: the command line itself, started by the `wick` launcher
//! once it has found the CUDA libraries this binary links (see `src/main.rs`).

#[path = "../cli/mod.rs"]
mod cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
