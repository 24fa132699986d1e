"""Read thresher's packed output: rows of ``seq_len`` tokens whose documents
must not attend to each other.

Needs only numpy. Everything is memory-mapped, so opening a dataset of any
size is instant and rows are read on demand::

    from thresher_data import PackedDataset
    data = PackedDataset("out/quickstart/pack")
    row = data[0]
    row["tokens"]        # (seq_len,) uint32 token ids, padded with the pad id
    row["cu_seqlens"]    # (segments + 1,) int32: flash-attention's cu_seqlens
    row["position_ids"]  # (seq_len,) int64: restart at 0 in every segment
    row["document_ids"]  # (seq_len,) int64: segment index in the row, -1 on padding
    row["documents"]     # (segments,) int64: index into documents.jsonl.zst
    row["chunks"]        # (segments,) int64: 0 unless the document was split

With PyTorch FlexAttention, a document-causal mask for one row::

    import torch
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention
    doc = torch.as_tensor(row["document_ids"], device="cuda")
    def mask_mod(b, h, q_idx, kv_idx):
        same_doc = doc[q_idx] == doc[kv_idx]
        return same_doc & (q_idx >= kv_idx) & (doc[q_idx] >= 0)
    block_mask = create_block_mask(mask_mod, None, None, len(doc), len(doc))
    out = flex_attention(q, k, v, block_mask=block_mask)

(For a batch, stack the rows' ``document_ids`` and index them with ``b``.)
``document_mask`` below builds the same mask as a dense numpy array, for
checking and for small models.
"""

import json
import os

import numpy as np

FILES = {
    "tokens": ("tokens.u32", "<u4"),
    "row_ptr": ("row_ptr.u64", "<u8"),
    "seg_len": ("seg_len.u32", "<u4"),
    "seg_doc": ("seg_doc.u32", "<u4"),
    "seg_chunk": ("seg_chunk.u32", "<u4"),
}


def _map(path, dtype):
    # np.memmap cannot map an empty file.
    if os.path.getsize(path) == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")


class PackedDataset:
    """The packed rows of one thresher ``pack`` stage folder."""

    def __init__(self, root):
        self.root = root
        with open(os.path.join(root, "manifest.json")) as f:
            self.manifest = json.load(f)
        self.seq_len = int(self.manifest["seq_len"])
        self.pad_id = int(self.manifest["special_ids"]["pad"])
        arrays = {name: _map(os.path.join(root, fname), dtype) for name, (fname, dtype) in FILES.items()}
        self.tokens = arrays["tokens"].reshape(-1, self.seq_len)
        self.row_ptr = arrays["row_ptr"]
        self.seg_len = arrays["seg_len"]
        self.seg_doc = arrays["seg_doc"]
        self.seg_chunk = arrays["seg_chunk"]
        if len(self.row_ptr) != len(self.tokens) + 1:
            raise ValueError(f"{root}: row_ptr has {len(self.row_ptr)} entries for {len(self.tokens)} rows")

    def __len__(self):
        return len(self.tokens)

    def __getitem__(self, i):
        if not 0 <= i < len(self):
            raise IndexError(i)
        lo, hi = int(self.row_ptr[i]), int(self.row_ptr[i + 1])
        lengths = np.asarray(self.seg_len[lo:hi], dtype=np.int64)
        cu_seqlens = np.zeros(len(lengths) + 1, dtype=np.int32)
        np.cumsum(lengths, out=cu_seqlens[1:])
        used = int(cu_seqlens[-1])
        document_ids = np.full(self.seq_len, -1, dtype=np.int64)
        document_ids[:used] = np.repeat(np.arange(len(lengths)), lengths)
        position_ids = np.zeros(self.seq_len, dtype=np.int64)
        position_ids[:used] = np.arange(used) - np.repeat(cu_seqlens[:-1], lengths)
        # Padding counts on from the last segment's end so positions stay in range.
        position_ids[used:] = np.arange(self.seq_len - used)
        return {
            "tokens": np.asarray(self.tokens[i]),
            "cu_seqlens": cu_seqlens,
            "position_ids": position_ids,
            "document_ids": document_ids,
            "documents": np.asarray(self.seg_doc[lo:hi], dtype=np.int64),
            "chunks": np.asarray(self.seg_chunk[lo:hi], dtype=np.int64),
        }

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


def document_mask(document_ids):
    """Dense (seq_len, seq_len) boolean mask: query q may attend to key k iff
    both are in the same segment, k <= q, and q is not padding."""
    doc = np.asarray(document_ids)
    q = np.arange(len(doc))[:, None]
    k = np.arange(len(doc))[None, :]
    return (doc[:, None] == doc[None, :]) & (k <= q) & (doc[:, None] >= 0)
