"""Makes the parity fixtures of thresher's Llama sequence classifier.

Two tiny random `LlamaForSequenceClassification` checkpoints (GQA, 3 layers):
`regression` (num_labels = 1) and `classes` (3 labels, Llama 3 RoPE scaling),
saved with transformers' `save_pretrained`, and their logits on padded
batches (right padding, attention mask) in `expected.json`. The Rust tests
load the checkpoints and must match the logits within 1e-4 (f32, CPU).

usage: python make_tiny_classifier.py OUT_DIR   (needs torch and transformers)
"""

import json
import os
import sys

import torch
import transformers
from transformers import LlamaConfig, LlamaForSequenceClassification


def make(out_dir, name, num_labels, rope_scaling):
    torch.manual_seed(1234 + num_labels)
    config = LlamaConfig(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=172,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        num_labels=num_labels,
        tie_word_embeddings=False,
        # Larger than the default 0.02, so that logits are far from zero and
        # a 1e-4 tolerance means something.
        initializer_range=0.15,
        rope_scaling=rope_scaling,
    )
    if num_labels > 1:
        config.id2label = {i: label for i, label in enumerate(["low", "medium", "high"][:num_labels])}
        config.label2id = {v: k for k, v in config.id2label.items()}
    model = LlamaForSequenceClassification(config).eval()
    path = os.path.join(out_dir, name)
    model.save_pretrained(path, safe_serialization=True)

    generator = torch.Generator().manual_seed(99)
    cases = []
    for lengths in ([5, 17, 33], [64, 1, 12, 40], [100]):
        width = max(lengths)
        ids = torch.zeros((len(lengths), width), dtype=torch.long)
        mask = torch.zeros((len(lengths), width), dtype=torch.long)
        rows = []
        for i, n in enumerate(lengths):
            row = torch.randint(3, 512, (n,), generator=generator)
            ids[i, :n] = row
            mask[i, :n] = 1
            rows.append(row.tolist())
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        cases.append({"input_ids": rows, "logits": logits.tolist()})
    with open(os.path.join(path, "expected.json"), "w") as f:
        json.dump({"transformers": transformers.__version__, "torch": torch.__version__, "cases": cases}, f)


def main(out_dir):
    make(out_dir, "regression", 1, None)
    make(
        out_dir,
        "classes",
        3,
        {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
         "original_max_position_embeddings": 64},
    )


if __name__ == "__main__":
    main(sys.argv[1])
