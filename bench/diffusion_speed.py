"""Diffusion UNet speed on this machine, side by side in one run (issue 11):

1. forward + backward of the UNet at the CPU recipe's batch (the digits run: 8x8x16 latents, conditional on 10
   classes), its FLOPs counted by torch.utils.flop_counter, as achieved GFLOP/s over the GFLOP/s of a same-run
   fp32 matmul (2048^3); and where the time goes (the profiler's top operators by self CPU time);
2. peak memory of one training step (forward, backward, Adam): the growth of the process's peak RSS over a
   training step, measured in a fresh child process from the kernel's resettable high-water mark (CPU has no
   allocator counter);
3. sampling seconds per 64 samples: DDIM 50 steps and (unless --no-ddpm) ancestral DDPM 1000 steps, at guidance 1
   (one forward per step) and 4 (conditional and unconditional in one batch of 128).

    OMP_NUM_THREADS=2 .venv/bin/python bench/diffusion_speed.py [--batch 64 --channels 64 --threads 2]
Prints JSON lines, then a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from inrkit.models import diffusion as D
from inrkit.models.unet import build_denoiser, unet_config


def denoiser(args) -> D.Denoiser:
    torch.manual_seed(0)
    net = build_denoiser(unet_config(latent=[8, 8, 16], classes=10, channels=args.channels, res_blocks=args.res_blocks,
                                     channel_mult=[int(v) for v in args.channel_mult.split(",")],
                                     attention=[int(v) for v in args.attention.split(",") if v], heads=args.heads))
    return D.Denoiser(net, D.alpha_bar_schedule("cosine"), classes=10,
                      probs=D.timestep_probabilities(D.T_DEFAULT, 3.0))


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / timed(lambda: a @ b, repeats) / 1e9


def training_step(model: D.Denoiser, opt, batch: int, gen: torch.Generator):
    x0 = torch.randn(batch, 8, 8, 16, generator=gen)
    labels = torch.randint(0, 10, (batch,), generator=gen)

    def step():
        loss = model.loss(x0, labels, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def unet_speed(args) -> dict:
    model = denoiser(args).train()
    opt = torch.optim.Adam(model.net.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    step = training_step(model, opt, args.batch, gen)
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops()
    seconds = timed(step, args.repeats)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    top = [dict(op=e.key, share=round(e.self_cpu_time_total / total, 3)) for e in events[:8]]
    params = sum(p.numel() for p in model.net.parameters())
    return dict(params=params, batch=args.batch, step_seconds=seconds, gflop_per_step=flops / 1e9,
                achieved_gflops=flops / seconds / 1e9, time_by_op=top)


def _status_mb(field: str) -> float:
    """A /proc/self/status memory line (VmRSS, VmHWM) in MB."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def peak_memory_child(args) -> None:
    """In a child process: the peak-RSS growth over three training steps (MB), after the model and optimizer
    exist. The peak is the kernel's high-water mark VmHWM, reset to the current RSS first (clear_refs 5); the
    getrusage maximum cannot be used here, since a child inherits its parent's across fork and exec."""
    model = denoiser(args).train()
    opt = torch.optim.Adam(model.net.parameters(), lr=1e-4)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 8, 8, 16)  # touch the allocator once
    del x
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _status_mb("VmRSS")
    step = training_step(model, opt, args.batch, gen)
    for _ in range(3):
        step()
    after = _status_mb("VmHWM")
    print(json.dumps(dict(rss_before_mb=before, rss_peak_mb=after, step_peak_mb=after - before)))


def sampling_speed(args) -> list[dict]:
    model = denoiser(args).eval()
    out = []
    labels = torch.arange(64) % 10
    for sampler, steps in (("ddim", 50),) + ((("ddpm", None),) if args.ddpm else ()):
        for scale in (1.0, 4.0):
            noise = D.SampleNoise(0, list(range(64)), (8, 8, 16))
            start = time.perf_counter()
            with torch.no_grad():
                D.SAMPLERS[sampler](model.guided(labels, scale), noise.initial(), model.alpha_bar, noise, steps=steps,
                                    eta=0.0 if sampler == "ddim" else 1.0)
            out.append(dict(sampler=sampler, steps=steps or D.T_DEFAULT, cfg=scale,
                            seconds_per_64=time.perf_counter() - start))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--res-blocks", type=int, default=2)
    ap.add_argument("--channel-mult", default="1,2")
    ap.add_argument("--attention", default="4")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-ddpm", dest="ddpm", action="store_false", help="skip timing DDPM-1000 sampling "
                    "(20x DDIM-50's network evaluations)")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        return peak_memory_child(args)
    mm = matmul_gflops()
    unet = unet_speed(args)
    mm_after = matmul_gflops()
    child = subprocess.run([sys.executable, __file__, "--memory-child", *sys.argv[1:]], capture_output=True,
                           text=True, check=True)
    memory = json.loads(child.stdout.strip().splitlines()[-1])
    sampling = sampling_speed(args)
    ratio = unet["achieved_gflops"] / ((mm + mm_after) / 2)
    report = dict(threads=args.threads, matmul_gflops_before=mm, matmul_gflops_after=mm_after, unet=unet,
                  ratio_to_matmul=ratio, memory=memory, sampling=sampling)
    print(json.dumps(report))
    print(f"\n| UNet ({unet['params'] / 1e6:.2f}M params), batch {args.batch} | value |\n|---|---:|")
    print(f"| fwd + bwd + Adam step | {unet['step_seconds'] * 1000:.1f} ms, {unet['gflop_per_step']:.2f} GFLOP |")
    print(f"| achieved | {unet['achieved_gflops']:.1f} GFLOP/s |")
    print(f"| fp32 matmul 2048^3, before / after | {mm:.1f} / {mm_after:.1f} GFLOP/s |")
    print(f"| ratio to matmul | {ratio:.2f} |")
    growth, peak = memory["step_peak_mb"], memory["rss_peak_mb"]
    print(f"| training-step peak RSS growth | {growth:.0f} MB (peak RSS {peak:.0f} MB) |")
    for s in sampling:
        print(f"| {s['sampler']} {s['steps']} steps, cfg {s['cfg']:g}: s per 64 samples | {s['seconds_per_64']:.2f} |")
    print("\nTime by operator (self CPU): " + ", ".join(f"{t['op']} {t['share']:.0%}" for t in unet["time_by_op"]))


if __name__ == "__main__":
    main()
