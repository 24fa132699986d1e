"""A random LlamaForSequenceClassification over the Llama 3 vocabulary, saved
in bf16 with the tokenizer beside it. Runs on the device, where transformers
is installed. Shapes:
  smollm (default): SmolLM-135M's (576 hidden, 30 layers, 9 query heads over
    3 KV heads of 64, 1536 MLP), the one the comparison is timed on;
  d128: heads of 128 (512 hidden, 6 layers, 4 query heads over 2 KV heads,
    1376 MLP), the size of Llama 3 8B's heads, so the fused attention's
    head_dim 128 kernel runs on the device too.

usage: make_classifier.py TOKENIZER_JSON OUT_DIR [smollm|d128]
"""

import shutil
import sys

import torch
from transformers import LlamaConfig, LlamaForSequenceClassification


SHAPES = {
    "smollm": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                   num_key_value_heads=3),
    "d128": dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=6, num_attention_heads=4,
                 num_key_value_heads=2),
}


def main(tokenizer_json, out_dir, shape="smollm"):
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128256,
        **SHAPES[shape],
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        bos_token_id=128000,
        eos_token_id=128001,
        # <|finetune_right_pad_id|>: never produced by text, so transformers finds
        # the last real token of a right-padded row by looking for it.
        pad_token_id=128004,
        num_labels=1,
        tie_word_embeddings=False,
    )
    model = LlamaForSequenceClassification(config).to(torch.bfloat16)
    model.save_pretrained(out_dir, safe_serialization=True)
    shutil.copy(tokenizer_json, f"{out_dir}/tokenizer.json")


if __name__ == "__main__":
    main(*sys.argv[1:4])
