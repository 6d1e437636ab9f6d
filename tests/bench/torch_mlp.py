#!/usr/bin/env python3
"""The PyTorch twin of `dprun --model mlp`, timed the same way, for speed comparisons.

    python3 tests/bench/torch_mlp.py --hidden 256,128 --batch 256 --precision fp32|bf16
        [--steps 500] [--warmup 50] [--lr 0.01] [--momentum 0.9] [--device cuda]
        [--compile] [--ddp] [--sync-each-step]

Prints one JSON line on stdout (everything else goes to stderr):
    {"framework": "torch", "model": "mlp", "hidden": [...], "precision", "batch", "steps",
     "samples_per_s", "step_ms", "tflops", ...}

The model is what dprun builds for `--model mlp --hidden H1,H2,...` on `--data synthetic`:
Linear(784, H1) ReLU ... Linear(Hn, 10), softmax cross-entropy (mean over the batch), SGD
with momentum (PyTorch's rule, which dprun's SGD implements), fp32 master weights. The
initial values differ (dprun draws from its own Philox streams): they do not change the time.

Precision:
  fp32  plain fp32 GEMMs: TF32 is switched off, because dprun's fp32 uses
        CUBLAS_COMPUTE_32F (no TF32); otherwise PyTorch would run on tensor cores.
  bf16  torch.autocast(bfloat16) around forward and loss: bf16 GEMMs with fp32
        accumulation, fp32 weights, gradients and optimizer (what dprun --precision bf16 does).

The data are random tensors generated on the GPU before timing (a few batches, used in
turn): this measures the framework's step, not a data pipeline. dprun instead reads its
synthetic batches from a host data loader and copies them to the GPU every step; the
benchmark script reports dprun's time waiting for data so the difference can be seen.

Timing: `--warmup` untimed steps (cuBLAS heuristics, the caching allocator, torch.compile),
then `--steps` steps between two torch.cuda.synchronize() calls: step_ms is their mean, so
the GPU's queue is fully counted. By default nothing synchronises inside the loop (PyTorch
at its best eager); --sync-each-step reads the loss every step (loss.item()), as dprun
does when it reports its per-step loss.
"""
import argparse
import contextlib
import json
import sys
import time

# dprun's --data synthetic: 784 features, 10 classes (runtime/train/trainer.cpp).
SYNTHETIC_FEATURES = 784
SYNTHETIC_CLASSES = 10


def gemm_flops_per_sample(layers):
    """GEMM floating-point operations of one training step, per sample.

    Per Linear(i, o) and sample: forward y = x W^T is 2*i*o; backward is the weight
    gradient dW = dy^T x (2*i*o) and the input gradient dx = dy W (2*i*o). The first layer
    has no input gradient (the data need none: neither dprun nor PyTorch computes it), so

        flops/sample = sum over layers of 3 * 2 * i * o  -  2 * layers[0] * layers[1]

    and TFLOP/s = flops/sample * batch / step time. Bias, ReLU, loss and optimizer are not
    GEMMs and are not counted. tests/bench/bench_gpu_vs_torch.sh uses the same formula.
    """
    pairs = list(zip(layers[:-1], layers[1:]))
    return sum(6 * i * o for i, o in pairs) - 2 * pairs[0][0] * pairs[0][1]


def parse_sizes(text):
    try:
        sizes = [int(s) for s in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or any(s <= 0 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected comma-separated positive integers, e.g. 256,128")
    return sizes


def positive(text):
    v = int(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text}: must be > 0")
    return v


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=parse_sizes, default=[256, 128],
                   help="hidden sizes, as dprun --hidden (default 256,128)")
    p.add_argument("--batch", type=positive, default=256, help="samples per step")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--steps", type=positive, default=500, help="timed steps")
    p.add_argument("--warmup", type=int, default=50, help="untimed steps before timing")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--in-features", type=positive, default=SYNTHETIC_FEATURES)
    p.add_argument("--classes", type=positive, default=SYNTHETIC_CLASSES)
    p.add_argument("--data-batches", type=positive, default=4,
                   help="distinct random batches on the device, used in turn")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (cpu: dry runs)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--ddp", action="store_true",
                   help="wrap the model in DistributedDataParallel (world size 1), as dprun "
                        "runs its reducer even on one rank")
    p.add_argument("--sync-each-step", action="store_true",
                   help="read the loss on the host every step (loss.item()), as dprun does")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--label", default="mlp", help="the model name written to the JSON line")
    args = p.parse_args(argv)
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    return args


def main(argv):
    args = parse_args(argv)
    import torch  # late: --help and argument errors work without torch
    import torch.nn.functional as F
    from torch import nn

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("torch_mlp.py: torch.cuda.is_available() is False (no GPU, or a CPU-only "
              "PyTorch build)", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(args.seed)
    # Plain fp32 GEMMs (dprun's fp32 is CUBLAS_COMPUTE_32F); in bf16 only the autocast
    # GEMMs matter, and they are bf16 whatever this says.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")

    layers = [args.in_features] + args.hidden + [args.classes]
    mods = []
    for i, (fan_in, fan_out) in enumerate(zip(layers[:-1], layers[1:])):
        mods.append(nn.Linear(fan_in, fan_out))
        if i + 2 < len(layers):
            mods.append(nn.ReLU())
    model = nn.Sequential(*mods).to(device)

    if args.ddp:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel
        # One process, one rank: an in-process store needs no address, port or launcher.
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        model = DistributedDataParallel(
            model, device_ids=[device.index or 0] if device.type == "cuda" else None)
    if args.compile:
        model = torch.compile(model)

    # PyTorch's default SGD implementation for the device (foreach on CUDA).
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    if args.precision == "bf16":
        autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16)  # noqa: E731
    else:
        autocast = contextlib.nullcontext

    gen = torch.Generator(device=device).manual_seed(args.seed)
    data = [(torch.randn(args.batch, args.in_features, device=device, generator=gen),
             torch.randint(0, args.classes, (args.batch,), device=device, generator=gen))
            for _ in range(args.data_batches)]

    def step(k):
        x, y = data[k % len(data)]
        opt.zero_grad(set_to_none=True)
        with autocast():
            # cross_entropy runs in fp32 under autocast (it is on autocast's fp32 list).
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item() if args.sync_each_step else loss.detach()

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for k in range(args.warmup):
        step(k)
    synchronize()
    t0 = time.perf_counter()
    for k in range(args.steps):
        loss = step(k)
    synchronize()
    elapsed = time.perf_counter() - t0
    final_loss = float(loss)
    if args.ddp:
        torch.distributed.destroy_process_group()

    step_s = elapsed / args.steps
    flops = gemm_flops_per_sample(layers) * args.batch
    print(json.dumps({
        "framework": "torch",
        "model": args.label,
        "hidden": args.hidden,
        "layers": layers,
        "precision": args.precision,
        "batch": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "samples_per_s": args.batch / step_s,
        "step_ms": step_s * 1e3,
        "tflops": flops / step_s / 1e12,
        "final_loss": final_loss,
        "compile": args.compile,
        "ddp": args.ddp,
        "sync_each_step": args.sync_each_step,
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
