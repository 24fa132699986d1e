"""Python tiktoken on the texts `thresher bench --export-texts` wrote, with
Meta's Llama 3 tokenizer.model: the baseline of scripts/bench-tokenize.

usage: bench_tiktoken.py TOKENIZER_MODEL TEXTS_JSONL THRESHER_RESULT_JSON
"""

import json
import sys
import time

import tiktoken
from tiktoken.load import load_tiktoken_bpe

# Meta's pattern (llama-models tokenizer.py); the 256 special tokens follow the ranks.
PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def main(model, texts_path, result_path):
    ranks = load_tiktoken_bpe(model)
    specials = {f"<|reserved_special_token_{i}|>": len(ranks) + i for i in range(256)}
    enc = tiktoken.Encoding(name="llama3", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens=specials)
    with open(texts_path) as f:
        texts = [json.loads(line) for line in f]
    size = sum(len(t.encode()) for t in texts)
    start = time.perf_counter()
    tokens = 0
    for t in texts:
        # As Meta's Tokenizer.encode: special-token text is plain text.
        tokens += len(enc.encode(t, disallowed_special=()))
    seconds = time.perf_counter() - start
    with open(result_path) as f:
        thresher = json.load(f)
    tiktoken_mbps = size / 1e6 / seconds
    ours = thresher["tokenize_mb_per_s_one_thread"]
    print(f"python tiktoken {tiktoken.__version__}, one thread: {tiktoken_mbps:.2f} MB/s, {tokens} tokens")
    print(f"thresher, one thread:                {ours:.2f} MB/s, {thresher['tokens']} tokens")
    print(f"thresher / tiktoken per core:        {ours / tiktoken_mbps:.2f}x")
    if tokens != thresher["tokens"] or size != thresher["bytes"]:
        sys.exit(f"token counts differ: tiktoken {tokens}, thresher {thresher['tokens']}")


if __name__ == "__main__":
    main(*sys.argv[1:4])
