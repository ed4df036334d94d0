"""Fine-tuning throughput: `wick bench --finetune` against PyTorch eager running the same recipe
(benches/finetune_peer.py) on the same device, in the same run; prints the ratio per input size.

    python3 benches/finetune.py                                  # CPU, one thread each, 64² batch 16
    python3 benches/finetune.py --device cuda --shapes 224x64,64x128 --iters 20   # what gpu-check.sh runs

Needs torch (`pip install torch`); the ImageNet checkpoint (scripts/fetch-weights.sh) for Wick.
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_json(cmd, env):
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def main():
    try:
        import torch  # noqa: F401  (the peer runs in its own process; fail here, clearly)
    except ImportError:
        sys.exit("benches/finetune.py needs PyTorch for its peer: pip install torch")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(HERE, "..", "target"))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wick", default=os.path.join(target, "release", "wick"))
    parser.add_argument("--pth", default=os.path.expanduser("~/.cache/wick/efficientnet-lite0-57934424.pth"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for both (CPU only)")
    parser.add_argument("--shapes", default="64x16", help="input size x batch, comma-separated")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--out", help="also append every JSON record to this file")
    args = parser.parse_args()

    env = dict(os.environ)
    if args.device == "cpu":
        for var in ("CANDLE_NUM_THREADS", "RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(args.threads)
    rows = []
    for shape in args.shapes.split(","):
        size, batch = shape.split("x")
        common = ["--img-size", size, "--batch", batch, "--warmup", str(args.warmup), "--iters", str(args.iters)]
        wick = [args.wick, "bench", "--finetune", "--pth", args.pth, "--device", args.device, "--json", *common]
        peer = [sys.executable, os.path.join(HERE, "finetune_peer.py"), "--device", args.device, *common]
        row = [run_json(wick, env)[0], run_json(peer, env)[0]]
        if args.device.startswith("cuda"):  # bf16 mixed precision: CUDA only in Candle
            row += [run_json(wick + ["--precision", "bf16"], env)[0], run_json(peer + ["--amp"], env)[0]]
        rows.append(row)
        if args.out:
            with open(args.out, "a") as f:
                f.writelines(json.dumps(record) + "\n" for record in row)

    threads = f", {args.threads} thread(s) each" if args.device == "cpu" else ""
    print(f"# fine-tuning step (forward, backward, SGD), images/s — {args.device}{threads}")
    print(f"# peer: {rows[0][1]['what']}")
    mixed = len(rows[0]) == 4
    print("| input | batch | Wick f32 | PyTorch eager f32 | Wick / PyTorch |"
          + (" Wick bf16 | PyTorch bf16 autocast | Wick / PyTorch |" if mixed else ""))
    print("|---|---|---|---|---|" + ("---|---|---|" if mixed else ""))
    for row in rows:
        line = f"| {row[0]['img_size']}² | {row[0]['batch']} |"
        for wick, torch in zip(row[::2], row[1::2]):
            w, t = wick["images_per_second"], torch["images_per_second"]
            line += f" {w:.1f} | {t:.1f} | {w / t:.2f}× |"
        print(line)


if __name__ == "__main__":
    main()
