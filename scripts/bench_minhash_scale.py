"""minhash_dedup at scale: N short generated documents through every step on
this machine, each step its own process under /usr/bin/time (wall time and
peak memory), with every core.

Documents are 30-80 words drawn at random from the words of the 75-language
sentence set (so 5-gram shingles are almost never shared by chance), in
64 zstd JSONL files. 1% of them are planted copies of an earlier document
with one word replaced; the report prints how many were found, as a check
that the run did real work.

usage (scripts/bench-minhash-scale does the set-up):
  python bench_minhash_scale.py THRESHER_BIN WORK_DIR DOCUMENTS
"""

import glob
import json
import os
import subprocess
import sys
import time

import numpy as np

FILES = 64


def vocabulary():
    words = set()
    for path in sorted(glob.glob("../shared/testdata/langid/sentences/*.txt")):
        with open(path, encoding="utf-8") as f:
            # Long "words" are whole sentences of scripts written without
            # spaces, which shingle by character: two documents drawing the
            # same one would be near-duplicates by chance.
            words.update(w for w in f.read().split() if len(w) <= 20)
    return np.array(sorted(words), dtype=object)


def generate(work, documents):
    vocab = vocabulary()
    rng = np.random.default_rng(11)
    os.makedirs(f"{work}/input", exist_ok=True)
    per_file = -(-documents // FILES)
    planted = 0
    text_bytes = 0
    for f in range(FILES):
        n = max(0, min(per_file, documents - f * per_file))
        lengths = rng.integers(30, 81, n)
        picks = rng.integers(0, len(vocab), int(lengths.sum()))
        # 1% of the documents copy the document 1-50 places before them
        # (in this file), with one word replaced.
        copies = rng.random(n) < 0.01
        texts = []
        start = 0
        with subprocess.Popen(["zstd", "-q", "-1", "-o", f"{work}/input/part-{f:03d}.jsonl.zst"],
                              stdin=subprocess.PIPE) as z:
            for i in range(n):
                words = vocab[picks[start:start + lengths[i]]]
                start += lengths[i]
                if copies[i] and i > 50:
                    words = texts[i - 1 - int(rng.integers(0, 50))].split(" ")
                    words[int(rng.integers(0, len(words)))] = str(vocab[int(rng.integers(0, len(vocab)))])
                    planted += 1
                text = " ".join(words)
                texts.append(text)
                text_bytes += len(text.encode())
                z.stdin.write((json.dumps({"id": f"d{f:03d}-{i:07d}", "text": text}, ensure_ascii=False)
                               + "\n").encode())
            z.stdin.close()
    return planted, text_bytes


def timed(cmd):
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], capture_output=True, text=True,
                         env=dict(os.environ, RUST_LOG="warn"))
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-3000:]}")
    wall, rss = out.stderr.strip().splitlines()[-1].split()
    return float(wall), int(rss) / 1024


def main(thresher, work, documents):
    documents = int(documents)
    start = time.time()
    planted, text_bytes = generate(work, documents)
    print(f"generated {documents:,} documents ({text_bytes / 1e9:.2f} GB of text, {planted:,} planted copies) "
          f"in {time.time() - start:.0f} s")
    config = f"{work}/scale.toml"
    with open(config, "w") as f:
        f.write(f'[input]\npath = "{work}/input"\n[output]\npath = "{work}/out"\n'
                f'[[stages]]\nkind = "minhash_dedup"\n')
    print(f"{'step':<9} {'wall':>9} {'peak memory':>12}  throughput ({os.cpu_count()} cores)")
    total = 0.0
    peak = 0.0
    for step in ["scan", "resolve", "cluster", "apply"]:
        wall, rss = timed([thresher, "run", config, "--stage", "minhash_dedup", "--step", step])
        total += wall
        peak = max(peak, rss)
        print(f"{step:<9} {wall:8.1f}s {rss:9.0f} MiB  {documents / wall / 1e3:8.0f}K docs/s")
    manifest = json.load(open(f"{work}/out/minhash_dedup/_manifest/stage.json"))
    removed = manifest["counts"]["rejected"].get("near_duplicate", 0)
    print(f"total     {total:8.1f}s {peak:9.0f} MiB  {documents / total / 1e3:8.0f}K docs/s, "
          f"{text_bytes / 1e6 / total:.1f} MB/s")
    print(f"near_duplicate removals: {removed:,} (planted: {planted:,}); "
          f"documents out: {manifest['counts']['documents_out']:,}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
