# inrkit: `make demo` runs the demo on built-in data, `make test` runs the tests.
# Both create the virtual environment (.venv) on first use. `make help` lists every target and pipeline.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
INRKIT := $(VENV)/bin/inrkit
OUT    ?= out/demo

.PHONY: help demo test test-slow lint bench clean venv inrgan loe-gan functa functa-classify functa-diffusion

venv: $(VENV)/.installed ## create the virtual environment (.venv)

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,kpl]'
	touch $@

test: venv ## run the test suite
	$(PY) -m pytest

test-slow: venv ## run the tests marked slow
	$(PY) -m pytest -m slow

lint: venv ## ruff over inrkit, tests and bench
	$(VENV)/bin/ruff check inrkit tests bench

# The demo: fit builtin:camera with Levels-of-Experts, then render it 2x denser and zoomed out.
demo: venv $(OUT)/camera.safetensors ## fit builtin:camera (LoE), render it x2 and zoomed out into out/demo/
	$(VENV)/bin/inrkit render $(OUT)/camera.safetensors --scale 2 --out $(OUT)/camera_x2.png
	$(VENV)/bin/inrkit render $(OUT)/camera.safetensors --grid=-0.3,1.3 --out $(OUT)/camera_zoomout.png
	@echo "demo pictures are in $(OUT)/"

$(OUT)/camera.safetensors: | venv
	$(VENV)/bin/inrkit fit builtin:camera --arch loe --size 256 --steps 400 --out $@

clean: ## remove out/ (demo and pipeline outputs)
	rm -rf out

help: ## list the targets and pipelines
	@awk -F ':.*## ' '/^[a-z][a-z-]*:.*## / { printf "  %-10s %s\n", $$1, $$2 }' $(firstword $(MAKEFILE_LIST))
	@echo "Pipelines take RECIPE=paper DATA=... for the paper settings (see README, Pipelines)."

# ---- Pipelines --------------------------------------------------------------------------------------------
# A pipeline is a chain of files under OUT_<NAME>/: a stage's artifact is the next stage's prerequisite, so
# `make` reruns only what is out of date. Stages that only read the generator or the functaset but come later
# in the chain depend on the earlier ones order-only (`|`): they run in order but a redrawn picture does not
# recompute FID. The defaults are tiny, for a CPU; RECIPE=paper trains with the paper recipes (values a recipe
# sets fill only options not on the command line, so paper mode passes only the data and output paths):
#   make inrgan RECIPE=paper DATA=ffhq256/      (GAN_RECIPE=recipes/inrgan-ffhq1024.json for 1024^2)
#   make functa RECIPE=paper DATA=cifar10/train HELDOUT=cifar10/test
RECIPE      ?= tiny
OUT_INRGAN  ?= out/inrgan
OUT_LOEGAN  ?= out/loe-gan
OUT_FUNCTA  ?= out/functa
OUT_CLF     ?= out/functa-classify
OUT_DIF     ?= out/functa-diffusion
CLF_RECIPE  ?= recipes/classifier-cifar10.json
DIF_RECIPE  ?= recipes/diffusion-cifar10.json
GAN_RECIPE  ?= recipes/inrgan-ffhq256.json
LOE_RECIPE  ?= recipes/loe-gan-ffhq256.json
LOE_ARCH    ?= loe-gan
META_RECIPE ?= recipes/spatial-functa-cifar10.json

$(if $(filter $(RECIPE),tiny paper),,$(error RECIPE is tiny (the default) or paper, not '$(RECIPE)'))

# A failed training stage must not leave an artifact that looks finished to make, but its last good snapshot is
# worth keeping: it moves to NAME.failed.safetensors (the run folder stays, so running make again resumes).
# An interrupted one (Ctrl-C) make deletes itself; the run folder resumes it too.
keep-failed = || { mv -f $@ $(basename $@).failed.safetensors 2>/dev/null; exit 1; }

# Paper mode trains on the user's images. Expanded only when a stage's command needs it, so other targets
# still work with RECIPE=paper.
need = $(or $($(1)),$(error RECIPE=paper needs $(1)=... ($(2)), e.g. $(3)))
GAN_EXAMPLE  := make inrgan RECIPE=paper DATA=ffhq256/
LOE_EXAMPLE  := make loe-gan RECIPE=paper DATA=ffhq256/
META_EXAMPLE := make functa RECIPE=paper DATA=cifar10/train HELDOUT=cifar10/test
CLF_EXAMPLE  := make functa-classify RECIPE=paper DATA=cifar10/train HELDOUT=cifar10/test
DIF_EXAMPLE  := make functa-diffusion RECIPE=paper DATA=cifar10/train

ifeq ($(RECIPE),paper)
GAN_DATA     = $(call need,DATA,the training images,$(GAN_EXAMPLE))
FACES       ?= $(GAN_DATA)
GAN_TRAIN    = --config $(GAN_RECIPE) --data '$(GAN_DATA)'
GAN_LOWRES  ?= 64
FID_OPTS    ?= --n 50000
KPL_OPTS    ?=
META_DATA    = $(call need,DATA,the training images,$(META_EXAMPLE))
META_HELDOUT = $(call need,HELDOUT,the held-out images to encode,$(META_EXAMPLE))
# $(if ...) expands HELDOUT here, so a missing one stops make before meta-learning, not after it.
META_TRAIN   = --config $(META_RECIPE) --data '$(META_DATA)'$(if $(META_HELDOUT),)
ENCODE_OPTS ?=
CLF_DATA     = $(call need,DATA,the labelled training images,$(CLF_EXAMPLE))
CLF_HELDOUT  = $(call need,HELDOUT,the labelled held-out images,$(CLF_EXAMPLE))
CLF_META     = --config $(META_RECIPE) --data '$(CLF_DATA)'$(if $(CLF_HELDOUT),)
CLF_AUGMENT ?= --augment 50
CLF_TRAIN    = --config $(CLF_RECIPE)
CLF_DEPS     = $(CLF_RECIPE)
DIF_DATA     = $(call need,DATA,the labelled training images,$(DIF_EXAMPLE))
DIF_META     = --config $(META_RECIPE) --data '$(DIF_DATA)'
DIF_TRAIN    = --config $(DIF_RECIPE)
DIF_DEPS     = $(DIF_RECIPE)
DIF_RENDER  ?= --seeds 0-63 --cfg 5
GAN_DEPS     = $(GAN_RECIPE)
LOE_DATA     = $(call need,DATA,the training images,$(LOE_EXAMPLE))
LOE_TRAIN    = --config $(LOE_RECIPE) --data '$(LOE_DATA)' --arch $(LOE_ARCH)
LOE_DEPS     = $(LOE_RECIPE)
META_DEPS    = $(META_RECIPE)
else
# A generator small enough for a CPU (README's digits run, smaller; about 7 minutes on one thread), on faces so
# that kpl finds keypoints: at 40 kimg dlib finds a face in about a quarter of its samples, at 20 in none.
GAN_DATA     = builtin:faces
FACES       ?= builtin:faces
GAN_TRAIN    = --data '$(GAN_DATA)' --resolution 32 --channels 1 --z-dim 64 --hyper-hidden 128 \
               --blocks 16x2x32,32x2x32 --fourier-scale 3 --d-channel-base 512 --d-channel-max 64 --batch 16 \
               --lr-g 3e-4 --lr-shared 1e-3 --lr-d 2e-3 --r1-gamma 4 --ema-rampup 0.05 --kimg $(GAN_KIMG) \
               --tick-kimg 1 --snapshot-ticks 5 --workers 0
GAN_KIMG    ?= 40
GAN_LOWRES  ?= 16
# LoE-GAN (LOE_ARCH=pe-ce: its PE + CE baseline) at a CPU size: 32x32 grey digits, the docs/benchmarks.md
# comparison's setting (128 wide, three LoE blocks, Adam betas 0,0.99, lr 1e-3; about 9 s per kimg on one thread).
# LOE_KIMG=64 is that comparison's length, where LoE-GAN draws digits.
LOE_DATA     = builtin:digits
LOE_TRAIN    = --data '$(LOE_DATA)' --arch $(LOE_ARCH) --resolution 32 --channels 1 --no-flip --loe-width 128 \
               --loe-hidden 64 --loe-tiles 2,2,4 --loe-grid 2,4,8 --loe-frequencies 5 --loe-d-base 32 \
               --loe-betas 0,0.99 --batch 16 --lr-g 1e-3 --lr-d 1e-3 --ema-rampup 0.05 --kimg $(LOE_KIMG) \
               --tick-kimg 1 --snapshot-ticks 4 --workers 0
LOE_KIMG    ?= 8
LOE_DEPS     =
FID_OPTS    ?= --n 64 --workers 0
KPL_OPTS    ?= --n-train 1000 --n-test 16 --projection-steps 20
META_DATA    = builtin:photos?count=64
META_HELDOUT = builtin:photos?split=heldout&count=8
META_TRAIN   = --data '$(META_DATA)' --latent 4x4x4 --interp nearest --resolution 16 --width 16 --depth 3 \
               --lr 3e-3 --batch 8 --steps $(META_STEPS) --snapshot 100 --workers 0
META_STEPS  ?= 200
ENCODE_OPTS ?= --workers 0
# Digits 16x16 (grey), 4x4x8 spatial latents; the held-out digits are never seen by meta-learning.
CLF_DATA     = builtin:digits
CLF_HELDOUT  = builtin:digits?split=heldout
CLF_META     = --data '$(CLF_DATA)' --channels 1 --latent 4x4x8 --interp nearest --resolution 16 --width 16 \
               --depth 3 --lr 3e-3 --batch 16 --steps $(META_STEPS) --snapshot 100 --workers 0
CLF_AUGMENT ?= --augment 2 --no-augment-flip --count 400
CLF_TRAIN    = --width 32 --ffw 64 --depth 2 --heads 4 --dropout 0.1 --input-scale 0 --lr 3e-3 --warmup 20 \
               --batch 32 --steps $(CLF_STEPS) --tick 50 --snapshot 200 --ema-decay 0.99
CLF_STEPS   ?= 200
CLF_DEPS     =
# Conditional diffusion on the digits' 4x4x8 functaset (the classifier pipeline's functa settings).
DIF_DATA     = builtin:digits
DIF_META     = $(subst $(CLF_DATA),$(DIF_DATA),$(CLF_META))
DIF_TRAIN    = --channels 16 --channel-mult 1,2 --attention 2 --heads 2 --lr 1e-3 --batch 32 --steps $(DIF_STEPS) \
               --tick 50 --snapshot 100 --ema-decay 0.99 --sample-steps 10
DIF_STEPS   ?= 200
DIF_DEPS     =
DIF_RENDER  ?= --seeds 0-15 --cfg 2 --sampler ddim --steps 20
endif

# INR-GAN: train-gan -> render (samples, x2, zoom-out, low-res) -> fid -> kpl.
GEN        := $(OUT_INRGAN)/generator.safetensors
GAN_PICS   := $(addprefix $(OUT_INRGAN)/,samples.png samples_x2.png zoomout.png lowres.png)
SEEDS      ?= 0-15

inrgan: $(OUT_INRGAN)/kpl.json ## INR-GAN: train-gan -> render (samples, x2, zoom-out, low-res) -> fid -> kpl

$(GEN): $(GAN_DEPS) | venv
	$(INRKIT) train-gan $(GAN_TRAIN) --out $@ $(keep-failed)

$(OUT_INRGAN)/samples.png: $(GEN)
	$(INRKIT) render $< --seeds $(SEEDS) --out $@
$(OUT_INRGAN)/samples_x2.png: $(GEN)
	$(INRKIT) render $< --seeds $(SEEDS) --scale 2 --out $@
$(OUT_INRGAN)/zoomout.png: $(GEN)
	$(INRKIT) render $< --seeds $(SEEDS) --grid=-0.5,1.5 --out $@
$(OUT_INRGAN)/lowres.png: $(GEN)
	$(INRKIT) render $< --seeds $(SEEDS) --size $(GAN_LOWRES) --out $@

# fid appends to --stats: start the file afresh so it holds this generator's score only.
$(OUT_INRGAN)/fid.jsonl: $(GEN) | $(GAN_PICS)
	rm -f $@
	$(INRKIT) fid $< --data '$(GAN_DATA)' $(FID_OPTS) --stats $@

$(OUT_INRGAN)/kpl.json: $(GEN) | $(OUT_INRGAN)/fid.jsonl
	$(INRKIT) kpl $< --faces '$(FACES)' $(KPL_OPTS) --out $@

# LoE-GAN (Levels-of-Experts supp. E): train-gan --arch loe-gan -> render (samples, x2, zoom-out, low-res) -> fid.
LOE_GEN  := $(OUT_LOEGAN)/generator.safetensors
LOE_PICS := $(addprefix $(OUT_LOEGAN)/,samples.png samples_x2.png zoomout.png lowres.png)

loe-gan: $(OUT_LOEGAN)/fid.jsonl ## LoE-GAN: train-gan --arch loe-gan -> render (samples, x2, zoom-out, low-res) -> fid

$(LOE_GEN): $(LOE_DEPS) | venv
	$(INRKIT) train-gan $(LOE_TRAIN) --out $@ $(keep-failed)

$(OUT_LOEGAN)/samples.png: $(LOE_GEN)
	$(INRKIT) render $< --seeds $(SEEDS) --out $@
$(OUT_LOEGAN)/samples_x2.png: $(LOE_GEN)
	$(INRKIT) render $< --seeds $(SEEDS) --scale 2 --out $@
$(OUT_LOEGAN)/zoomout.png: $(LOE_GEN)
	$(INRKIT) render $< --seeds $(SEEDS) --grid=-0.5,1.5 --out $@
$(OUT_LOEGAN)/lowres.png: $(LOE_GEN)
	$(INRKIT) render $< --seeds $(SEEDS) --size $(GAN_LOWRES) --out $@

$(OUT_LOEGAN)/fid.jsonl: $(LOE_GEN) | $(LOE_PICS)
	rm -f $@
	$(INRKIT) fid $< --data '$(LOE_DATA)' $(FID_OPTS) --stats $@

# Spatial functa: meta -> encode (held-out images) -> render (functaset grid, x2).
MODEL := $(OUT_FUNCTA)/model.safetensors
FSET  := $(OUT_FUNCTA)/heldout.safetensors
INDEX ?= 0-7

functa: $(OUT_FUNCTA)/heldout.png $(OUT_FUNCTA)/heldout_x2.png ## spatial functa: meta -> encode (held-out) -> render (grid, x2)

# The pipeline encodes the held-out set itself, so meta skips its own functasets.
$(MODEL): $(META_DEPS) | venv
	$(INRKIT) meta $(META_TRAIN) --no-functasets --out $@ $(keep-failed)

$(FSET): $(MODEL)
	$(INRKIT) encode $< --data '$(META_HELDOUT)' $(ENCODE_OPTS) --out $@

$(OUT_FUNCTA)/heldout.png: $(FSET)
	$(INRKIT) render $< --index $(INDEX) --out $@
$(OUT_FUNCTA)/heldout_x2.png: $(FSET)
	$(INRKIT) render $< --index $(INDEX) --scale 2 --out $@

# Classification on functasets: meta -> encode (augmented training copies, labelled) + encode (held-out,
# labelled) -> train-classifier -> classify (the held-out images, encoded through the classifier's model).
CLF_MODEL := $(OUT_CLF)/model.safetensors
CLF_TRSET := $(OUT_CLF)/train-augmented.safetensors
CLF_HOSET := $(OUT_CLF)/heldout.safetensors
CLF       := $(OUT_CLF)/classifier.safetensors

functa-classify: $(OUT_CLF)/predictions.json ## classification: meta -> encode (augmented) -> train-classifier -> classify

$(CLF_MODEL): | venv
	$(INRKIT) meta $(CLF_META) --no-functasets --out $@ $(keep-failed)

$(CLF_TRSET): $(CLF_MODEL)
	$(INRKIT) encode $< --data '$(CLF_DATA)' --labels $(CLF_AUGMENT) $(ENCODE_OPTS) --out $@

$(CLF_HOSET): $(CLF_MODEL)
	$(INRKIT) encode $< --data '$(CLF_HELDOUT)' --labels $(ENCODE_OPTS) --out $@

$(CLF): $(CLF_TRSET) $(CLF_HOSET) $(CLF_DEPS)
	$(INRKIT) train-classifier $(CLF_TRAIN) --data $(CLF_TRSET) --eval $(CLF_HOSET) --out $@ $(keep-failed)

$(OUT_CLF)/predictions.json: $(CLF)
	$(INRKIT) classify $< --data '$(CLF_HELDOUT)' --out $@

# Diffusion on functa latents: meta -> encode (the training images, labelled) -> train-diffusion -> render
# (samples, x2, saved latents) -> fid.
DIF_MODEL := $(OUT_DIF)/model.safetensors
DIF_TRSET := $(OUT_DIF)/train.safetensors
DIF       := $(OUT_DIF)/diffusion.safetensors

functa-diffusion: $(OUT_DIF)/fid.jsonl ## diffusion: meta -> encode -> train-diffusion -> render (samples, x2) -> fid

$(DIF_MODEL): | venv
	$(INRKIT) meta $(DIF_META) --no-functasets --out $@ $(keep-failed)

$(DIF_TRSET): $(DIF_MODEL)
	$(INRKIT) encode $< --data '$(DIF_DATA)' --labels $(ENCODE_OPTS) --out $@

$(DIF): $(DIF_TRSET) $(DIF_DEPS)
	$(INRKIT) train-diffusion $(DIF_TRAIN) --data $(DIF_TRSET) --out $@ $(keep-failed)

$(OUT_DIF)/samples.png: $(DIF)
	$(INRKIT) render $< $(DIF_RENDER) --save-latents $(OUT_DIF)/samples.safetensors --out $@
$(OUT_DIF)/samples_x2.png: $(DIF)
	$(INRKIT) render $< $(DIF_RENDER) --scale 2 --out $@

$(OUT_DIF)/fid.jsonl: $(DIF) | $(OUT_DIF)/samples.png $(OUT_DIF)/samples_x2.png
	rm -f $@
	$(INRKIT) fid $< --data '$(DIF_DATA)' $(FID_OPTS) --stats $@
