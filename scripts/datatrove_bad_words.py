"""datatrove's C4BadWordsFilter (0.10.1) on real documents, for the test
`stages/tests/bad_words_match_datatrove.rs`.

usage (in the venv of scripts/bench-heuristics, which has datatrove):
  python scripts/datatrove_bad_words.py stages/tests/fixtures/bad-words-datatrove.jsonl.zst

The documents are those of the heuristics fixture (web pages, source files,
sentences, and their changed copies; named by id there), each in the
language of its sentence file or English, plus paragraphs of sentences in
languages the heuristics fixture lacks (Chinese, Japanese and Thai, written
without spaces; German, Russian, Spanish, Hindi), whose text is stored here. The
word lists are made up to hit real text: common words, phrases, words with
regex characters and punctuation, words of other scripts; they test how
words are matched, not what a real list bans. datatrove fetches LDNOOBW
itself; here its download is replaced by these lists.
"""

import io
import json
import sys
import tempfile
from pathlib import Path

import zstandard
from datatrove.data import Document
from datatrove.pipeline.filters import c4_filters

REPO = Path(__file__).resolve().parent.parent
TESTDATA = REPO.parent / "shared" / "testdata"
HEURISTICS_FIXTURE = REPO / "stages" / "tests" / "fixtures" / "heuristics-datatrove.jsonl.zst"

LISTS = {
    "en": ["free", "casino", "click here", "sex", "hot", "adult", "dating", "cheap", "loan", "kill", "drug",
           "hell", "damn", "ass", "xxx", "porn", "u.s.", "c++", "e-mail", "you're", "new york", "2",
           "http", "www", "the end"],
    "de": ["und", "sex", "scheiße", "die"],
    "ru": ["и", "в", "секс"],
    "es": ["de", "la", "sexo", "más"],
    "ja": ["の", "エロ", "した"],
    "zh": ["的", "色情", "我们"],
    "th": ["ที่", "การ", "และ"],
    # Python's \W matches Devanagari's vowel signs (category Mc), so "क"
    # stands alone inside "किताब" for datatrove.
    "hi": ["के", "है", "क"],
}
EXTRA_LANGUAGES = ["ja", "zh", "th", "de", "ru", "es", "hi"]


def documents():
    """(id, lang, text, stored) for every document: `stored` when the
    fixture must hold the text (not in the heuristics fixture)."""
    raw = zstandard.ZstdDecompressor().stream_reader(open(HEURISTICS_FIXTURE, "rb"), read_across_frames=True)
    docs = []
    for line in io.TextIOWrapper(raw, encoding="utf-8"):
        record = json.loads(line)
        text = record["text"]
        if record["path"] is not None:
            data = (TESTDATA / record["path"]).read_bytes()[: record["max_bytes"]]
            text = data.decode("utf-8", "replace")
        doc_id = record["id"]
        lang = "en"
        if doc_id.startswith("langid/sentences/"):
            lang = doc_id.split("/")[-1].split(".")[0]
        docs.append((doc_id, lang, text, False))
    for lang in EXTRA_LANGUAGES:
        lines = (TESTDATA / "langid" / "sentences" / f"{lang}.txt").read_text().splitlines()
        for i in range(4):
            docs.append((f"extra:{lang}:{i}", lang, "\n".join(lines[i * 8 : i * 8 + 8]), True))
    return docs


def main(out):
    folder = Path(tempfile.mkdtemp())
    for lang, words in LISTS.items():
        (folder / lang).write_text("\n".join(words) + "\n")
    # datatrove downloads LDNOOBW's file of the language; give it ours.
    c4_filters.cached_asset_path_or_download = lambda url, **_: str(folder / url.rsplit("/", 1)[-1])
    c4_filters._EN_BADWORDS_URL = "lists/en"
    c4_filters._BADWORDS_URL = "lists/"
    # Only these languages have a list; the others pass, as in thresher.
    c4_filters._BADWORDS_LANGS = list(LISTS)
    bad_words = c4_filters.C4BadWordsFilter(fail_on_missing_language=False)
    buf = io.StringIO()
    buf.write(json.dumps({"lists": LISTS}, ensure_ascii=False) + "\n")
    removed = 0
    docs = documents()
    for doc_id, lang, text, stored in docs:
        verdict = bad_words.filter(Document(text=text, id=doc_id, metadata={"language": lang}))
        kept = verdict is True
        removed += not kept
        record = {"id": doc_id, "lang": lang, "text": text if stored else None, "removed": not kept}
        buf.write(json.dumps(record, ensure_ascii=False) + "\n")
    Path(out).write_bytes(zstandard.ZstdCompressor(level=19).compress(buf.getvalue().encode()))
    print(f"{len(docs)} documents, {removed} removed -> {out}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
