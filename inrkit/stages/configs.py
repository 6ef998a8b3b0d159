"""The training stages' options, each written once: name, default, help, and whether a resumed run must match it.

`inrkit fit`, `inrkit meta` and `inrkit train-gan` declare their command-line options from these dataclasses,
recipes (recipes/*.json, `--config FILE[#VARIANT]`) set their fields, and the stages build them. The end-of-line
comments are the stages' own (they cite the papers); `help` is what `--help` prints. `resume=True` marks the
options that change what is learned: a rerun that resumes a run must give the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inrkit.core.config import option
from inrkit.core.precision import COMPILE_HELP, PRECISION_HELP

DEVICE_HELP = "auto | cpu | cuda"


@dataclass
class FitConfig:
    """`inrkit fit`: one signal, one coordinate network (LoE supp. A's settings by default)."""

    signal: str = option(help="Image file, folder of frames, animated GIF, or builtin:NAME.", resume=True)
    out: Path = option(Path("out/field.safetensors"), "Field artifact to write.")  # pictures go to a folder beside it
    arch: str = option("loe", "siren | pe | pe-ce | loe (pe-ce: the PE MLP plus a learnable coordinate embedding, "
                       "linearly interpolated inside [0, 1] and clamped outside).", resume=True)
    width: int = option(64, "Hidden channels.", resume=True)  # LoE supp. A: 64
    widths: str | None = option(None, "Per-layer hidden channels, depth - 1 values (pe, pe-ce, loe), e.g. "
                                "512,384,256,256,256,256,256; overrides --width.", metavar="W1,W2,...",
                                resume=True)  # supp. B; None: --width throughout (and in older runs)
    depth: int = option(10, "Linear layers in all.", resume=True)  # LoE supp. A: 10, of which 9 position-dependent
    tile: int = option(2, "LoE: candidate weights per axis (N; N^d per layer).", resume=True)
    tiles: str | None = option(None, "LoE: candidates per axis of each position-dependent layer, depth - 1 values, "
                               "e.g. 2,4,4,4,4; overrides --tile.", metavar="N1,N2,...",
                               resume=True)  # supp. C: 2^3 on layer 1, 4^3 on the next 4
    blend: str = option("nearest", "LoE blending: nearest | linear.", resume=True)  # nearest (Eq. 5) or linear (Eq. 4)
    arrangement: str = option("coarse-to-fine", "LoE grid scales: coarse-to-fine (s_i = N_1...N_i: Table 9's N^i, "
                              "supp. A, and supp. C with tiles 2,4,4,4,4) | table6 (supp. B: 4, 8, 32, ... = "
                              "4^(i-1) x 2) | fine-to-coarse | interleaved | chunked | random-affine; multi-scale "
                              "rules stop at the pixel pitch.", resume=True)  # supp. Tables 5, 6, 9
    scales: str | None = option(None, "LoE: explicit grid scale of each position-dependent layer (A_i = s_i I), "
                                "depth - 1 values, e.g. 2,8,32,128,512; overrides --arrangement.",
                                metavar="S1,S2,...", resume=True)
    frequencies: int = option(8, "Positional-encoding frequencies L (LoE: 0 = constant input).", resume=True)
    ce_channels: int | None = option(None, "pe-ce: embedding channels (default 128 for images, 64 for video).",
                                     resume=True)  # supp. B: 128; supp. C: 64
    ce_size: int | None = option(None, "pe-ce: embedding samples per axis (default 256 for images, 64 for "
                                 "video).", resume=True)  # supp. B: 256 x 256; supp. C: 64^3
    w0: float = option(30.0, "SIREN w0 (first and hidden layers).", resume=True)
    steps: int = option(2000, "Optimisation steps; the schedule depends on it, so resuming needs the same.",
                        resume=True)
    seconds: float | None = option(None, "Stop this run after this much wall time (with a snapshot); rerun to "
                                   "continue.")
    tick: int = option(50, "Steps per tick (status line, stats record).")
    snapshot: int = option(1000, "Steps between snapshots (artifact, pictures, training state).")
    lr: float | None = option(None, "Learning rate (default 5e-3 for pe/loe, 1e-4 for siren).",
                              resume=True)  # DEFAULT_LR
    betas: str | None = option(None, "Adam (beta1, beta2); default 0.9,0.995 (LoE supp. A); supp. B/C use "
                               "0.9,0.999.", metavar="B1,B2", resume=True)  # None: supp. A's (and older runs')
    lr_decay: float = option(0.1, "Multiply the learning rate by this ...", resume=True)
    lr_decay_at: float = option(0.5, "... after this fraction of the steps.",
                                resume=True)  # supp. A: 5e-3 -> 5e-4 halfway
    batch_pixels: int = option(0, "Random pixels per step; 0 = the full grid every step.", resume=True)  # 0: supp. A
    size: str | None = option(None, "Resample the target to N or HxW.", metavar="N|HxW",
                              resume=True)  # parsed by the stage
    seed: int = option(0, "Initialisation and pixel sampling.", resume=True)
    device: str = option("auto", DEVICE_HELP)
    precision: str = option("auto", PRECISION_HELP)  # not a resume mark: a run may go on elsewhere (core/precision)
    compile: bool = option(False, COMPILE_HELP)
    progress: bool = option(True, "Show a progress bar.", cli=False)


@dataclass
class MetaConfig:
    """`inrkit meta`: spatial functa (Bauer et al. 2023) meta-learned with a Meta-SGD inner loop."""

    data: str = option(help="Training images: a folder, .zip, shards or builtin:NAME.", resume=True)
    out: Path = option(Path("out/functa.safetensors"), "functa-model artifact; run folder beside it.")
    arch: str = option("spatial-functa", "spatial-functa | functa (flat latent) | ginr (locality-aware GINR).",
                       resume=True)
    latent: str = option("8x8x16", "Latent shape SxSxC, e.g. 8x8x16; C alone is a flat functa.", resume=True,
                         metavar="SxSxC")  # App. C.1: 8x8x16 or 4x4x64 on CIFAR-10
    interp: str = option("nearest", "nearest (per-patch coordinates) | bilinear (binary coordinates).",
                         resume=True)  # App. C
    kernel: int = option(1, "Latent-to-modulation convolution: 1 (1x1) or 3 (3x3).", resume=True)  # 3x3: Tab. 3*
    resolution: int = option(32, "Image side; the latent side must divide it.", resume=True)
    channels: int = option(3, "3 (RGB) or 1 (grey).", resume=True)
    width: int = option(256, "SIREN width.", resume=True)  # Tab. 4: 256
    depth: int = option(6, "SIREN linear layers in all.", resume=True)  # Tab. 4: 6 for 8x8 latents
    w0: float = option(10.0, "SIREN omega_0.", resume=True)  # App. C.1: 10
    coords: str = option("unit", "SIREN input: unit (App. C: patch coordinates in [0, 1], bits in {0, 1}) | "
                         "signed (the same mapped to [-1, 1]).", resume=True)  # App. C; signed: inrkit before #11
    siren_bias: str = option("zero", "SIREN bias init: zero (functa code) | uniform (Sitzmann et al.).",
                             resume=True)  # B.1: the reference code's zero biases
    # --arch ginr: locality-aware generalizable INR (Lee et al. 2023); defaults are App. A's 178 x 178 setting
    patch: int = option(9, "GINR: patch side of the encoder (zero padding where it does not divide).",
                        resume=True)  # App. A: 9 for 178 px (400 patches), 16 for 256, 32 for 512, 48 for 1024
    tokens: int = option(256, "GINR: latent tokens R.", resume=True)  # App. A: 256
    encoder_width: int = option(768, "GINR: encoder Transformer width.", resume=True)  # App. A: 12 heads of 64
    encoder_depth: int = option(6, "GINR: encoder Transformer blocks.", resume=True)  # App. A: 6
    encoder_heads: int = option(12, "GINR: encoder attention heads.", resume=True)  # App. A: 12
    dim: int = option(256, "GINR: decoder width d (and the tokens' width).", resume=True)  # App. A: 256
    features: int = option(256, "GINR: frequency features per bandwidth.", resume=True)  # App. A: d_F = 256
    sigmas: str = option("128,32", "GINR: modulation bandwidths sigma_1,...,sigma_L.", resume=True,
                         metavar="S1,S2,...")  # App. A: (128, 32); (256, 64) for FFHQ 1024
    sigma_q: float = option(16.0, "GINR: bandwidth of the attention query.", resume=True)  # App. A: 16 (1024: 32)
    decoder_heads: int = option(2, "GINR: heads of selective token aggregation.", resume=True)  # App. A: 2/4/8
    selective: bool = option(True, "GINR: selective token aggregation (off: IPC's pattern composer, Table 3).",
                             resume=True)
    multiband: bool = option(True, "GINR: multi-band modulation (off: a plain MLP stack, Table 3).", resume=True)
    fraction: float = option(1.0, "GINR: fraction of each image's pixels supervised per step.",
                             resume=True)  # App. A: 0.1 for FFHQ 1024
    inner_steps: int = option(3, "Inner SGD steps from zero latents.", resume=True)  # Sec. 4: 3
    first_order: bool = option(False, "Gradients through the inner loop: second order by default.",
                               resume=True)  # treat inner gradients as constants (no second-order terms)
    checkpointed: bool = option(False, "Recompute inner-loop activations in the backward (less memory).")
    lr: float = option(3e-5, "Outer Adam learning rate.", resume=True)  # Tab. 4: 3e-5 for 8x8x16 1-NN
    batch: int = option(128, "Images per outer step over all processes.", resume=True)  # App. C.1: 128
    steps: int = option(200_000, "Outer steps in all; rerun with more to extend.")  # App. C.1: 200k for 8x8 latents
    seconds: float | None = option(None, "Stop this run after this many seconds of training.")  # then snapshot
    snapshot: int = option(1000, "Steps between snapshots.")  # model, state, picture
    tick: int = option(100, "Outer steps per tick (status line, stats record).")
    count: int | None = option(None, "Use the first N training images.", resume=True)  # default: all
    heldout: str | None = option(None, "Held-out images for the final functaset (default: the heldout split of a "
                                 "builtin: set).")
    heldout_count: int | None = option(None, "Use the first N held-out images.")
    functasets: bool = option(True, "Encode the training and held-out sets at the end.")
    labels: bool = option(False, "Store class labels (sub-folder names, digits, ...) in those functasets.")
    encode_steps: int = option(3, "Inner steps when encoding the functasets.")
    encode_batch: int = option(64, "Images per encoding batch.", cli=False)
    workers: int = option(2, "Data-decoding processes.")
    seed: int = option(0, "Initialisation and data order.", resume=True)
    device: str = option("auto", DEVICE_HELP)
    precision: str = option("auto", PRECISION_HELP)  # not a resume mark: a run may go on elsewhere (core/precision)
    compile: bool = option(False, COMPILE_HELP)
    progress: bool = option(True, "Show a progress bar.", cli=False)


@dataclass
class TrainGanConfig:
    """`inrkit train-gan`: INR-GAN (Skorokhodov et al. 2021) against the config-e StyleGAN2 discriminator; the
    defaults are the paper's (App. A)."""

    data: str = option(help="Training images: a folder, .zip, shards or builtin:NAME.", resume=True)
    out: Path = option(Path("out/generator.safetensors"), "Generator artifact (EMA weights); run folder beside it.")
    arch: str = option("inrgan", "inrgan (hypernetwork) | inr-latent (Table 1 baseline) | loe-gan | pe-ce "
                       "(Levels-of-Experts supp. E: LoE-GAN and its PE + CE baseline).", resume=True)
    resolution: int = option(32, "Training resolution (square).", resume=True)
    channels: int = option(3, "3 (RGB) or 1 (grey).", resume=True)
    blocks: str | None = option(None, "INR blocks RESxLAYERSxWIDTH,..., e.g. 16x2x128,32x2x128 (default: the "
                                "paper's recipe scaled to --resolution).", resume=True,
                                metavar="RxLxW,...")  # or [(resolution, layers, width), ...]; parsed by the stage
    fmm_rank: int = option(10, "FMM rank r (Sec. 3.2).", resume=True)
    modulation: str = option("fmm", "fmm | fmm-linear | full", resume=True)
    fourier: bool = option(True, "Fourier features at block starts.", resume=True)
    multiscale: bool = option(True, "Multi-scale blocks (Sec. 3.3).", resume=True)  # off: all at the output size
    upsample: str = option("nearest", "nearest | bilinear", resume=True)
    fourier_scale: float = option(10.0, "Std of the initial Fourier frequencies (radians per unit of [0, 1]); "
                                  "lower it for smooth, low-resolution data.", resume=True)
    z_dim: int | None = option(None, "Latent size (default: the architecture's, INR-GAN 512, LoE-GAN 3328).",
                               resume=True)  # App. A; LoE supp. E / Table 4 derivation
    hyper_hidden: int = option(1024, "Hypernetwork width.", resume=True)  # App. A
    d_channel_base: int = option(16384, "Discriminator channel base (16384: config-e).", resume=True)  # 32768: f
    d_channel_max: int = option(512, "Discriminator channels at most.", resume=True)
    kimg: float = option(25_000, "Thousands of real images in all; rerun with more to extend.")  # StyleGAN2: 25000
    seconds: float | None = option(None, "Stop this run after this much wall time (with a snapshot); rerun to "
                                   "continue.")  # a tick and a snapshot end it
    batch: int = option(32, "Images per step over all processes.", resume=True)  # StyleGAN2 config-e: 32
    flip: bool = option(True, "Random horizontal flips of the training images (the paper's; turn off where "
                        "mirroring changes meaning, e.g. digits).", resume=True)  # Sec. 4.1
    lr_g: float | None = option(None, "Adam rate of G's hypernetwork (default: INR-GAN App. A 1e-5; LoE-GAN "
                                "supp. E 1e-4, all of G).", resume=True)
    lr_shared: float = option(5e-4, "Adam rate of the INR's shared parameters (App. A).", resume=True)
    lr_d: float | None = option(None, "Adam rate of D (default: INR-GAN App. A 3e-3; LoE-GAN supp. E 1e-4).",
                                resume=True)
    r1_gamma: float = option(10.0, "R1 penalty weight.", resume=True)  # App. A
    r1_every: int = option(1, "R1 every N steps, lazily scaled (App. A: 1).", resume=True)
    loe_width: int = option(512, "LoE-GAN / PE + CE: first layer and residual stream channels (Table 4 "
                            "derivation).", resume=True)
    loe_hidden: int = option(172, "LoE-GAN / PE + CE: the residual blocks' bottleneck.", resume=True)
    loe_tiles: str = option("2,4,4,4,4,8,8", "LoE-GAN / PE + CE: LoE tile side per residual block (its length is "
                            "the blocks).", resume=True, metavar="T,...")
    loe_grid: str | None = option(None, "LoE-GAN: grid resolution per block (default 2,8,16,32,64,128,256, each "
                                  "at most --resolution).", resume=True, metavar="R,...")
    loe_embedding: int | None = option(None, "PE + CE: coordinate embedding side (default 256, at most "
                                       "--resolution).", resume=True)
    loe_frequencies: int = option(8, "LoE-GAN / PE + CE: positional-encoding frequencies (supp. E: 8; log2 of "
                                  "the side keeps the top one at the pixel pitch).", resume=True)
    loe_d_base: int = option(64, "LoE-GAN / PE + CE: channels of each patch discriminator's first convolution, "
                             "doubled per layer (supp. E: 64, 128, 256, 512, 1).", resume=True)
    loe_betas: str = option("0.9,0.999", "LoE-GAN / PE + CE: Adam's (beta1, beta2) for G and D (supp. E: "
                            "0.9,0.999; docs/benchmarks.md compares 0,0.99 on small CPU runs).",
                            resume=True, metavar="B1,B2")
    ema_kimg: float = option(10.0, "EMA half-life of G in thousands of images.", resume=True)  # StyleGAN2: 10
    ema_rampup: float | None = option(None, "EMA ramp-up: half-life at most this fraction of the images so far "
                                      "(e.g. 0.05).", resume=True)
    tick_kimg: float = option(4.0, "Thousands of images per tick (status line, stats record).")
    snapshot_ticks: int = option(50, "Ticks between snapshots (artifact, state, sample grid).")
    fid_ticks: int = option(0, "Ticks between FID evaluations (0: never).")  # of the EMA generator
    fid_n: int = option(10_000, "Generated images per FID.")
    keep_snapshots: bool = option(False, "Also keep every snapshot's generator as RUN/generator-KIMG.safetensors.")
    seed: int = option(0, "Initialisation, latents and data order.", resume=True)
    workers: int = option(2, "Data-decoding processes.")
    device: str = option("auto", DEVICE_HELP)
    precision: str = option("auto", PRECISION_HELP)  # not a resume mark: a run may go on elsewhere (core/precision)
    compile: bool = option(False, COMPILE_HELP)
    dry_run: bool = option(False, "Print the resolved config, parameters and GMACs; train and write nothing.")
    progress: bool = option(True, "Show a progress bar.", cli=False)


@dataclass
class ClassifierConfig:
    """`inrkit train-classifier`: a pre-LN Transformer (or an MLP) on a functaset's latents (spatial functa
    App. C, Table 5 row 1 by default: 8x8x16 1-NN on CIFAR-10)."""

    data: str = option(help="Training functaset (from meta or encode --labels), labelled.", resume=True)
    out: Path = option(Path("out/classifier.safetensors"), "Classifier artifact (EMA weights); run folder beside it.")
    eval: str | None = option(None, "Held-out functaset of the same functa model: top-1/top-5 of the EMA at every "
                              "tick.")
    arch: str = option("transformer", "transformer (App. C) | mlp (App. B.1).", resume=True)
    width: int = option(128, "Transformer width (MLP: hidden width).", resume=True)  # Tab. 5: 128
    ffw: int | None = option(None, "Transformer feed-forward width (default 2 x width).", resume=True)  # Tab. 5: 256
    depth: int = option(12, "Transformer blocks (MLP: hidden layers).", resume=True)  # Tab. 5: 12
    heads: int = option(16, "Attention heads.", resume=True)  # App. C.2: 16
    dropout: float = option(0.1, "Dropout before the logits.", resume=True)  # Tab. 5: 0.1
    input_scale: float = option(0.08, "Scalar normalisation factor of the latents (0: 1 / the training latents' "
                                "standard deviation).", resume=True)  # Tab. 5: 0.08
    positional: bool = option(True, "Absolute positional encodings (off: the tokens are a set).", resume=True)
    label_smoothing: float = option(0.1, "Label smoothing l.", resume=True)  # App. C.2: 0.1
    weight_decay: float = option(0.1, "AdamW weight decay (on weight matrices).", resume=True)  # App. C.2: 0.1
    lr: float = option(1e-2, "Peak AdamW learning rate.", resume=True)  # Tab. 5: 1e-2
    warmup: int = option(1000, "Linear warm-up steps, then cosine decay to 0 at --steps.", resume=True)
    batch: int = option(256, "Latents per step over all processes.", resume=True)  # Tab. 5: 256
    steps: int = option(100_000, "Steps in all (the schedule depends on it).", resume=True)  # App. C.2: 100k
    ema_decay: float = option(0.9999, "EMA decay per step of the evaluated weights.", resume=True)  # App. B.1
    seconds: float | None = option(None, "Stop this run after this much wall time (with a snapshot); rerun to "
                                   "continue.")
    tick: int = option(100, "Steps per tick (status line, stats record, held-out accuracy).")
    snapshot: int = option(1000, "Steps between snapshots.")
    seed: int = option(0, "Initialisation, dropout and data order.", resume=True)
    device: str = option("auto", DEVICE_HELP)
    precision: str = option("auto", PRECISION_HELP)  # not a resume mark: a run may go on elsewhere (core/precision)
    compile: bool = option(False, COMPILE_HELP)
    progress: bool = option(True, "Show a progress bar.", cli=False)


@dataclass
class DiffusionConfig:
    """`inrkit train-diffusion`: DDPM over a functaset's latents (spatial functa App. C "Generation", Table 6 row 5
    scaled down by default: conditional 8x8x16; the recipes hold the paper's rows)."""

    data: str = option(help="Training functaset (from meta or encode; a ginr-functaset of latent tokens for --arch "
                       "transformer); labelled for a conditional model.", resume=True)
    out: Path = option(Path("out/diffusion.safetensors"), "Diffusion artifact (EMA weights); run folder beside it.")
    cond: bool | None = option(None, "Class-conditional with classifier-free guidance (default: when the "
                               "functaset has labels).", resume=True)
    arch: str = option("unet", "unet (ADM, spatial functa) | mlp (residual MLP, flat functa, App. B.1) | "
                       "transformer (GINR token functasets, GINR App. A.3).", resume=True)
    channels: int = option(64, "UNet model channels.", resume=True)  # Tab. 6: 320
    res_blocks: int = option(2, "UNet residual blocks per level.", resume=True)  # Tab. 6: 1-3
    channel_mult: str = option("1,2", "UNet channel multipliers per level, e.g. 1,2,2.", resume=True,
                               metavar="M,M,...")  # Tab. 6
    attention: str = option("4", "Feature-map sides with self-attention, e.g. 8,4 (empty: none).", resume=True,
                            metavar="S,S,...")  # Tab. 6 "attention res"
    heads: int = option(4, "Attention heads.", resume=True)
    width: int = option(128, "Transformer width (--arch transformer).", resume=True)  # GINR App. A.3: 1024
    depth: int = option(4, "Transformer blocks (--arch transformer).", resume=True)  # GINR App. A.3: 24
    dropout: float = option(0.0, "Dropout in the residual blocks.", resume=True)  # Tab. 6: 0-0.4
    mlp_width: int = option(512, "Residual-MLP width (--arch mlp).", resume=True)  # App. B.1: 512-4096
    mlp_blocks: int = option(2, "Residual-MLP blocks (--arch mlp).", resume=True)  # App. B.1: 2 or 4
    schedule: str = option("cosine", "Noise schedule: cosine | linear (T = 1000).", resume=True)  # App. C
    prediction: str = option("eps", "What the network predicts: eps (the paper's) | x0.", resume=True)
    timestep_ratio: float = option(3.0, "p(t=0) / p(t=T) of the linearly decreasing timestep distribution "
                                   "(1: uniform).", resume=True)  # App. C.4.3, Fig. 10: >= 3 is best
    normalisation: str = option("vector", "Latent statistics: vector (per feature) | scalar | array.",
                                resume=True)  # App. C.4.1
    gamma: float = option(2.0, "Normalisation scale factor gamma in (z - mu) / (gamma sigma).",
                          resume=True)  # Tab. 6: 2 (CIFAR-10); App. C.3: 2.5 (ImageNet)
    label_dropout: float = option(0.2, "Proportion of dummy labels (classifier-free guidance).",
                                  resume=True)  # App. C.1: 0.2
    guidance: float = option(1.0, "Classifier-free guidance scale that render and fid use by default (stored in "
                             "the artifact; 1: plain conditional).")  # GINR Table 5: 2.5
    lr: float = option(1e-4, "Adam learning rate.", resume=True)  # App. C.1: 1e-4, default Adam
    batch: int = option(256, "Latents per step over all processes.", resume=True)  # App. C.1: 256
    steps: int = option(500_000, "Steps in all; rerun with more to extend.")  # App. C.1: 500k (C.3: 1.5M)
    ema_decay: float = option(0.9999, "EMA decay per step of the saved weights.", resume=True)
    seconds: float | None = option(None, "Stop this run after this much wall time (with a snapshot); rerun to "
                                   "continue.")
    tick: int = option(100, "Steps per tick (status line, stats record).")
    snapshot: int = option(1000, "Steps between snapshots (artifact, sample grid, training state).")
    keep_snapshots: bool = option(False, "Also keep each snapshot's artifact as RUN/diffusion-STEP.safetensors "
                                  "(OUT always holds the latest).")
    samples: int = option(16, "Samples in each snapshot's grid (DDIM, --sample-steps).")
    sample_steps: int = option(50, "DDIM steps for the snapshot grids.")
    seed: int = option(0, "Initialisation, noise, timesteps and data order.", resume=True)
    device: str = option("auto", DEVICE_HELP)
    progress: bool = option(True, "Show a progress bar.", cli=False)
