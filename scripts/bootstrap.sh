#!/usr/bin/env bash
# Create .venv with the verified install order (see README "Installation by hand"), once; re-run the
# installs when this script or setup.py changed since (the stamp in .venv/.fmanet-ready).
# torch/torchvision first; basicsr ships only an sdist whose setup.py imports torch, so it is built
# with --no-build-isolation against the torch already installed (otherwise pip pulls a second torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
STAMP=$(cat scripts/bootstrap.sh setup.py | sha1sum | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ "$(cat .venv/.fmanet-ready 2>/dev/null)" = "$STAMP" ]; then
  exit 0
fi
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv (one-off, a few minutes)"
  "$PY" -m venv .venv
fi
PIP=".venv/bin/pip install --disable-pip-version-check -q"
$PIP torch==2.14.1 torchvision==0.29.1
$PIP --no-build-isolation basicsr==1.4.2
$PIP mmengine==0.10.7 mmcv-lite==2.2.0 lmdb opencv-python addict tqdm matplotlib pytest ruff
# video I/O (FFmpeg ships inside the av wheels) and scene-cut detection for tools/prepare_vsrdb.py
$PIP av==18.1.0 scenedetect==0.7.2
$PIP --no-build-isolation --no-deps -e .
echo "$STAMP" > .venv/.fmanet-ready
echo "[bootstrap] .venv ready"
