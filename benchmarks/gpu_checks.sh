#!/usr/bin/env bash
# Every GPU check of issues 14-16 in one prepared run (about 8 minutes on one H200), for a lent CUDA machine.
#
#   bash benchmarks/gpu_checks.sh            # logs under $OUT (the device tool's folder) or ./gpu-out
#
# Each step has its own time limit, so a slow one cannot eat the others' time; each writes
# $OUT/<step>.log and the script prints each log's tail.  Steps, in the order of their value:
#
#   cuda_tests    the CUDA-only tests: half precision against the fp32 goldens, batches and pinned memory,
#                 torch.compile padding, paste-back and yuv420p conversion on the device (issue 16)
#   bench_render  stage table, W + G per precision / layout / batch 1..32 with TFLOP/s and the fraction of
#                 the peak, memory per batch size, paste-back and colour-conversion tables (issue 16)
#   bench_live    4 live sessions side by side, rendered: first frame after speech starts, latency, FPS (14)
#   bench_dub     the dubbing job's stages on CUDA, fp16, with the W + G TFLOP/s line (issue 13's benchmark)
#
# What the machine needs beyond its image (torch, numpy, scipy, OpenCV, onnxruntime, safetensors, tqdm,
# pytest are there): PyAV, carried as a wheel in .whl/ (av 18.1.0, cp311-abi3 manylinux_2_28, 36 MB).
# The steps read tests/data: testdata images, landmarks, two speech files, one talking clip, both
# manifests, golden_M and golden_pipeline.  The whole tracked tree (93 MB) is over the 64 MiB that
# travels to a lent machine, so, on the developer's machine, before the run (measured: 25 MB + the wheel):
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl av==18.1.0
#   unneeded='^tests/data/fixtures/ditto/(golden_|inputs)|^tests/data/fixtures/liveportrait/golden_(F|G|W|crop)'
#   unneeded="$unneeded|^tests/data/testdata/driving/|^tests/data/testdata/talking/(hdtf_WDA|vr_)"
#   git ls-files | grep -E "$unneeded" > /tmp/unneeded && git rm -q --cached --pathspec-from-file=/tmp/unneeded
#   sed 's|^|/|' /tmp/unneeded >> .git/info/exclude        # untracked and ignored: they stay behind
#   (device tool) run: command "bash benchmarks/gpu_checks.sh", carry [".whl"], timeout_s 560
#   git reset -q && sed -i '\|^/tests/data/|d' .git/info/exclude   # the index and the ignore list as before
set -u
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

step() {  # step NAME SECONDS COMMAND...: run COMMAND with a time limit, its output in $OUT/NAME.log
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    echo "== $name: rc $rc, $((SECONDS - start)) s (limit $limit s): $*"
    tail -n 60 "$OUT/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
python3 -c "import torch, av; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'av', av.__version__)"

step cuda_tests 150 python3 -m pytest -q -rs -p no:cacheprovider -k "cuda or finish_tensor or planes or paste" \
    tests/test_precision.py tests/test_paste_tensor.py tests/test_media_yuv.py
step bench_render 180 python3 benchmarks/bench_render.py --device cuda --frames 64 --repeats 10
step bench_live 90 python3 benchmarks/bench_live.py --device cuda --sessions 4 --seconds 12
step bench_dub 60 python3 benchmarks/bench_dub.py --device cuda --precision fp16 --seconds 4 --render-frames 32 \
    --landmark-frames 1
