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
        wick = run_json([args.wick, "bench", "--finetune", "--pth", args.pth, "--device", args.device, "--json",
                         *common], env)[0]
        peer = [sys.executable, os.path.join(HERE, "finetune_peer.py"), "--device", args.device, *common]
        torch = run_json(peer, env)[0]
        bf16 = run_json(peer + ["--amp"], env)[0] if args.device.startswith("cuda") else None
        rows.append((wick, torch, bf16))
        if args.out:
            with open(args.out, "a") as f:
                for record in (wick, torch, bf16):
                    if record:
                        f.write(json.dumps(record) + "\n")

    threads = f", {args.threads} thread(s) each" if args.device == "cpu" else ""
    print(f"# fine-tuning step (forward, backward, SGD), images/s — {args.device}{threads}")
    print(f"# peer: {rows[0][1]['what']}")
    print("| input | batch | Wick | PyTorch eager f32 | Wick / PyTorch |" + (" PyTorch bf16 autocast |" if rows[0][2] else ""))
    print("|---|---|---|---|---|" + ("---|" if rows[0][2] else ""))
    for wick, torch, bf16 in rows:
        line = (f"| {wick['img_size']}² | {wick['batch']} | {wick['images_per_second']:.1f} "
                f"| {torch['images_per_second']:.1f} | {wick['images_per_second'] / torch['images_per_second']:.2f}× |")
        print(line + (f" {bf16['images_per_second']:.1f} |" if bf16 else ""))


if __name__ == "__main__":
    main()
