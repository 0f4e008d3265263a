"""The PyTorch training loop: SGD with momentum, warm-up + half-cosine, cross-entropy,
DataLoader workers, bf16 autocast on GPU, DDP under torchrun, resumable checkpoints."""

from __future__ import annotations

import os
import time

import numpy as np

from ..data.dataset import TrainClips, collate
from ..data.loader import BatchPlan
from . import checkpoint
from .run import MetricsLog, Run, StepLog, note_skipped, write_summary
from .schedule import lr_at


def torch_collate(items):
    """`collate`, then tensors: made in the worker, they travel through shared memory."""
    import torch

    b = collate(items)
    return torch.from_numpy(b.x), torch.from_numpy(b.y), b.skipped


def distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); joins the process group when torchrun started us."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        import torch

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def pick_device(name: str, local_rank: int):
    import torch

    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def build_model(run: Run):
    return run.module().build(num_classes=len(run.index.classes))


def model_arrays(model) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def save_checkpoint(run: Run, model, opt, step: int, seen: dict) -> None:
    import torch

    arrays = {f"model.{k}": v for k, v in model_arrays(model).items()}
    state = opt.state_dict()
    for i, s in state["state"].items():
        for name, value in s.items():
            if torch.is_tensor(value):
                arrays[f"optim.{i}.{name}"] = value.detach().cpu().numpy()
    arrays["rng.torch"] = torch.get_rng_state().numpy()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            arrays[f"rng.cuda.{i}"] = s.numpy()
    meta = {
        "backend": "torch",
        "step": step,
        "seed": run.cfg.seed,
        "epoch": step // (len(run.index) // run.cfg.batch),
        "param_groups": state["param_groups"],
        "host_rng": checkpoint.host_rng_state(),
        "skipped": seen,
    }
    checkpoint.save(run.checkpoint, arrays, meta)


def load_checkpoint(run: Run, model, opt) -> tuple[int, dict]:
    """Restore model, optimiser and RNGs; return the step to continue from and skipped videos."""
    import torch

    arrays, meta = checkpoint.load(run.checkpoint)
    model.load_state_dict(
        {k[6:]: torch.from_numpy(v) for k, v in arrays.items() if k[:6] == "model."}
    )
    opt_state: dict = {}
    for k, v in arrays.items():
        if k.startswith("optim."):
            _, i, name = k.split(".", 2)
            opt_state.setdefault(int(i), {})[name] = torch.from_numpy(v)
    opt.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(torch.from_numpy(arrays["rng.torch"]))
    cuda = [torch.from_numpy(arrays[f"rng.cuda.{i}"]) for i in range(torch.cuda.device_count())]
    if cuda and all(f"rng.cuda.{i}" in arrays for i in range(len(cuda))):
        torch.cuda.set_rng_state_all(cuda)
    checkpoint.set_host_rng_state(meta["host_rng"])
    return meta["step"], meta.get("skipped", {})


def train(run: Run, resume: bool = False) -> dict:
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    cfg = run.cfg
    rank, world, local = distributed()
    device = pick_device(cfg.device, local)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed clip shapes: let cuDNN pick the kernels
    else:
        # Leave a core to each data worker: oversubscribed OpenMP threads spin and stall.
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) - cfg.workers))
    torch.manual_seed(cfg.seed)
    model = build_model(run).to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    start, seen = 0, dict(run.index.skipped)
    if resume and run.checkpoint.exists():
        start, seen_before = load_checkpoint(run, model, opt)
        seen.update(seen_before)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if cuda else None)
    plan = BatchPlan(len(run.index), cfg.batch, cfg.seed, start, run.total_steps, rank, world)
    loader = torch.utils.data.DataLoader(
        TrainClips(run.index, cfg.clip_options(), cfg.seed),
        batch_sampler=plan,
        num_workers=cfg.workers,
        collate_fn=torch_collate,
        pin_memory=cuda,
        persistent_workers=False,
    )
    main = rank == 0
    metrics = MetricsLog(run.dir / "metrics.jsonl", start) if main else None
    bar = tqdm(
        total=run.total_steps,
        initial=start,
        disable=not (main and cfg.progress),
        dynamic_ncols=True,
        desc=f"train {run.net.name}",
    )
    net.train()
    loss_value, clips, t0 = float("nan"), 0, time.perf_counter()
    log = StepLog(metrics, bar, t0)
    step = start
    for step, (x, y, skipped) in enumerate(loader, start):
        note_skipped(seen, skipped)
        lr = lr_at(step, cfg.lr, run.total_steps, run.warmup)
        for group in opt.param_groups:
            group["lr"] = lr
        if len(y):
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda and cfg.amp):
                logits = net(x)
            loss = F.cross_entropy(logits.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        clips += len(y) * world
        log.count(len(y) * world)
        done = step + 1
        if main and (done % cfg.log_every == 0 or done == run.total_steps):
            loss_value = float(loss.detach()) if len(y) else float("nan")
            log.write(done, step // plan.steps_per_epoch, loss_value, lr)
        bar.update(1)
        if main and (done % cfg.ckpt_every == 0 or done == run.total_steps):
            save_checkpoint(run, model, opt, done, seen)
    bar.close()
    wall = time.perf_counter() - t0
    summary = {}
    if main:
        metrics.close()
        checkpoint.save(
            run.dir / "model.safetensors",
            model_arrays(model),
            {"backend": "torch", "classes": run.index.classes, "spec": run.net.name},
        )
        summary = {
            "backend": "torch",
            "device": str(device),
            "world_size": world,
            "steps": run.total_steps,
            "resumed_from": start,
            "final_loss": loss_value,
            "clips": clips,
            "wall_s": round(wall, 3),
            "clips_per_s": round(clips / max(wall, 1e-9), 2),
            "skipped": dict(sorted(seen.items())),
        }
        write_summary(run, summary)
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary
