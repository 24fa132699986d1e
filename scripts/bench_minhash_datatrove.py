"""thresher's minhash_dedup next to datatrove's MinHash on the same corpus,
same setting (word 5-grams, 14 bands x 8 rows, 64-bit hashes), one core.

1. Builds a corpus of real text with `thresher bench --suite corpus`, drops
   its own exact copies, and plants near-duplicates: 5% of the documents (of
   50+ words) are copied with 0-5% of their words replaced, at random places.
2. Runs each step of both tools as its own process under /usr/bin/time:
   wall time and peak memory per step.
3. Prints throughput, peak memory, recall on the planted pairs (a pair
   counts as found when either document was removed), precision, and the
   agreement of the two removed sets.

Precision is measured, not inferred from the planted pairs (the corpus
generator recombines real paragraphs, so the base corpus holds real
near-duplicates of its own), over exact Jaccard similarity of the sets of
word 5-grams (the lower-cased letter-and-digit words both tools shingle), at
0.5: where the 14 x 8 curve gives a 5% chance of becoming a candidate.
Two readings are printed:
- pairwise: the removed document has some other document, kept or removed,
  at >= 0.5 (the LSH made no false match for it);
- covered: some *kept* document is at >= 0.5, so the content survives in
  the output. Clusters are connected components, so a chain A~B~C can
  remove C for A even when A and C are further apart: covered <= pairwise.

usage (scripts/bench-minhash-datatrove does the set-up):
  python bench_minhash_datatrove.py THRESHER_BIN WORK_DIR SIZE_MB
"""

import glob
import gzip
import json
import os
import random
import re
import subprocess
import sys
import time

from bench_util import read_lines, timed

DATATROVE_STEP = r'''
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupBuckets,
    MinhashDedupCluster, MinhashDedupFilter)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig
step, work, inp = sys.argv[1], sys.argv[2], sys.argv[3]
config = MinhashConfig(hash_config=HashConfig(precision=64), n_grams=5, num_buckets=14, hashes_per_bucket=8)
pipelines = {
    "signatures": [JsonlReader(inp), MinhashDedupSignature(output_folder=f"{work}/sigs", config=config)],
    "buckets": [MinhashDedupBuckets(input_folder=f"{work}/sigs", output_folder=f"{work}/buckets", config=config)],
    "cluster": [MinhashDedupCluster(input_folder=f"{work}/buckets", output_folder=f"{work}/clusters", config=config)],
    "filter": [JsonlReader(inp), MinhashDedupFilter(input_folder=f"{work}/clusters",
               exclusion_writer=JsonlWriter(f"{work}/removed"))],
}
tasks = {"buckets": config.num_buckets}.get(step, 1)
LocalPipelineExecutor(pipeline=pipelines[step], tasks=tasks, workers=1,
                      logging_dir=f"{work}/logs/{step}").run()
'''


def build_corpus(thresher, work, size_mb):
    subprocess.run([thresher, "bench", "--suite", "corpus", "--size-mb", str(size_mb), "--dir", f"{work}/bench",
                    "--keep"], check=True, capture_output=True)
    docs, seen = [], set()
    for path in sorted(glob.glob(f"{work}/bench/corpus/*.jsonl.zst")):
        for d in read_lines(path):
            key = " ".join(d["text"].split())
            if key not in seen:  # the generator's own exact copies
                seen.add(key)
                docs.append(d["text"])
    rng = random.Random(7)
    vocabulary = [w for t in docs[:2000] for w in t.split()]
    planted = {}  # copy id -> (original id, edit percent)
    rows = [(f"doc-{i:06d}", t) for i, t in enumerate(docs)]
    candidates = [i for i, t in enumerate(docs) if len(t.split()) >= 50]
    for k, i in enumerate(rng.sample(candidates, len(docs) // 20)):
        words = docs[i].split()
        percent = k % 6
        for _ in range(len(words) * percent // 100):
            words[rng.randrange(len(words))] = rng.choice(vocabulary)
        copy_id = f"copy-{k:06d}"
        rows.insert(rng.randrange(len(rows) + 1), (copy_id, " ".join(words)))
        planted[copy_id] = (f"doc-{i:06d}", percent)
    os.makedirs(f"{work}/input", exist_ok=True)
    per_file = len(rows) // 8 + 1
    for f in range(8):
        with open(f"{work}/input/part-{f}.jsonl", "w") as out:
            for doc_id, text in rows[f * per_file:(f + 1) * per_file]:
                out.write(json.dumps({"id": doc_id, "text": text}) + "\n")
    text_mb = sum(len(t.encode()) for _, t in rows) / 1e6
    return planted, rows, text_mb


def run_thresher(thresher, work, name, extra):
    config = f"{work}/{name}.toml"
    with open(config, "w") as f:
        f.write(f'[input]\npath = "{work}/input"\n[output]\npath = "{work}/{name}"\n[run]\nthreads = 1\n'
                f'[[stages]]\nkind = "minhash_dedup"\n{extra}')
    env = dict(os.environ, RUST_LOG="warn", RAYON_NUM_THREADS="1")
    steps = {s: timed([thresher, "run", config, "--stage", "minhash_dedup", "--step", s], env)
             for s in ["scan", "resolve", "cluster", "apply"]}
    removed = set()
    for path in glob.glob(f"{work}/{name}/minhash_dedup/_rejected/**/*.jsonl.zst", recursive=True):
        # The sidecar also holds documents without text (`empty_text`).
        removed.update(d["id"] for d in read_lines(path) if d["rejection"]["reason"] == "near_duplicate")
    return steps, removed


def run_datatrove(python, work, name):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    steps = {s: timed([python, "-c", DATATROVE_STEP, s, f"{work}/{name}", f"{work}/input"], env)
             for s in ["signatures", "buckets", "cluster", "filter"]}
    removed = set()
    for path in glob.glob(f"{work}/{name}/removed/*"):
        with gzip.open(path, "rt") if path.endswith(".gz") else open(path) as f:
            removed.update(json.loads(l)["id"] for l in f if l.strip())
    return steps, removed


WORD = re.compile(r"[^\W_]+")


def shingle_set(text, n=5):
    words = WORD.findall(text.lower())
    if len(words) <= n:
        return {hash(tuple(words))} if words else set()
    return {hash(tuple(words[i:i + n])) for i in range(len(words) - n + 1)}


def best_jaccard(rows, removed):
    """For every removed id: the highest exact 5-gram Jaccard with a kept
    document, and with any other document."""
    sets = {doc_id: shingle_set(text) for doc_id, text in rows if doc_id in removed}
    index = {}
    for doc_id, shingles in sets.items():
        for h in shingles:
            index.setdefault(h, []).append(doc_id)
    best_kept = dict.fromkeys(removed, 0.0)
    best_any = dict.fromkeys(removed, 0.0)
    for doc_id, text in rows:
        shingles = sets[doc_id] if doc_id in sets else shingle_set(text)
        shared = {}
        for h in shingles:
            for r in index.get(h, ()):
                if r != doc_id:
                    shared[r] = shared.get(r, 0) + 1
        for r, k in shared.items():
            j = k / (len(sets[r]) + len(shingles) - k)
            best_any[r] = max(best_any[r], j)
            if doc_id not in removed:
                best_kept[r] = max(best_kept[r], j)
    return best_kept, best_any


def precision(rows, removed):
    """(pairwise, covered by a kept document) shares of correct removals at
    exact Jaccard 0.5, and the covered share at 0.7."""
    best_kept, best_any = best_jaccard(rows, removed)
    n = max(1, len(removed))
    return (sum(j >= 0.5 for j in best_any.values()) / n, sum(j >= 0.5 for j in best_kept.values()) / n,
            sum(j >= 0.7 for j in best_kept.values()) / n)


def report(name, steps, removed, planted, text_mb, rows):
    total = sum(w for w, _ in steps.values())
    peak = max(m for _, m in steps.values())
    in_pairs = {c for c in planted} | {o for o, _ in planted.values()}
    found = {c for c, (o, _) in planted.items() if c in removed or o in removed}
    pairwise, covered, covered_seven = precision(rows, removed)
    by_edit = {}
    for c, (o, p) in planted.items():
        hit, n = by_edit.get(p, (0, 0))
        by_edit[p] = (hit + (c in found), n + 1)
    print(f"\n{name}: {text_mb / total:.2f} MB/s end to end ({total:.1f} s), peak {peak:.0f} MiB")
    for step, (wall, rss) in steps.items():
        rate = f"{text_mb / wall:9.1f} MB/s" if wall >= 0.05 else "  (< 0.05 s)  "
        print(f"  {step:<11} {wall:8.2f} s  {rate}  {rss:6.0f} MiB")
    print(f"  removed {len(removed)} ({len(removed - in_pairs)} outside the planted pairs); "
          f"recall on planted copies {len(found) / len(planted):.3f}")
    print(f"  precision (exact 5-gram Jaccard >= 0.5): pairwise {pairwise:.4f} (with some other document), "
          f"covered {covered:.4f} (with a kept document; at >= 0.7: {covered_seven:.4f})")
    print("  recall by edit rate: " + ", ".join(f"{p}%: {h}/{n}" for p, (h, n) in sorted(by_edit.items())))
    return total


def main(thresher, work, size_mb):
    python = sys.executable
    planted, rows, text_mb = build_corpus(thresher, work, int(size_mb))
    print(f"corpus: {len(rows)} documents, {text_mb:.1f} MB of text, {len(planted)} planted near-duplicates (0-5% words replaced)")
    t_steps, t_removed = run_thresher(thresher, work, "thresher", "")
    h_steps, h_removed = run_thresher(thresher, work, "thresher-high-recall",
                                      "bands = 40\nrows = 3\nverify_threshold = 0.55\n")
    d_steps, d_removed = run_datatrove(python, work, "datatrove")
    t = report("thresher minhash_dedup, 14 x 8", t_steps, t_removed, planted, text_mb, rows)
    report("thresher minhash_dedup, high-recall preset (40 x 3, verify 0.55)", h_steps, h_removed, planted, text_mb, rows)
    d = report("datatrove 0.10.1 MinHash, 14 x 8", d_steps, d_removed, planted, text_mb, rows)
    union = t_removed | d_removed
    print(f"\nthresher / datatrove throughput at 14 x 8: {d / t:.0f}x")
    print(f"removed sets at 14 x 8: {len(t_removed & d_removed)} in both, {len(t_removed - d_removed)} only thresher, "
          f"{len(d_removed - t_removed)} only datatrove (Jaccard {len(t_removed & d_removed) / max(1, len(union)):.3f})")


if __name__ == "__main__":
    main(*sys.argv[1:4])
