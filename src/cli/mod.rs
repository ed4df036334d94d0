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
use shared::{check_outputs, plot_path, Output};
use wick::train::config::TrainConfig;

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

/// `wick cifar10 --img-size` by mode: the probe's from its measured accuracy/time trade-off on real
/// CIFAR-10 (README: 96 px is ~1.5× the time of 64 px for +8 points; 224 px, 2.7× more for +4 more),
/// fine-tuning's from what a CPU can train (BENCHMARKS.md).
const PROBE_IMG_SIZE: u32 = 96;
/// What `--out` and `--backbone-out` hold when Wick wrote them (replaced then, and only then).
const MODEL: Output = Output::Wick(wick::formats::classifier::FORMAT);
const BACKBONE: Output = Output::Wick(wick::formats::backbone_file::FORMAT);
const FINETUNE_IMG_SIZE: u32 = 64;

pub fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Predict { images, model, backbone, top, json, heatmap } => {
            predict::predict(&images, model.as_deref(), &backbone, top, json, heatmap.as_deref())
        }
        Command::Train { data, out, val, val_split, hyper, layers, check, cache, backbone, output } => (|| {
            layers.check(&hyper)?;
            let config = hyper.config()?;
            let layer_epochs = layers.layer_epochs.unwrap_or(config.layer_epochs);
            let config = TrainConfig { train_layers: layers.train_layers, layer_epochs, ..config };
            if config.train_layers == 0 {
                check_outputs(
                    &[("--out", &out, MODEL), ("the plot", &plot_path(&out), Output::Plot)],
                    &backbone.inputs(),
                )?;
                return train::train(
                    &data,
                    &out,
                    val.as_deref(),
                    val_split,
                    &config,
                    check,
                    &cache,
                    &backbone,
                    &output,
                );
            }
            let backbone_out = layers.backbone_path(&out);
            check_outputs(
                &[
                    ("--out", &out, MODEL),
                    ("--backbone-out", &backbone_out, BACKBONE),
                    ("the plot", &plot_path(&out), Output::Plot),
                ],
                &backbone.inputs(),
            )?;
            let augment = !layers.no_augment;
            train::train_layers(
                &data,
                &out,
                &backbone_out,
                val.as_deref(),
                val_split,
                &config,
                augment,
                check,
                &backbone,
                &output,
            )
        })(),
        Command::Eval { data, model, cache, backbone, output } => eval::eval(&data, &model, &cache, &backbone, &output),
        Command::Cifar10 {
            data,
            download,
            mode,
            img_size,
            limit,
            val_split,
            out,
            save_features,
            hyper,
            finetune,
            cache,
            backbone,
            output,
        } => {
            (|| {
                cifar10::check_cifar10_options(mode, &hyper, &finetune, &backbone)?;
                match mode {
                    Cifar10Mode::Probe => {
                        let config = hyper.config()?;
                        check_outputs(
                            &[("--out", &out, MODEL), ("the plot", &plot_path(&out), Output::Plot)],
                            &backbone.inputs(),
                        )?;
                        let (train, test) = cifar10::load_cifar10(&data, download, limit, output.quiet)?;
                        let outputs = cifar10::ProbeOutputs { model: &out, features: save_features.as_deref() };
                        cifar10::cifar10_probe(
                            &train,
                            &test,
                            img_size.unwrap_or(PROBE_IMG_SIZE),
                            val_split,
                            outputs,
                            &config,
                            &cache,
                            &backbone,
                            &output,
                        )
                    }
                    Cifar10Mode::Finetune => {
                        if save_features.is_some() {
                            anyhow::bail!("--mode finetune does not use --save-features (the features change as the network trains)");
                        }
                        let (checkpoint, backbone_out) = finetune.paths(&out);
                        check_outputs(
                            &[
                                ("--out", &out, MODEL),
                                ("--backbone-out", &backbone_out, BACKBONE),
                                (
                                    "--checkpoint",
                                    &checkpoint,
                                    match finetune.resume {
                                        true => Output::ReadFirst,
                                        false => Output::Wick(wick::formats::finetune_checkpoint::FORMAT),
                                    },
                                ),
                                ("the plot", &plot_path(&out), Output::Plot),
                            ],
                            &backbone.inputs(),
                        )?;
                        let (train, test) = cifar10::load_cifar10(&data, download, limit, output.quiet)?;
                        let precision = backbone.training_precision()?;
                        let config = hyper.finetune_config(img_size.unwrap_or(FINETUNE_IMG_SIZE), &finetune, precision);
                        cifar10::cifar10_finetune(&train, &test, &out, config, &finetune, &backbone, &output)
                    }
                }
            })()
        }
        Command::Convert { pth, out } => {
            check_outputs(&[("--out", &out, BACKBONE)], &[("--pth", &pth)]).and_then(|()| convert::convert(&pth, &out))
        }
        Command::Bench { backbone, batch, iters, head_data, head_fit, finetune, img_size, warmup, threads, json } => {
            if let Some(n) = threads {
                // Both pools candle uses read these when first touched.
                std::env::set_var("RAYON_NUM_THREADS", n.to_string());
                std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
            }
            match (head_data, head_fit) {
                (Some(dir), _) => bench::bench_head(&dir, iters, json),
                (_, Some(dir)) => bench::bench_head_fit(&dir, json),
                _ if finetune => backbone.training_precision().and_then(|precision| {
                    bench::bench_finetune(&backbone, &batch, &img_size, warmup, iters, precision, json)
                }),
                _ => bench::bench(&backbone, &batch, iters, json),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Lines stay lines; any other control character in a message (a name read from a file
            // or a folder) is printed as its escape.
            let message = format!("{e:#}");
            let lines: Vec<_> = message.split('\n').map(wick::util::printable).collect();
            eprintln!("error: {}", lines.join("\n"));
            ExitCode::FAILURE
        }
    }
}
