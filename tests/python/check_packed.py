"""Checks a packed `pack` folder through python/thresher_data.py against its
provenance: every document's tokens appear exactly once, in order, across
its chunks; only documents longer than a row are split; no row overflows;
and the reader's masks never let a token see another document.

usage: check_packed.py PACK_DIR   (exit 0 when every check passes)
"""

import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "python"))
from thresher_data import PackedDataset, document_mask  # noqa: E402


def main(root):
    data = PackedDataset(root)
    seq_len, pad = data.seq_len, data.pad_id
    bos = data.manifest["special_ids"]["bos"]
    assert bos is not None, "this check splits documents at BOS"
    # The original token sequences, from the tokenize step, in input order.
    with open(os.path.join(root, "_manifest", "stage.json")) as f:
        shards = json.load(f)["shards"]
    stream = np.concatenate(
        [np.fromfile(os.path.join(root, "tokens", s[: -len(".jsonl.zst")] + ".u32"), dtype="<u4") for s in shards]
    )
    starts = np.flatnonzero(stream == bos)
    assert len(stream) == 0 or starts[0] == 0
    originals = np.split(stream, starts[1:]) if len(stream) else []
    assert len(originals) == data.manifest["documents"], (len(originals), data.manifest["documents"])

    pieces = [dict() for _ in originals]
    rows_checked = 0
    for i in range(len(data)):
        row = data[i]
        cu = row["cu_seqlens"]
        used = int(cu[-1])
        assert used <= seq_len, f"row {i} holds {used} tokens"
        assert (row["tokens"][used:] == pad).all(), f"row {i}: padding is not the pad id"
        for s, (doc, chunk) in enumerate(zip(row["documents"], row["chunks"])):
            segment = row["tokens"][cu[s] : cu[s + 1]]
            assert chunk not in pieces[doc], f"document {doc} chunk {chunk} appears twice"
            pieces[doc][int(chunk)] = segment
            assert (row["position_ids"][cu[s] : cu[s + 1]] == np.arange(len(segment))).all()
        # The reader's mask against the provenance: attention only within one
        # segment (one document chunk), causally, and never from padding.
        seg_of = row["document_ids"]
        mask = document_mask(seg_of)
        q, k = np.nonzero(mask)
        assert (seg_of[q] == seg_of[k]).all() and (k <= q).all() and (seg_of[q] >= 0).all(), f"row {i}: mask crosses"
        prov = np.where(seg_of >= 0, row["documents"][np.maximum(seg_of, 0)], -1)
        assert (prov[q] == prov[k]).all(), f"row {i}: a token sees another document"
        expected_pairs = sum(n * (n + 1) // 2 for n in np.diff(cu))
        assert len(q) == expected_pairs, f"row {i}: mask has {len(q)} pairs, expected {expected_pairs}"
        rows_checked += 1

    split = 0
    for doc, original in enumerate(originals):
        chunks = pieces[doc]
        assert sorted(chunks) == list(range(len(chunks))), f"document {doc}: chunks {sorted(chunks)}"
        rebuilt = np.concatenate([chunks[c] for c in range(len(chunks))])
        assert (rebuilt == original).all(), f"document {doc}: tokens differ from the tokenize step"
        expected_chunks = -(-len(original) // seq_len)
        assert len(chunks) == expected_chunks, f"document {doc} of {len(original)} tokens has {len(chunks)} chunks"
        split += len(chunks) > 1
    assert split == data.manifest["documents_split"]
    print(
        f"ok: {rows_checked} rows, {len(originals)} documents ({split} longer than {seq_len} split), "
        f"fill {data.manifest['fill_percent']:.3f}%"
    )


if __name__ == "__main__":
    main(sys.argv[1])
