"""The bottom layer: errors, atomic file I/O and artifacts, runtime and distributed helpers, progress, pictures,
option parsing. Nothing here imports from another inrkit layer."""
