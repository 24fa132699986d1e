"""thresher's `bad_words` stage next to datatrove's C4BadWordsFilter on the
same corpus, one core each.

1. Builds a corpus of real text with `thresher bench --suite corpus` (web
   paragraphs, sentences of 75 languages and source files, recombined),
   every document untagged, so both take English.
2. One English list of LDNOOBW's size (403 entries): the words of the
   parity test's list (scripts/datatrove_bad_words.py), which hit real
   text, and made-up words that never do, so the list is as long as a real
   one (datatrove's regex is one alternation over all of them).
3. Runs each tool as one process under /usr/bin/time, reading the same JSONL
   and writing what it keeps: datatrove's JsonlReader -> C4BadWordsFilter ->
   JsonlWriter, and `thresher run` with the stage. Prints documents/s and
   MB/s of each, the ratio, and whether they keep the same documents.

usage (scripts/bench-bad-words does the set-up):
  python bench_bad_words.py THRESHER_BIN WORK_DIR SIZE_MB
"""

import glob
import json
import os
import random
import sys

from bench_util import build_corpus, read_lines, timed
from datatrove_bad_words import LISTS

DATATROVE = r'''
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.filters import c4_filters
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
work, inp, words = sys.argv[1], sys.argv[2], sys.argv[3]
# datatrove downloads LDNOOBW's list; give it this one.
c4_filters.cached_asset_path_or_download = lambda url, **_: words
pipeline = [
    JsonlReader(inp),
    c4_filters.C4BadWordsFilter(fail_on_missing_language=False),
    JsonlWriter(f"{work}/kept", compression=None),
]
LocalPipelineExecutor(pipeline=pipeline, tasks=1, workers=1, logging_dir=f"{work}/logs").run()
'''


def word_list(path):
    rng = random.Random(3)
    words = list(LISTS["en"])
    while len(words) < 403:
        words.append("".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(rng.randint(5, 10))))
    with open(path, "w") as f:
        f.write("\n".join(words) + "\n")


def main(thresher, work, size_mb):
    docs, text_mb = build_corpus(thresher, work, size_mb)
    words = f"{work}/words-en.txt"
    word_list(words)
    dt_wall, dt_rss = timed([sys.executable, "-c", DATATROVE, f"{work}/datatrove", f"{work}/input", words],
                            dict(os.environ, OMP_NUM_THREADS="1"))
    dt_kept = {d["id"] for p in glob.glob(f"{work}/datatrove/kept/*") for d in read_lines(p)}
    config = f"{work}/thresher.toml"
    with open(config, "w") as f:
        f.write(f'[input]\npath = "{work}/input"\n[output]\npath = "{work}/thresher"\n[run]\nthreads = 1\n'
                f'[[stages]]\nkind = "bad_words"\nfiles = {{ en = {json.dumps(words)} }}\n')
    th_wall, th_rss = timed([thresher, "run", config], dict(os.environ, RUST_LOG="warn", RAYON_NUM_THREADS="1"))
    th_kept = {d["id"] for p in glob.glob(f"{work}/thresher/bad_words/*.jsonl.zst") for d in read_lines(p)}
    print(f"corpus: {docs} documents, {text_mb:.1f} MB of text; one core each, read and write included")
    for name, wall, rss in [("datatrove 0.10.1 C4BadWordsFilter", dt_wall, dt_rss),
                            ("thresher bad_words", th_wall, th_rss)]:
        print(f"  {name:<36} {wall:7.1f} s  {docs / wall:8.0f} docs/s  {text_mb / wall:6.2f} MB/s  peak {rss:5.0f} MiB")
    print(f"  thresher / datatrove: {dt_wall / th_wall:.1f}x")
    print(f"  kept: datatrove {len(dt_kept)}, thresher {len(th_kept)}, same set: {dt_kept == th_kept}")
    for i in sorted(dt_kept ^ th_kept)[:10]:
        print(f"    {i}: kept by {'datatrove' if i in dt_kept else 'thresher'} only")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
