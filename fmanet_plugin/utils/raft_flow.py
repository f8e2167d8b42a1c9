"""RAFT pseudo-ground-truth flow for VSRDB training (torchvision's RAFT, local weights only).

Weights may be torchvision's own state dict or the original princeton-vl release (``raft-small.pth``,
``raft-things.pth``: a ``DataParallel`` state dict, keys prefixed with ``module.``); the latter is mapped
onto torchvision's module names by :func:`princeton_to_torchvision`.

Flow convention (as everywhere in this package): ``flow[c]`` maps the centre frame onto a neighbour,
``centre(p) = neighbour(p + flow(p))`` so that ``flow_warp(neighbour, flow)`` reconstructs the centre;
channels (x, y) in pixels.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from fmanet_plugin.utils.atomic_io import atomic_save_npy
from fmanet_plugin.utils.lmdb_io import AtomicLmdbWriter

import numpy as np
import torch
import torch.nn.functional as F
from basicsr.utils import get_root_logger, imfrombytes, img2tensor
from torchvision.models.optical_flow import RAFT, raft_large, raft_small
from tqdm import tqdm

MIN_RAFT_SIZE = 128  # torchvision's correlation pyramid needs feature maps (1/8 of the input) of >= 16 px

_UPDATE_BLOCK_RULES = [
    (r'^update_block\.encoder\.convc(\d)\.', r'update_block.motion_encoder.convcorr\1.0.'),
    (r'^update_block\.encoder\.convf(\d)\.', r'update_block.motion_encoder.convflow\1.0.'),
    (r'^update_block\.encoder\.conv\.', r'update_block.motion_encoder.conv.0.'),
    (r'^update_block\.gru\.conv([zrq])(\d)\.', r'update_block.recurrent_block.convgru\2.conv\1.'),  # large
    (r'^update_block\.gru\.conv([zrq])\.', r'update_block.recurrent_block.convgru1.conv\1.'),  # small
    (r'^update_block\.mask\.0\.', r'mask_predictor.convrelu.0.'),
    (r'^update_block\.mask\.2\.', r'mask_predictor.conv.'),
]


def princeton_to_torchvision(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an original RAFT (princeton-vl) state dict to torchvision's RAFT module names.

    ``fnet``/``cnet`` -> ``feature_encoder``/``context_encoder`` (stem ``conv1``/``norm1`` ->
    ``convnormrelu.0/1``, head ``conv2`` -> ``conv``); block ``convK``/``normK`` ->
    ``convnormreluK.0/1``; a block's extra ``normK`` without a ``convK`` is the normalisation inside
    ``downsample`` (stored twice in the original) and is dropped; update block ``encoder`` ->
    ``motion_encoder`` (``convcK`` -> ``convcorrK.0``, ``convfK`` -> ``convflowK.0``, ``conv`` -> ``conv.0``),
    ``gru.convX[K]`` -> ``recurrent_block.convgru{K or 1}.convX``, ``mask.0/2`` -> ``mask_predictor``.

    Args:
        state_dict (dict[str, Tensor]): Original RAFT weights, with or without the ``module.`` prefix.

    Returns:
        dict[str, Tensor]: The same tensors under torchvision's names.
    """
    stripped = {k.removeprefix('module.'): v for k, v in state_dict.items()}
    converted = {}
    for key, value in stripped.items():
        new = re.sub(r'^fnet\.', 'feature_encoder.', key)
        new = re.sub(r'^cnet\.', 'context_encoder.', new)
        encoder = r'^(feature_encoder|context_encoder)\.'
        new = re.sub(encoder + r'conv1\.', r'\1.convnormrelu.0.', new)
        new = re.sub(encoder + r'norm1\.', r'\1.convnormrelu.1.', new)
        new = re.sub(encoder + r'conv2\.', r'\1.conv.', new)
        block = re.match(encoder + r'(layer\d+\.\d+)\.(conv|norm)(\d)\.(.+)$', new)
        if block:
            enc, layer, kind, idx, rest = block.groups()
            if kind == 'norm' and not any(k.startswith(f'{key.split(".")[0]}.{layer}.conv{idx}.') for k in stripped):
                continue  # duplicate of downsample.1
            new = f'{enc}.{layer}.convnormrelu{idx}.{0 if kind == "conv" else 1}.{rest}'
        for pattern, repl in _UPDATE_BLOCK_RULES:
            new = re.sub(pattern, repl, new)
        converted[new] = value
    return converted


def load_raft(weights: str | Path, model: str = 'auto', device: str | torch.device = 'cpu') -> RAFT:
    """Build torchvision's RAFT and load a local weights file (nothing is downloaded).

    Args:
        weights (str | Path): torchvision or princeton-vl RAFT state dict (``.pth``).
        model (str): ``'small'``, ``'large'`` or ``'auto'`` (large if the weights have a mask predictor).
        device (str | torch.device): Device of the returned model. Default: ``'cpu'``.

    Returns:
        RAFT: The model in eval mode.
    """
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"RAFT weights '{path}' not found")
    state = torch.load(path, map_location='cpu', weights_only=True)
    if isinstance(state, dict) and isinstance(state.get('state_dict'), dict):
        state = state['state_dict']
    if not any(k.removeprefix('module.').startswith('feature_encoder.') for k in state):
        state = princeton_to_torchvision(state)
    state = {k.removeprefix('module.'): v for k, v in state.items()}
    if model == 'auto':
        model = 'large' if any(k.startswith('mask_predictor.') for k in state) else 'small'
    if model not in ('small', 'large'):
        raise ValueError(f"model must be 'small', 'large' or 'auto', got {model!r}")
    net = (raft_small if model == 'small' else raft_large)(weights=None, progress=False)
    expected = net.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(
            f"'{path}' does not match torchvision raft_{model}: missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f'wrong shapes {wrong[:5]} ({len(missing)}/{len(unexpected)}/{len(wrong)} in all)'
        )
    net.load_state_dict(state)
    return net.eval().to(device)


@torch.no_grad()
def compute_flow(raft: RAFT, centre: torch.Tensor, neighbour: torch.Tensor, num_updates: int = 12) -> torch.Tensor:
    """Flow from ``centre`` to ``neighbour`` (``flow_warp(neighbour, flow)`` approximates ``centre``).

    Frames are mapped to [-1, 1] and replicate-padded to multiples of 8; frames smaller than 128 px are
    first upscaled by an integer factor k (bilinear) and the flow is averaged back over k x k blocks and
    divided by k.

    Args:
        raft (RAFT): torchvision RAFT (e.g. from :func:`load_raft`).
        centre (Tensor): RGB frames (b, 3, h, w) in [0, 1].
        neighbour (Tensor): RGB frames (b, 3, h, w) in [0, 1].
        num_updates (int): Recurrent flow updates. Default: 12.

    Returns:
        Tensor: Flow (b, 2, h, w), channels (x, y), in pixels of the input frames.
    """
    h, w = centre.shape[-2:]
    k = math.ceil(MIN_RAFT_SIZE / min(h, w)) if min(h, w) < MIN_RAFT_SIZE else 1
    pair = torch.cat([centre, neighbour]) * 2 - 1
    if k > 1:
        pair = F.interpolate(pair, scale_factor=k, mode='bilinear', align_corners=False)
    ph, pw = (-pair.shape[-2]) % 8, (-pair.shape[-1]) % 8
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    pair = F.pad(pair, pad, mode='replicate')
    flow = raft(*pair.chunk(2), num_flow_updates=num_updates)[-1]
    flow = flow[..., pad[2] : pad[2] + h * k, pad[0] : pad[0] + w * k]
    return F.avg_pool2d(flow, k) / k if k > 1 else flow


def _read_rgb(path: Path) -> torch.Tensor:
    img = imfrombytes(path.read_bytes(), float32=True) if path.is_file() else None
    if img is None:
        raise FileNotFoundError(f"frame '{path}' is missing or not an image")
    return img2tensor(img, bgr2rgb=True, float32=True)


def generate_flows(
    raft: RAFT,
    clips: dict[str, list[str]],
    frame_root: str | Path,
    output: str | Path,
    radius: int = 1,
    ext: str = 'png',
    batch_size: int = 8,
    num_updates: int = 12,
    overwrite: bool = False,
) -> dict[str, int]:
    """Compute the flow from every frame to each neighbour within ``radius`` and store it.

    ``output`` is either a folder, written as ``<output>/<clip>/<centre>_<neighbour>.npy`` (float32
    (h, w, 2); each file written atomically, existing complete files skipped so an interrupted run resumes;
    damaged ones are computed again), or a
    path ending with ``.lmdb``, built atomically in one go (keys ``clip/<centre>_<neighbour>``).

    Args:
        raft (RAFT): The flow network; frames are moved to its device.
        clips (dict[str, list[str]]): Clip name -> frame stems in temporal order.
        frame_root (str | Path): Folder of ``<clip>/<stem>.<ext>`` frames (normally the sharp LR frames).
        output (str | Path): Output folder or ``.lmdb`` path.
        radius (int): Largest temporal distance of a neighbour (N of T = 2N+1). Default: 1.
        ext (str): Frame file extension. Default: ``'png'``.
        batch_size (int): Frame pairs per RAFT call. Default: 8.
        num_updates (int): RAFT flow updates. Default: 12.
        overwrite (bool): Replace an existing LMDB (LMDB output only). Default: False.

    Returns:
        dict[str, int]: ``computed`` and ``skipped`` pair counts.
    """
    output, frame_root = Path(output), Path(frame_root)
    to_lmdb = output.suffix == '.lmdb'
    pairs = [
        (clip, stems[c], stems[n])
        for clip, stems in clips.items()
        for c in range(len(stems))
        for n in range(max(0, c - radius), min(len(stems), c + radius + 1))
        if n != c
    ]
    todo = pairs if to_lmdb else _pairs_to_compute(pairs, output, frame_root, ext)
    device = next(raft.parameters()).device
    writer = None
    if to_lmdb and todo:
        clip, stem, _ = todo[0]
        flow_bytes = 2 * 4 * _read_rgb(frame_root / clip / f'{stem}.{ext}').shape[-2:].numel()
        writer = AtomicLmdbWriter(output, map_size=2 * flow_bytes * len(todo) + (64 << 20), overwrite=overwrite)
    try:
        cache: dict[tuple[str, str], torch.Tensor] = {}
        batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
        with tqdm(total=len(todo), desc='RAFT flow', unit='pair') as bar:
            for batch in batches:
                for clip_batch in _split_by_clip(batch):
                    clip = clip_batch[0][0]
                    if any(key[0] != clip for key in cache):
                        cache.clear()  # keep only the current clip's frames in memory
                    for _, *stems in clip_batch:
                        for stem in stems:
                            if (clip, stem) not in cache:
                                cache[clip, stem] = _read_rgb(frame_root / clip / f'{stem}.{ext}')
                    centre = torch.stack([cache[clip, c] for _, c, _ in clip_batch]).to(device)
                    neighbour = torch.stack([cache[clip, n] for _, _, n in clip_batch]).to(device)
                    flows = compute_flow(raft, centre, neighbour, num_updates).permute(0, 2, 3, 1).cpu().numpy()
                    for (_, c, n), flow in zip(clip_batch, flows):
                        flow = np.ascontiguousarray(flow, dtype=np.float32)
                        if writer:
                            writer.put(f'{clip}/{c}_{n}', flow.tobytes(), 'npy', flow.shape, 'float32')
                        else:
                            atomic_save_npy(flow, output / clip / f'{c}_{n}.npy')
                    bar.update(len(clip_batch))
        if writer:
            writer.finish()
    except BaseException:
        if writer:
            writer.abort()
        raise
    stats = {'computed': len(todo), 'skipped': len(pairs) - len(todo)}
    get_root_logger().info(f'RAFT flow: {stats["computed"]} pairs computed, {stats["skipped"]} already present')
    return stats


def valid_flow_file(path: Path, lr_shape: tuple[int, int]) -> bool:
    """Whether ``path`` loads as a finite float array of shape ``(*lr_shape, 2)`` (a complete flow file)."""
    try:
        flow = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError):
        return False
    return isinstance(flow, np.ndarray) and flow.shape == (*lr_shape, 2) and bool(np.isfinite(flow).all())


def _pairs_to_compute(
    pairs: list[tuple[str, str, str]], output: Path, frame_root: Path, ext: str
) -> list[tuple[str, str, str]]:
    """The pairs whose ``.npy`` is absent or damaged (unreadable, another shape than the LR frames, NaN/inf)."""
    shapes: dict[str, tuple[int, int]] = {}
    todo, damaged = [], []
    for pair in pairs:
        clip, centre, neighbour = pair
        path = output / clip / f'{centre}_{neighbour}.npy'
        if not path.is_file():
            todo.append(pair)
            continue
        if clip not in shapes:
            shapes[clip] = tuple(_read_rgb(frame_root / clip / f'{centre}.{ext}').shape[-2:])
        if not valid_flow_file(path, shapes[clip]):
            todo.append(pair)
            damaged.append(path)
    if damaged:
        get_root_logger().warning(
            f'RAFT flow: {len(damaged)} existing file(s) are damaged (unreadable, wrong shape or NaN/inf) and are '
            f'computed again, e.g. {damaged[0]}'
        )
    return todo


def _split_by_clip(batch: list[tuple[str, str, str]]) -> list[list[tuple[str, str, str]]]:
    groups: list[list[tuple[str, str, str]]] = []
    for item in batch:
        if groups and groups[-1][0][0] == item[0]:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups
