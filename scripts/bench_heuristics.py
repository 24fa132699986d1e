"""thresher's `heuristics` stage next to datatrove's four heuristic filters
(Gopher repetition, Gopher quality, C4 quality, FineWeb quality, their
defaults, in FineWeb's order) on the same corpus, one core each.

1. Builds a corpus of real text with `thresher bench --suite corpus` (web
   paragraphs, sentences of 75 languages and source files, recombined).
2. Runs each tool as one process under /usr/bin/time, reading the same JSONL
   and writing what it keeps and what it drops: datatrove's
   JsonlReader -> filters -> JsonlWriter, and `thresher run` with the stage.
3. Prints documents/s and MB/s of each, the ratio, and how far the two agree:
   the same documents kept, the same rule named for each dropped one, and
   the same text for each kept one (C4 removes lines).

usage (scripts/bench-heuristics does the set-up):
  python bench_heuristics.py THRESHER_BIN WORK_DIR SIZE_MB
"""

import glob
import os
import sys

from bench_util import build_corpus, read_lines, timed

DATATROVE = r'''
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter, GopherQualityFilter,
    GopherRepetitionFilter)
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
work, inp = sys.argv[1], sys.argv[2]
removed = lambda name: JsonlWriter(f"{work}/removed/{name}", compression=None)
pipeline = [
    JsonlReader(inp),
    GopherRepetitionFilter(exclusion_writer=removed("gopher_repetition")),
    GopherQualityFilter(exclusion_writer=removed("gopher_quality")),
    C4QualityFilter(exclusion_writer=removed("c4_quality")),
    FineWebQualityFilter(exclusion_writer=removed("fineweb_quality")),
    JsonlWriter(f"{work}/kept", compression=None),
]
LocalPipelineExecutor(pipeline=pipeline, tasks=1, workers=1, logging_dir=f"{work}/logs").run()
'''

# thresher's reason -> datatrove's (the n of an n-gram rule is in the detail).
RENAMED = {
    "heuristics_empty_text": "empty",
    "gopher_short_words": "gopher_below_avg_threshold",
    "gopher_long_words": "gopher_above_avg_threshold",
    "gopher_too_many_ellipses": "gopher_too_many_ellipsis",
    "gopher_too_many_bullet_lines": "gopher_too_many_bullets",
    "gopher_too_many_ellipsis_lines": "gopher_too_many_end_ellipsis",
    "gopher_too_few_alpha_words": "gopher_below_alpha_threshold",
    "gopher_too_few_stop_words": "gopher_enough_stop_words",
}


def datatrove_reason(rejection):
    reason, detail = rejection["reason"], rejection.get("detail") or {}
    if reason == "gopher_top_ngram":
        return f"top_{detail['n']}_gram"
    if reason == "gopher_duplicated_ngrams":
        return f"duplicated_{detail['n']}_n_grams"
    if reason in RENAMED:
        return RENAMED[reason]
    if reason in ("gopher_short_doc", "gopher_long_doc", "gopher_too_many_hashes"):
        return reason
    for prefix in ("gopher_", "c4_", "fineweb_"):
        if reason.startswith(prefix):
            return reason[len(prefix):]
    return reason


def main(thresher, work, size_mb):
    docs, text_mb = build_corpus(thresher, work, size_mb)
    python = sys.executable
    dt_wall, dt_rss = timed([python, "-c", DATATROVE, f"{work}/datatrove", f"{work}/input"],
                            dict(os.environ, OMP_NUM_THREADS="1"))
    dt_kept = {d["id"]: d["text"] for p in glob.glob(f"{work}/datatrove/kept/*") for d in read_lines(p)}
    dt_removed = {}
    for p in glob.glob(f"{work}/datatrove/removed/*/*"):
        for d in read_lines(p):
            dt_removed[d["id"]] = d["metadata"].get("filter_reason", "?")

    config = f"{work}/thresher.toml"
    with open(config, "w") as f:
        f.write(f'[input]\npath = "{work}/input"\n[output]\npath = "{work}/thresher"\n[run]\nthreads = 1\n'
                '[[stages]]\nkind = "heuristics"\nlanguages = ["*"]\n[stages.gopher_repetition]\n'
                '[stages.gopher_quality]\n[stages.c4_quality]\n[stages.fineweb_quality]\n')
    th_wall, th_rss = timed([thresher, "run", config], dict(os.environ, RUST_LOG="warn", RAYON_NUM_THREADS="1"))
    th_kept = {d["id"]: d["text"] for p in glob.glob(f"{work}/thresher/heuristics/*.jsonl.zst")
               for d in read_lines(p)}
    th_removed = {d["id"]: datatrove_reason(d["rejection"])
                  for p in glob.glob(f"{work}/thresher/heuristics/_rejected/**/*.jsonl.zst", recursive=True)
                  for d in read_lines(p)}

    print(f"corpus: {docs} documents, {text_mb:.1f} MB of text; one core each, read and write included")
    for name, wall, rss in [("datatrove 0.10.1 (spaCy 3.8 words)", dt_wall, dt_rss),
                            ("thresher heuristics", th_wall, th_rss)]:
        print(f"  {name:<36} {wall:7.1f} s  {docs / wall:8.0f} docs/s  {text_mb / wall:6.2f} MB/s  peak {rss:5.0f} MiB")
    print(f"  thresher / datatrove: {dt_wall / th_wall:.1f}x")
    same_kept = set(dt_kept) == set(th_kept)
    same_text = sum(dt_kept[i] == th_kept.get(i) for i in dt_kept)
    same_reason = sum(th_removed.get(i) == r for i, r in dt_removed.items())
    print(f"  kept: datatrove {len(dt_kept)}, thresher {len(th_kept)}, same set: {same_kept}; "
          f"same text {same_text}/{len(dt_kept)}")
    print(f"  dropped: datatrove {len(dt_removed)}, thresher {len(th_removed)}, same rule named: "
          f"{same_reason}/{len(dt_removed)}")
    for i, r in list((i, r) for i, r in dt_removed.items() if th_removed.get(i) != r)[:10]:
        print(f"    {i}: datatrove {r}, thresher {th_removed.get(i, 'kept')}")
    # datatrove's reader passes over documents without text; thresher rejects
    # them with a reason, so they are counted.
    unseen = [(i, r) for i, r in th_removed.items() if i not in dt_removed and i not in dt_kept]
    if unseen:
        reasons = sorted({r for _, r in unseen})
        print(f"  {len(unseen)} documents datatrove never saw (its reader skips them); thresher: {', '.join(reasons)}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
