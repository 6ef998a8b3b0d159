"""`inrkit info ARTIFACT`: what an artifact is and where it came from, read from its header alone.

The header holds everything but the tensor bytes, so this is instant even for a large generator; the
only files read in full are the parents, to check their sha256 against the one recorded.
"""

from __future__ import annotations

import json
from pathlib import Path

from inrkit.core import artifacts


def info(path: str | Path) -> dict:
    """Everything `inrkit info` shows, as a JSON-ready dict."""
    path = Path(path)
    meta, index = artifacts.read_header(path)
    fields = {key: artifacts.metadata_json(path, meta, key) for key in artifacts.JSON_KEYS}
    size = sum(v["data_offsets"][1] - v["data_offsets"][0] for v in index.values())
    version = artifacts.format_version(path, meta)
    return dict(
        path=str(path), kind=meta["kind"], format_version=version,
        readable=version <= artifacts.FORMAT_VERSION,  # a newer format is shown but cannot be loaded
        inrkit_version=meta.get("inrkit_version", ""), command=meta.get("command", ""),
        config=fields["config"], options=fields["options"], metrics=fields["metrics"],
        parents=_parents(path, fields["parents"], fields["config"]),
        tensors=dict(count=len(index), bytes=size, size=human_bytes(size)),
    )


def _parents(path: Path, recorded: dict, config: dict) -> list[dict]:
    """Each recorded parent, plus a functaset's model (config model_path/model_sha256) when not among them."""
    recorded = dict(recorded)
    model, model_sha = config.get("model_path"), config.get("model_sha256")
    if isinstance(model, str) and model_sha and model not in recorded:
        recorded[model] = model_sha
    return [_check_parent(path, str(p), str(sha or "")) for p, sha in recorded.items()]


def _check_parent(path: Path, parent: str, sha: str) -> dict:
    """Parents are recorded as given on the command line: relative to where it ran, which is unknown, so a
    relative path is looked for from here and then beside the artifact."""
    candidates = [Path(parent)] if Path(parent).is_absolute() else [Path(parent), path.parent / parent]
    found = next((c for c in candidates if _is_file(c)), None)
    matches = None if found is None or not sha else artifacts.sha256(found) == sha
    return dict(path=parent, sha256=sha, present=found is not None, found_at=str(found) if found else None,
                matches=matches)


def _is_file(path: Path) -> bool:
    """A recorded parent path may be anything a damaged file holds (a NUL byte, 10,000 characters): not a file."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB' (binary units, as `ls -h` and `du -h` count)."""
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"


def _scalar(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v if isinstance(v, str) else json.dumps(v)


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Nested config dicts as dotted keys, so every line is one setting."""
    rows = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            rows += _flatten(v, f"{prefix}{k}.")
        else:
            rows.append((f"{prefix}{k}", _scalar(v)))
    return rows


def _aligned(rows: list[tuple[str, str]], indent: str = "") -> list[str]:
    width = max((len(k) for k, _ in rows), default=0)
    return [f"{indent}{k.ljust(width)}  {v}".rstrip() for k, v in rows]


def _parent_line(p: dict) -> str:
    if not p["present"]:
        return "missing"
    where = f" (at {p['found_at']})" if p["found_at"] != p["path"] else ""
    if p["matches"] is None:
        return f"present{where}, no sha256 recorded"
    return f"present{where}, sha256 {'matches' if p['matches'] else 'DIFFERS (the file changed since)'}"


def format_info(d: dict) -> str:
    """The dict from `info` as aligned, human-readable text."""
    t = d["tensors"]
    version = str(d["format_version"]) + ("" if d["readable"] else " (newer than this inrkit reads)")
    lines = _aligned([("path", d["path"]), ("kind", d["kind"]), ("format version", version),
                      ("inrkit version", d["inrkit_version"] or "?"), ("command", d["command"] or "?"),
                      ("tensors", f"{t['count']}, {t['size']} ({t['bytes']:,} bytes)")])
    for section in ("config", "options", "metrics"):
        rows = _flatten(d[section])
        lines += ["", section] + (_aligned(rows, "  ") if rows else ["  (none)"])
    parents = [(p["path"], _parent_line(p)) for p in d["parents"]]
    lines += ["", "parents"] + (_aligned(parents, "  ") if parents else ["  (none)"])
    return "\n".join(lines)
