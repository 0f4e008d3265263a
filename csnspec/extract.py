"""Pooled feature vectors of videos: one per video, averaged over its test views.

The views are `csnspec eval`'s (csnspec.data.dataset.EvalViews: `clips` clips x `crops` crops,
same sampling); the feature of a view is the generated model's `forward_features`, the pooled
vector the classifier reads. The output is one safetensors file, written atomically:

    features  (videos, num_features) float32
    labels    (videos,) int64
    header    csnspec.videos (JSON list of paths, in row order), csnspec.classes, csnspec.views,
              csnspec.skipped ({path: reason}), csnspec.network
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from .data.transforms import ClipOptions
from .errors import CsnError


@dataclass
class ExtractConfig:
    spec: str
    weights: str
    data: str
    out: str
    format: str | None = None  # one of csnspec.data.formats.FORMATS (detected when None)
    root: str | None = None
    opts: ClipOptions = field(default_factory=ClipOptions)
    batch: int = 2  # videos per batch
    workers: int = 2
    progress: bool = True
    allow_nonfinite: bool = False


def extract(cfg: ExtractConfig) -> dict:
    """Write cfg.out; return {'videos': n, 'features': F, 'skipped': {...}}."""
    import torch
    from tqdm import tqdm

    from .atomic import check_target
    from .data.dataset import EvalViews, collate, open_index
    from .data.loader import threaded_batches
    from .export import build_torch_model
    from .lowering import lower
    from .parse import load
    from .sizing import INFER, check_fits
    from .train.run import check_clip
    from .weights.io import save_safetensors

    inputs = (cfg.spec, cfg.weights, cfg.data)
    check_target(cfg.out, inputs)
    net = load(cfg.spec)
    check_clip(net, cfg.opts.frames, cfg.opts.crop, "extract", cfg.spec)
    index = open_index(cfg.data, cfg.root, format=cfg.format)
    low = lower(net)
    views = cfg.opts.views
    check_fits(low, usage=INFER, batch=cfg.batch * views, what="extract", filename=cfg.spec)
    rows, labels, paths, skipped = [], [], [], dict(index.skipped)
    model = build_torch_model(low, cfg.weights, allow_nonfinite=cfg.allow_nonfinite)
    chunks = [
        list(range(i, min(i + cfg.batch, len(index)))) for i in range(0, len(index), cfg.batch)
    ]
    bar = tqdm(total=len(index), disable=not cfg.progress, desc="extract", unit="video")
    batches = threaded_batches(EvalViews(index, cfg.opts), chunks, cfg.workers, collate_fn=collate)
    for chunk, batch in zip(chunks, batches, strict=True):
        bad = {s.name for s in batch.skipped}
        skipped.update({s.name: s.reason for s in batch.skipped})
        if len(batch):
            b, v = batch.x.shape[:2]
            with torch.no_grad():
                f = model.forward_features(
                    torch.from_numpy(batch.x.reshape(b * v, *batch.x.shape[2:]))
                )
            rows.append(f.reshape(b, v, -1).mean(1).numpy())
            labels.append(batch.y)
            paths += [index.videos[i][0] for i in chunk if index.videos[i][0] not in bad]
        bar.update(len(chunk))
    bar.close()
    if not rows:
        raise CsnError("no video could be read", filename=str(cfg.data))
    features = np.concatenate(rows).astype(np.float32)
    meta = {
        "csnspec.network": low.name,
        "csnspec.videos": json.dumps(paths),
        "csnspec.classes": json.dumps(index.classes),
        "csnspec.views": f"{cfg.opts.clips}x{cfg.opts.crops}",
        "csnspec.skipped": json.dumps(dict(sorted(skipped.items()))),
    }
    tensors = {
        "features": torch.from_numpy(features),
        "labels": torch.from_numpy(np.concatenate(labels)),
    }
    save_safetensors(cfg.out, tensors, meta, inputs=inputs)
    return {"videos": len(paths), "features": features.shape[1], "skipped": skipped}
