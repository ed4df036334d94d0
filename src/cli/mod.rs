//! The `wick` command line: thin commands over the library (`wick predict`, `train`, `eval`,
//! `cifar10`, `convert`, `export`, `bench`), each an args struct with a `run` in its own file; [`main`] is
//! the whole program of both binaries, `wick` and, with `--features cuda`, `wick-cuda` (see
//! `src/main.rs` for why there are two).
//!
//! Both binaries take mimalloc as their allocator: glibc's malloc hands large blocks back to the
//! OS and page-faults them in again on nearly every tensor op; mimalloc keeps them (head training
//! ran 3× faster, the backbone ~5% faster).

mod bench;
mod cifar10;
mod convert;
mod eval;
mod export;
mod flags;
mod predict;
mod shared;
mod train;

use std::process::ExitCode;

use clap::Parser;
use flags::{Cli, Command};

/// mimalloc (the binaries' allocator) gives freed memory back to the OS after 10 ms. Training frees
/// and allocates the same large tensors on every step, and every page given back is faulted in and
/// zeroed by the kernel again: two thirds of a CPU fine-tuning step went there. Keep it instead.
fn keep_freed_memory() {
    extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // `mi_option_purge_delay` in mimalloc v2's mimalloc.h.
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    // SAFETY: sets a plain integer option; mimalloc reads options at every purge decision.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// Candle's element-wise ops run on its own threads, which spin 25,000 times after each op before
/// they sleep; the training kernels run on the rayon pool in between, and on two cores the spinning
/// thread took a core from them (a fine-tuning step at two threads ran 1.2× one thread's speed).
/// A short spin keeps the next op's wake-up cheap and gives the core back: 1.17–2.0× more images/s
/// at 64², 1.04–1.31× at 128², two threads (Lite0, batch 16, AMD EPYC, 2026-12-07, three
/// alternating rounds). A value the user set stays.
fn shorten_candle_spin() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_none() {
        std::env::set_var(VAR, "1000");
    }
}

pub fn main() -> ExitCode {
    keep_freed_memory();
    shorten_candle_spin();
    let result = match Cli::parse().command {
        Command::Predict(args) => args.run(),
        Command::Train(args) => args.run(),
        Command::Eval(args) => args.run(),
        Command::Cifar10(args) => args.run(),
        Command::Convert(args) => args.run(),
        Command::Export(args) => args.run(),
        Command::Bench(args) => args.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Lines stay lines; any other control character in a message (a name read from a file
            // or a folder) is printed as its escape.
            let message = format!("{e:#}");
            let lines: Vec<_> = message.split('\n').map(crate::util::printable).collect();
            eprintln!("error: {}", lines.join("\n"));
            ExitCode::FAILURE
        }
    }
}
