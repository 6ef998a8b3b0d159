"""Rich progress bars with a live metric, and stats.jsonl (one JSON object per line)."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from inrkit.core.errors import InrkitError
from inrkit.core.runtime import console, is_rank0


@contextmanager
def progress_bar(description: str, total: int, enabled: bool = True, unit: str = "it"):
    """Yields update(advance=1, **metrics); metrics show live beside the bar (rank 0 only).
    The rate is shown in `unit`/s (steps, images, ...)."""
    if not (enabled and is_rank0()):
        yield lambda advance=1, **metrics: None
        return
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}")]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total, metrics="", rate="")
        start = time.perf_counter()

        def update(advance: int = 1, **metrics) -> None:
            text = "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
            done = bar.tasks[0].completed + advance
            rate = done / max(time.perf_counter() - start, 1e-9)
            bar.update(task, advance=advance, metrics=text, rate=f"{rate:6.1f} {unit}/s")

        yield update


class StatsWriter:
    """Appends one JSON object per call to stats.jsonl (rank 0 only)."""

    def __init__(self, path: Path, append: bool = False):
        self.path = Path(path)
        if is_rank0():
            with self._errors():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if not append:
                    self.path.write_text("")

    def write(self, **record) -> None:
        if is_rank0():
            with self._errors(), self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")

    @contextmanager
    def _errors(self):
        """A full disk or a lost permission: one sentence (a half-written last line is dropped on resume)."""
        try:
            yield
        except OSError as err:
            raise InrkitError(f"could not write {self.path} ({err.strerror}); the records before are kept.") from None
