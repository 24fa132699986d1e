"""The baseline of gpu/quality-vs-transformers.sh: transformers (bf16, sdpa)
scores the same documents with the same truncation and batch budget as
thresher's `quality` stage, then compares its scores with thresher's output.

usage: score_with_transformers.py MODEL_DIR DOCS_JSONL MAX_TOKENS BATCH_TOKENS THRESHER_STAGE_DIR...
(one stage folder per thresher run, e.g. fused and plain kernels)
"""

import glob
import io
import json
import os
import sys
import time

import torch
import zstandard  # carried as a wheel by quality-vs-transformers.sh
from transformers import AutoTokenizer, LlamaForSequenceClassification


def read_jsonl_zst(path):
    # A bare read() of a stream reader may stop at a frame or buffer edge:
    # iterate lines across every frame instead.
    with open(path, "rb") as f:
        reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
        return [json.loads(line) for line in io.TextIOWrapper(reader, encoding="utf-8") if line.strip()]


def read_docs(path):
    if path.endswith(".zst"):
        return read_jsonl_zst(path)
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def label_values(labels):
    """thresher's rule: a label's value is its name when that is a number,
    else its index."""
    try:
        return [float(label) for label in labels]
    except ValueError:
        return [float(i) for i in range(len(labels))]


def score_of(logits, values):
    """The score thresher writes: the logit of a regression head, else the
    expected value of the label probabilities."""
    if len(values) == 1:
        return logits[0].item()
    probabilities = torch.softmax(logits, dim=-1)
    return sum(p.item() * v for p, v in zip(probabilities, values))


def main(model_dir, docs_path, max_tokens, batch_tokens, *stage_dirs):
    max_tokens, batch_tokens = int(max_tokens), int(batch_tokens)
    docs = read_docs(docs_path)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = LlamaForSequenceClassification.from_pretrained(
        model_dir, dtype=torch.bfloat16, attn_implementation="sdpa"
    ).cuda().eval()
    pad = model.config.pad_token_id
    # thresher's rule: never past the model's trained context.
    max_tokens = min(max_tokens, model.config.max_position_embeddings)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    values = label_values(labels)

    torch.cuda.synchronize()
    start = time.perf_counter()
    # Same input as thresher: BOS + text, cut at max_tokens.
    ids = tokenizer([d["text"] for d in docs], add_special_tokens=True, truncation=True, max_length=max_tokens)["input_ids"]
    tokenized = time.perf_counter()
    order = sorted(range(len(ids)), key=lambda i: (-len(ids[i]), i))
    scores = [None] * len(ids)
    tokens = sum(len(i) for i in ids)
    with torch.no_grad():
        pos = 0
        while pos < len(order):
            width = len(ids[order[pos]])
            batch = order[pos : pos + max(1, batch_tokens // width)]
            rows = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                rows[r, : len(ids[i])] = torch.tensor(ids[i])
                mask[r, : len(ids[i])] = 1
            logits = model(input_ids=rows.cuda(), attention_mask=mask.cuda()).logits.float().cpu()
            for r, i in enumerate(batch):
                scores[i] = score_of(logits[r], values)
            pos += len(batch)
    torch.cuda.synchronize()
    end = time.perf_counter()
    seconds, model_seconds = end - start, end - tokenized

    print(f"documents: {len(docs)}, tokens scored by transformers: {tokens}")
    print(f"transformers (bf16, sdpa): {tokens / seconds:,.0f} tokens/s ({seconds:.2f} s, tokenization included)")
    # Its tokenizer reads whole documents before cutting them; the model's
    # share alone is the fairer measure of the kernels.
    print(f"  of which tokenizing {tokenized - start:.2f} s; padding and model alone: "
          f"{tokens / model_seconds:,.0f} tokens/s")
    for stage_dir in stage_dirs:
        compare(stage_dir, docs, scores, tokens / seconds, tokens / model_seconds)


def compare(stage_dir, docs, scores, baseline_rate, model_rate):
    """One thresher run (its quality stage folder) against transformers."""
    if not os.path.exists(os.path.join(stage_dir, "_manifest", "stage.json")):
        print(f"thresher, {stage_dir}: no manifest (the run failed)")
        return
    with open(os.path.join(stage_dir, "_manifest", "stage.json")) as f:
        stage = json.load(f)
    ours = {}
    for shard in glob.glob(os.path.join(stage_dir, "*.jsonl.zst")):
        for doc in read_jsonl_zst(shard):
            ours[doc["id"]] = doc["metadata"]["quality"]["score"]
    diffs = [abs(ours[d["id"]] - s) for d, s in zip(docs, scores) if d["id"] in ours]
    thresher_tokens = stage["stats"]["quality"]["tokens_scored"]
    thresher_seconds = stage["timing"]["wall_seconds"]
    rate = thresher_tokens / thresher_seconds
    print(f"thresher, {stage_dir}:")
    print(f"  {rate:,.0f} tokens/s ({thresher_tokens} tokens, {thresher_seconds:.2f} s, reading, tokenization and writing included)")
    print(f"  thresher / transformers: {rate / baseline_rate:.2f}x "
          f"(/ transformers' padding and model alone: {rate / model_rate:.2f}x)")
    if diffs:
        print(f"  scores compared: {len(diffs)}; max |difference| {max(diffs):.4f}; mean {sum(diffs) / len(diffs):.4f} (bf16 on both sides)")
    else:
        print("  no scores to compare: the run wrote no documents")


if __name__ == "__main__":
    main(*sys.argv[1:])
