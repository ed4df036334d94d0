//! The `wick` command line: thin commands over the library (`wick predict`, `train`, `eval`,
//! `cifar10`, `convert`, `bench`). Built as the `wick` binary, and with `--features cuda` as
//! `wick-cuda` (see `src/main.rs` for why).

mod bench;
mod cifar10;
mod convert;
mod eval;
mod flags;
mod predict;
mod shared;
mod train;

use std::process::ExitCode;

use clap::Parser;
use flags::{Cifar10Mode, Cli, Command};
use shared::check_outputs;

/// mimalloc (the binaries' allocator) gives freed memory back to the OS after 10 ms. Training frees
/// and allocates the same large tensors on every step, and every page given back is faulted in and
/// zeroed by the kernel again: two thirds of a CPU fine-tuning step went there. Keep it instead.
fn keep_freed_memory() {
    extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15; // `mi_option_purge_delay` in mimalloc v2's mimalloc.h
                                                       // SAFETY: sets a plain integer option; mimalloc reads options at every purge decision.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

pub fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Predict { images, model, backbone, top, json } => {
            predict::predict(&images, model.as_deref(), &backbone, top, json)
        }
        Command::Train { data, out, val, val_split, hyper, cache, backbone, output } => {
            check_outputs(&[("--out", &out)], &backbone.inputs()).and_then(|()| {
                train::train(&data, &out, val.as_deref(), val_split, &hyper.config(), &cache, &backbone, &output)
            })
        }
        Command::Eval { data, model, cache, backbone, output } => eval::eval(&data, &model, &cache, &backbone, &output),
        Command::Cifar10 {
            data,
            download,
            mode,
            img_size,
            limit,
            val_split,
            out,
            hyper,
            finetune,
            cache,
            backbone,
            output,
        } => cifar10::check_cifar10_options(mode, &hyper, &finetune, &backbone)
            .and_then(|()| match mode {
                Cifar10Mode::Probe => check_outputs(&[("--out", &out)], &backbone.inputs()),
                Cifar10Mode::Finetune => {
                    let (checkpoint, backbone_out) = finetune.paths(&out);
                    check_outputs(
                        &[("--out", &out), ("--backbone-out", &backbone_out), ("--checkpoint", &checkpoint)],
                        &backbone.inputs(),
                    )
                }
            })
            .and_then(|()| cifar10::load_cifar10(&data, download, limit, output.quiet))
            .and_then(|(train, test)| match mode {
                Cifar10Mode::Probe => cifar10::cifar10_probe(
                    &train,
                    &test,
                    img_size,
                    val_split,
                    &out,
                    &hyper.config(),
                    &cache,
                    &backbone,
                    &output,
                ),
                Cifar10Mode::Finetune => cifar10::cifar10_finetune(
                    &train,
                    &test,
                    &out,
                    hyper.finetune_config(img_size, &finetune),
                    &finetune,
                    &backbone,
                    &output,
                ),
            }),
        Command::Convert { pth, out } => {
            check_outputs(&[("--out", &out)], &[("--pth", &pth)]).and_then(|()| convert::convert(&pth, &out))
        }
        Command::Bench { backbone, batch, iters, head_data, finetune, img_size, warmup, precision, threads, json } => {
            if let Some(n) = threads {
                // Both pools candle uses read these when first touched.
                std::env::set_var("RAYON_NUM_THREADS", n.to_string());
                std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
            }
            match head_data {
                Some(dir) => bench::bench_head(&dir, iters, json),
                None if finetune => bench::bench_finetune(&backbone, &batch, &img_size, warmup, iters, precision, json),
                None => bench::bench(&backbone, &batch, iters, json),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
