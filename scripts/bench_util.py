"""Helpers the Python sides of the comparison benchmarks share
(scripts/bench_minhash_datatrove.py, scripts/bench_heuristics.py)."""

import gzip
import io
import json
import subprocess
import sys

import zstandard


def timed(cmd, env=None):
    """(wall seconds, peak RSS MiB) of one command."""
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    wall, rss = out.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss) / 1024


def read_lines(path):
    """The JSON records of a .jsonl, .jsonl.gz or .jsonl.zst file (zstd frames
    concatenated, as thresher writes them)."""
    if path.endswith(".zst"):
        with open(path, "rb") as f:
            reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
            return [json.loads(l) for l in io.TextIOWrapper(reader, encoding="utf-8") if l.strip()]
    with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as f:
        return [json.loads(l) for l in f if l.strip()]
