"""Helpers the Python sides of the comparison benchmarks share
(scripts/bench_minhash_datatrove.py, scripts/bench_heuristics.py,
scripts/bench_bad_words.py)."""

import glob
import gzip
import os
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


def build_corpus(thresher, work, size_mb):
    """Writes `thresher bench --suite corpus` text (web paragraphs, sentences
    of 75 languages and source files, recombined) as one plain JSONL,
    `{work}/input/corpus.jsonl`, with ids `doc-0000000`...; returns the
    document count and MB of text."""
    subprocess.run([thresher, "bench", "--suite", "corpus", "--size-mb", str(size_mb), "--dir", f"{work}/bench",
                    "--keep"], check=True, capture_output=True)
    os.makedirs(f"{work}/input", exist_ok=True)
    docs = 0
    text_mb = 0.0
    with open(f"{work}/input/corpus.jsonl", "w") as out:
        for path in sorted(glob.glob(f"{work}/bench/corpus/*.jsonl.zst")):
            for d in read_lines(path):
                out.write(json.dumps({"id": f"doc-{docs:07d}", "text": d["text"]}) + "\n")
                docs += 1
                text_mb += len(d["text"].encode()) / 1e6
    return docs, text_mb
