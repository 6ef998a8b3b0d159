"""The one training loop (loop.py), its checkpoint I/O (checkpoint.py) and the objectives that plug into it:
meta-learning (metalearn.py) and GANs (gan.py). Stages build an objective and call `training_loop`."""
