"""Model-only throughput of transformers (bf16, sdpa) at the fixed batch
shapes of ../shared/cuda/README.md, for a LlamaForSequenceClassification
checkpoint: the transformers half of the profile printed by
gpu/quality-vs-transformers.sh (thresher's half is `thresher bench --suite
quality --device cuda`, same shapes, same random-ids rule).

usage: shapes_with_transformers.py MODEL_DIR
"""

import sys
import time

import torch
from transformers import LlamaForSequenceClassification


def main(model_dir):
    model = LlamaForSequenceClassification.from_pretrained(
        model_dir, dtype=torch.bfloat16, attn_implementation="sdpa"
    ).cuda().eval()
    generator = torch.Generator().manual_seed(7)
    for rows, width in ((256, 128), (64, 512), (32, 1024), (16, 2048)):
        if width > model.config.max_position_embeddings:
            continue
        ids = torch.randint(0, model.config.vocab_size, (rows, width), generator=generator).cuda()
        mask = torch.ones_like(ids)
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask).logits.float().cpu()  # warm-up
            calls, start = 0, time.perf_counter()
            while calls < 3 or time.perf_counter() - start < 1.0:
                model(input_ids=ids, attention_mask=mask).logits.float().cpu()
                calls += 1
            seconds = time.perf_counter() - start
        print(f"    {rows:>3} x {width:<4}: {rows * width * calls / seconds:>10.0f} tokens/s")


if __name__ == "__main__":
    main(sys.argv[1])
