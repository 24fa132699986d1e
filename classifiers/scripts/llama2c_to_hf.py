"""Converts a llama2.c model (`.bin`, Karpathy's legacy export) and its
tokenizer (`tokenizer.bin`) into a Hugging Face Llama checkpoint folder that
thresher and transformers load: `config.json` (LlamaForCausalLM, tied
embeddings), `model.safetensors` (f32) and `tokenizer.json` (SentencePiece-
style BPE with byte fallback, like Llama 2's).

Needs only numpy. Used by `scripts/make-demo-classifier`.

usage:
  python llama2c_to_hf.py MODEL.bin TOKENIZER.bin OUT_DIR
  python llama2c_to_hf.py MODEL.bin TOKENIZER.bin --reference-hidden ID,ID,...
      prints the final-normed hidden state of the last token, computed in
      llama2.c's own layout (interleaved RoPE, unpermuted weights): the
      reference the Rust loader is checked against after conversion.
  python llama2c_to_hf.py MODEL.bin TOKENIZER.bin --reference-encode TEXT
      prints the ids llama2.c's own encoder (run.c) gives TEXT, without BOS:
      the reference for the converted tokenizer.json.
"""

import json
import os
import struct
import sys

import numpy as np


def read_model(path):
    """The header and named weights of a llama2.c legacy (version 0) export."""
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, layers, heads, kv_heads, vocab, seq_len = struct.unpack("7i", data[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    head_dim = dim // heads
    floats = np.frombuffer(data, dtype="<f4", offset=28)
    shapes = [
        ("tok_embeddings", (vocab, dim)),
        ("attention_norm", (layers, dim)),
        ("wq", (layers, heads * head_dim, dim)),
        ("wk", (layers, kv_heads * head_dim, dim)),
        ("wv", (layers, kv_heads * head_dim, dim)),
        ("wo", (layers, dim, heads * head_dim)),
        ("ffn_norm", (layers, dim)),
        ("w1", (layers, hidden, dim)),
        ("w2", (layers, dim, hidden)),
        ("w3", (layers, hidden, dim)),
        ("norm", (dim,)),
        ("freq_cis_real", (seq_len, head_dim // 2)),
        ("freq_cis_imag", (seq_len, head_dim // 2)),
    ]
    if not shared:
        shapes.append(("output", (vocab, dim)))
    weights, offset = {}, 0
    for name, shape in shapes:
        n = int(np.prod(shape))
        if offset + n > floats.size:
            sys.exit(f"{path}: truncated at tensor {name}")
        weights[name] = floats[offset : offset + n].reshape(shape).astype(np.float32)
        offset += n
    if offset != floats.size:
        sys.exit(f"{path}: {floats.size - offset} floats left over; not a llama2.c legacy export?")
    header = dict(dim=dim, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, vocab=vocab,
                  seq_len=seq_len, shared=shared)
    return header, weights


def read_tokenizer(path, vocab_size):
    """(piece, score) pairs of a llama2.c tokenizer.bin."""
    with open(path, "rb") as f:
        data = f.read()
    offset, pieces = 4, []
    while offset < len(data):
        score, length = struct.unpack("fi", data[offset : offset + 8])
        offset += 8
        pieces.append((data[offset : offset + length].decode("utf-8"), score))
        offset += length
    if len(pieces) != vocab_size:
        sys.exit(f"{path}: {len(pieces)} pieces, the model has {vocab_size}")
    return pieces


def permute_for_rotate_half(w, heads):
    """llama2.c rotates interleaved pairs (2i, 2i+1); Hugging Face rotates
    halves (i, i + d/2). Reordering each head's output rows maps one onto the
    other (the permutation of transformers' convert_llama_weights_to_hf)."""
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


def tokenizer_json(pieces):
    """A Llama-2-style tokenizer.json: the pieces as a BPE vocabulary ('▁' for
    space), merges ordered by the merged piece's score (how SentencePiece BPE
    and llama2.c's encoder pick the next merge), byte fallback for the rest."""
    specials = {0: "<unk>", 1: "<s>", 2: "</s>"}
    vocab = {}
    for i, (piece, _) in enumerate(pieces):
        vocab[specials.get(i, piece.replace(" ", "\u2581"))] = i
    scored = [(specials.get(i, piece.replace(" ", "\u2581")), score) for i, (piece, score) in enumerate(pieces)]
    merges = []
    for piece, score in scored:
        if piece in specials.values() or piece.startswith("<0x"):
            continue
        local = [(piece[:k], piece[k:], score) for k in range(1, len(piece))
                 if piece[:k] in vocab and piece[k:] in vocab]
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: -m[2])  # stable: ties keep vocabulary order
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": name, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i, name in specials.items()
        ],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        ]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ]},
        "model": {
            "type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
            "vocab": vocab,
            "merges": [[a, b] for a, b, _ in merges],
        },
    }


def write_safetensors(path, tensors):
    """The safetensors format: 8-byte header length, JSON header, raw data."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        blob = np.ascontiguousarray(tensors[name], dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def convert(model_path, tokenizer_path, out):
    h, w = read_model(model_path)
    pieces = read_tokenizer(tokenizer_path, h["vocab"])
    tensors = {"model.embed_tokens.weight": w["tok_embeddings"], "model.norm.weight": w["norm"]}
    for i in range(h["layers"]):
        p = f"model.layers.{i}."
        tensors[p + "input_layernorm.weight"] = w["attention_norm"][i]
        tensors[p + "post_attention_layernorm.weight"] = w["ffn_norm"][i]
        tensors[p + "self_attn.q_proj.weight"] = permute_for_rotate_half(w["wq"][i], h["heads"])
        tensors[p + "self_attn.k_proj.weight"] = permute_for_rotate_half(w["wk"][i], h["kv_heads"])
        tensors[p + "self_attn.v_proj.weight"] = w["wv"][i]
        tensors[p + "self_attn.o_proj.weight"] = w["wo"][i]
        tensors[p + "mlp.gate_proj.weight"] = w["w1"][i]
        tensors[p + "mlp.down_proj.weight"] = w["w2"][i]
        tensors[p + "mlp.up_proj.weight"] = w["w3"][i]
    if not h["shared"]:
        tensors["lm_head.weight"] = w["output"]
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": h["vocab"],
        "hidden_size": h["dim"],
        "intermediate_size": h["hidden"],
        "num_hidden_layers": h["layers"],
        "num_attention_heads": h["heads"],
        "num_key_value_heads": h["kv_heads"],
        "max_position_embeddings": h["seq_len"],
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "tie_word_embeddings": h["shared"],
        "torch_dtype": "float32",
    }
    os.makedirs(out, exist_ok=True)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    with open(os.path.join(out, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_json(pieces), f, ensure_ascii=False)


def rmsnorm(x, weight, eps=1e-5):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def reference_hidden(model_path, ids):
    """llama2.c's forward pass (model.py), in its own layout, in float64."""
    h, w = read_model(model_path)
    heads, kv_heads, hd = h["heads"], h["kv_heads"], h["dim"] // h["heads"]
    t = len(ids)
    x = w["tok_embeddings"][ids].astype(np.float64)
    freqs = 1.0 / (10000.0 ** (np.arange(0, hd, 2) / hd))
    angles = np.outer(np.arange(t), freqs)
    cos, sin = np.cos(angles), np.sin(angles)

    def rope(v):  # v: [t, heads, hd], pairs (2i, 2i+1)
        even, odd = v[..., 0::2], v[..., 1::2]
        out = np.empty_like(v)
        out[..., 0::2] = even * cos[:, None, :] - odd * sin[:, None, :]
        out[..., 1::2] = even * sin[:, None, :] + odd * cos[:, None, :]
        return out

    mask = np.triu(np.full((t, t), -np.inf), 1)
    for i in range(h["layers"]):
        a = rmsnorm(x, w["attention_norm"][i])
        q = rope((a @ w["wq"][i].T).reshape(t, heads, hd))
        k = rope((a @ w["wk"][i].T).reshape(t, kv_heads, hd))
        v = (a @ w["wv"][i].T).reshape(t, kv_heads, hd)
        k = np.repeat(k, heads // kv_heads, axis=1)
        v = np.repeat(v, heads // kv_heads, axis=1)
        scores = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        attn = np.einsum("hts,shd->thd", scores, v).reshape(t, heads * hd)
        x = x + attn @ w["wo"][i].T
        f = rmsnorm(x, w["ffn_norm"][i])
        gate = f @ w["w1"][i].T
        x = x + ((gate / (1 + np.exp(-gate))) * (f @ w["w3"][i].T)) @ w["w2"][i].T
    return rmsnorm(x, w["norm"])[-1]


def reference_encode(model_path, tokenizer_path, text):
    """run.c's encode(): a dummy-prefix space, one token per UTF-8 character
    (bytes + 3 when the character is not a piece), then repeatedly merge the
    adjacent pair whose concatenation is the best-scoring piece."""
    h, _ = read_model(model_path)
    pieces = read_tokenizer(tokenizer_path, h["vocab"])
    index = {piece: i for i, (piece, _) in enumerate(pieces)}
    tokens = []
    for ch in " " + text if text else "":
        tokens.extend([index[ch]] if ch in index else [b + 3 for b in ch.encode("utf-8")])
    while True:
        best = None
        for i in range(len(tokens) - 1):
            merged = index.get(pieces[tokens[i]][0] + pieces[tokens[i + 1]][0])
            if merged is not None and (best is None or pieces[merged][1] > pieces[best[1]][1]):
                best = (i, merged)
        if best is None:
            return tokens
        tokens[best[0] : best[0] + 2] = [best[1]]


def main(argv):
    if len(argv) == 5 and argv[3] == "--reference-hidden":
        ids = [int(i) for i in argv[4].split(",")]
        print(json.dumps([float(v) for v in reference_hidden(argv[1], ids)]))
    elif len(argv) == 5 and argv[3] == "--reference-encode":
        print(json.dumps(reference_encode(argv[1], argv[2], argv[4])))
    elif len(argv) == 4:
        convert(argv[1], argv[2], argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
