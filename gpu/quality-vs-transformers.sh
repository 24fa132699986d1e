#!/usr/bin/env bash
# The GPU check of the `quality` stage (issue 4), in one prepared run:
# thresher (CUDA, bf16) against transformers (bf16, sdpa) on the same >= 10,000
# real documents, same truncation and batch budget: tokens/s of both and the
# largest score difference.
#
# Here (no GPU needed), stage what travels into gpu-run/ (ignored by git):
#   ../shared/cuda/build-cuda.sh build --release -p thresher --features cuda --target-dir target-cuda
#   bash gpu/quality-vs-transformers.sh stage
# Then on the device (the `run` tool, carry ["gpu-run"]), with a timeout that
# leaves room for a rerun:
#   bash gpu/quality-vs-transformers.sh run
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_TOKENS=${MAX_TOKENS:-512}
BATCH_TOKENS=${BATCH_TOKENS:-16384}

case "${1:-}" in
stage)
    mkdir -p gpu-run
    grep -qx '/gpu-run/' .git/info/exclude 2>/dev/null || echo '/gpu-run/' >> .git/info/exclude
    xz -T0 -9 -c target-cuda/release/thresher > gpu-run/thresher.xz
    cp ../shared/cuda/run-on-device.sh gpu-run/
    cp ../shared/testdata/tokenizer/llama3-tokenizer.json gpu-run/
    # 10,000+ real documents from the benchmark corpus, as plain JSONL.
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/thresher/target}"
    cargo build --locked --release -p thresher
    "$CARGO_TARGET_DIR/release/thresher" bench --suite tokenize --size-mb 60 --dir /tmp/thresher-gpu-bench --keep >/dev/null
    zstdcat /tmp/thresher-gpu-bench/corpus/*.jsonl.zst | head -n 12000 > gpu-run/docs.jsonl
    # The device has no zstandard for Python and no network: carry the wheel.
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d gpu-run/whl zstandard
    wc -l gpu-run/docs.jsonl
    du -sh gpu-run
    ;;
run)
    work=${TMPDIR:-/tmp}/quality-gpu
    rm -rf "$work" && mkdir -p "$work"
    python3 -m pip install -q --no-index --no-deps --target "$work/site" gpu-run/whl/*.whl
    export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
    python3 gpu/make_classifier.py gpu-run/llama3-tokenizer.json "$work/model"
    cat > "$work/pipeline.toml" <<TOML
[input]
path = "gpu-run/docs.jsonl"
[output]
path = "$work/out"
[[stages]]
kind = "quality"
model = "$work/model"
device = "cuda"
max_tokens = $MAX_TOKENS
batch_tokens = $BATCH_TOKENS
TOML
    bash gpu-run/run-on-device.sh gpu-run/thresher.xz run "$work/pipeline.toml"
    python3 gpu/score_with_transformers.py "$work/model" gpu-run/docs.jsonl "$work/out/quality" "$MAX_TOKENS" "$BATCH_TOKENS" \
        | tee "${OUT:-$work}/quality-vs-transformers.txt"
    ;;
*)
    echo "usage: $0 stage|run" >&2
    exit 2
    ;;
esac
