"""WARC pages -> main text: thresher's ingest against Python trafilatura.

Called by scripts/bench-warc (which builds the venv and the binary). Steps:
  1. gather real HTML pages: every 2xx HTML response of the WARC captures in
     ../shared/testdata (read with warcio, an implementation independent of
     thresher's), then HTML documentation installed on this machine (the Rust
     books, Node.js's API pages), up to --max-pages in all;
  2. write them into one WARC file as HTTP responses and run `thresher run`
     (ingest only, one thread) over it;
  3. extract the same pages with Python trafilatura as datatrove's
     `Trafilatura` step calls it (favor_precision, no comments, deduplicate;
     the duplicate cache cleared before each page, since thresher looks for
     duplicates within a page), timed on one core;
  4. print pages/s of both, their ratio, and how far the texts agree (word
     F1 per page; pages that one side keeps and the other finds empty).
"""

import argparse
import glob
import io
import json
import os
import subprocess
import sys
import time

import trafilatura
import zstandard
from trafilatura.deduplication import LRU_TEST
from warcio.archiveiterator import ArchiveIterator
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter


def crawled_pages(testdata):
    pages = []
    for path in sorted(glob.glob(os.path.join(testdata, "webcrawl", "**", "*.warc*"), recursive=True)):
        if ".wet" in path or ".wat" in path or (path.endswith(".warc") and os.path.exists(path + ".gz")):
            continue
        with open(path, "rb") as f:
            for record in ArchiveIterator(f):
                if record.rec_type != "response" or record.http_headers is None:
                    continue
                status = record.http_headers.get_statuscode()
                ctype = (record.http_headers.get_header("Content-Type") or "").lower()
                if status.startswith("2") and "html" in ctype:
                    body = record.content_stream().read()
                    pages.append((record.rec_headers.get_header("WARC-Target-URI"), ctype, body))
    return pages


def documentation_pages(limit):
    roots = sorted(glob.glob(os.path.expanduser("~/.rustup/toolchains/stable-*/share/doc/rust/html")))
    roots = [os.path.join(roots[0], sub) for sub in ("book", "reference", "cargo", "rustc", "edition-guide")] if roots else []
    roots.append("/usr/share/doc/nodejs/api")
    files = []
    for root in roots:
        found = sorted(glob.glob(os.path.join(root, "**", "*.html"), recursive=True))
        files.extend(f for f in found if os.path.getsize(f) > 4096 and "print.html" not in f)
    # Every source in turn, so that a small limit still mixes them.
    step = max(1, len(files) // max(limit, 1))
    pages = []
    for path in files[::step][:limit]:
        with open(path, "rb") as f:
            # A web URL: thresher passes over records of other schemes (dns:, metadata://).
            pages.append(("https://docs.invalid" + path, "text/html; charset=utf-8", f.read()))
    return pages


def word_f1(a, b):
    wa, wb = a.split(), b.split()
    if not wa and not wb:
        return 1.0
    if not wa or not wb:
        return 0.0
    from collections import Counter

    ca, cb = Counter(wa), Counter(wb)
    common = sum((ca & cb).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(wa), common / len(wb)
    return 2 * precision * recall / (precision + recall)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--thresher", required=True)
    parser.add_argument("--testdata", default="../shared/testdata")
    parser.add_argument("--dir", default="/tmp/thresher-bench-warc")
    parser.add_argument("--max-pages", type=int, default=600)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    crawled = crawled_pages(args.testdata)
    docs = documentation_pages(args.max_pages - len(crawled))
    pages = crawled + docs
    html_bytes = sum(len(p[2]) for p in pages)
    print(f"pages: {len(pages)} ({len(crawled)} crawled web pages, {len(docs)} documentation pages), {html_bytes / 1e6:.1f} MB of HTML")

    warc_path = os.path.join(args.dir, "pages.warc.gz")
    ids = []
    with open(warc_path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for url, ctype, body in pages:
            headers = StatusAndHeaders("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))], protocol="HTTP/1.1")
            record = writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)
            writer.write_record(record)
            ids.append(record.rec_headers.get_header("WARC-Record-ID").strip("<>"))

    out = os.path.join(args.dir, "out")
    config = os.path.join(args.dir, "bench.toml")
    with open(config, "w") as f:
        f.write(f'[input]\npath = "{warc_path}"\n[output]\npath = "{out}"\n[run]\nthreads = 1\nmax_error_rate = 1.0\n[[stages]]\nkind = "ingest"\n')
    subprocess.run(["rm", "-rf", out], check=True)
    start = time.perf_counter()
    subprocess.run([args.thresher, "run", config], check=True, stderr=subprocess.DEVNULL)
    thresher_wall = time.perf_counter() - start
    summary = json.load(open(os.path.join(out, "ingest", "_manifest", "stage.json")))
    thresher_cpu = summary["timing"]["cpu_seconds"]
    texts = {}
    for name in ("pages.jsonl.zst", "_rejected/pages.jsonl.zst"):
        path = os.path.join(out, "ingest", name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                data = zstandard.ZstdDecompressor().stream_reader(f).read().decode()
            for line in data.split("\n"):
                if line:
                    d = json.loads(line)
                    d = d.get("document", d)
                    texts[d["id"]] = d.get("text", "")

    python_texts = []
    start = time.process_time()
    for url, ctype, body in pages:
        LRU_TEST.clear()
        text = trafilatura.extract(body, favor_precision=True, include_comments=False, deduplicate=True)
        python_texts.append(text or "")
    python_cpu = time.process_time() - start

    n = len(pages)
    print(f"thresher ingest (one thread): {n / thresher_cpu:.1f} pages/s of CPU ({html_bytes / 1e6 / thresher_cpu:.2f} MB/s of HTML; wall {thresher_wall:.1f} s with start-up)")
    print(f"Python trafilatura {trafilatura.__version__} (one core): {n / python_cpu:.1f} pages/s ({html_bytes / 1e6 / python_cpu:.2f} MB/s)")
    print(f"thresher / Python trafilatura: {python_cpu / thresher_cpu:.2f}x pages/s")
    kinds = ["crawled"] * len(crawled) + ["documentation"] * len(docs)
    for kind in ("crawled", "documentation", "all"):
        f1s, only_thresher, only_python, worst = [], 0, 0, []
        for doc_id, (url, _, _), python_text, page_kind in zip(ids, pages, python_texts, kinds):
            if kind != "all" and page_kind != kind:
                continue
            ours = texts.get(doc_id, "")
            if ours.strip() and not python_text.strip():
                only_thresher += 1
                worst.append((0.0, url, "thresher only"))
            elif python_text.strip() and not ours.strip():
                only_python += 1
                worst.append((0.0, url, "Python only"))
            elif ours.strip():
                f1 = word_f1(ours, python_text)
                f1s.append(f1)
                worst.append((f1, url, f"{len(ours.split())} vs {len(python_text.split())} words"))
        f1s.sort()
        if f1s:
            print(
                f"{kind}: agreement on the {len(f1s)} pages both find text in: word F1 mean {sum(f1s) / len(f1s):.3f}, "
                f"median {f1s[len(f1s) // 2]:.3f}, >= 0.9 on {sum(f >= 0.9 for f in f1s) / len(f1s):.0%}, "
                f">= 0.5 on {sum(f >= 0.5 for f in f1s) / len(f1s):.0%}; text found by thresher only: {only_thresher}, by Python only: {only_python}"
            )
        if kind == "all":
            print("least agreement:")
            for f1, url, what in sorted(worst)[:8]:
                print(f"  {f1:.2f} {url} ({what})")


if __name__ == "__main__":
    sys.exit(main())
