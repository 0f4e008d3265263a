"""The PyTorch stepper under `fit`: SGD with momentum and weight decay, cross-entropy, DDP under
torchrun (with SyncBatchNorm on request), autocast (bf16, or fp16 with a gradient scaler),
gradient accumulation and clipping, an EMA of the weights, and frozen BN or stages."""

from __future__ import annotations

import contextlib
import copy
import logging
import os

import numpy as np

from ..data.dataset import collate
from ..errors import CsnError
from .finetune import InitNote, bn_ops, classifier_ops, frozen_ops, init_weights, op_of
from .run import Run

log = logging.getLogger("csnspec.train")


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


def sync_batchnorm(model, world: int, cuda: bool):
    """`model` with its BatchNorms as SyncBatchNorm (statistics over the global batch) under
    DDP; refused off CUDA (PyTorch's SyncBatchNorm runs there only), a no-op for one process."""
    import torch

    if world == 1:
        log.warning(
            "--sync-bn: one process, nothing to synchronise: BatchNorm stays as it is "
            "(SyncBatchNorm applies under torchrun with 2 or more processes)"
        )
        return model
    if not cuda:
        raise CsnError(
            "--sync-bn: PyTorch's SyncBatchNorm runs on CUDA devices only",
            hint="drop --sync-bn on the CPU (each rank then normalises over its own clips)",
        )
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def autocast_mode(amp: str, cuda: bool) -> str:
    """The autocast dtype a run computes in: `auto` is bf16 on CUDA and off on the CPU (whose
    bf16 and fp16 kernels are slower than float32 on most CPUs; asked for, they run)."""
    if amp == "auto":
        return "bf16" if cuda else "off"
    return amp


def check_device(cfg) -> None:
    """The device error a run would meet, raised before its folder is written."""
    from .devices import torch_device

    torch_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))


def arrays_of(model) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


class TorchStepper:
    def __init__(self, run: Run):
        import torch

        from .devices import torch_device

        cfg = self.cfg = run.cfg
        self.run = run
        self.rank, self.world, local = distributed()
        self.main = self.rank == 0
        self.device = torch_device(cfg.device, local)
        self.device_name = str(self.device)
        self.cuda = self.device.type == "cuda"
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # fixed clip shapes: let cuDNN pick the kernels
        else:
            # Leave a core to each data worker: oversubscribed OpenMP threads spin and stall.
            torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) - cfg.workers))
        torch.manual_seed(cfg.seed)
        model = run.module().build(num_classes=len(run.index.classes))
        if cfg.sync_bn:
            model = sync_batchnorm(model, self.world, self.cuda)
        self.model = model.to(self.device)
        self.frozen = frozen_ops(run.low, cfg.freeze_stages)
        self.bn_frozen = set(bn_ops(run.low)) if cfg.freeze_bn else set()
        heads = set(classifier_ops(run.low))
        groups = {"base": [], "head": []}
        for name, p in self.model.named_parameters():
            op = op_of(name)
            if op in self.frozen or op in self.bn_frozen:
                p.requires_grad_(False)
            else:
                groups["head" if op in heads else "base"].append(p)
        self.opt = torch.optim.SGD(
            [
                {"params": groups["base"], "lr_mult": 1.0},
                {"params": groups["head"], "lr_mult": cfg.head_lr_mult},
            ],
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )
        self.amp = autocast_mode(cfg.amp, self.cuda)
        self.precision = "float32" if self.amp == "off" else self.amp  # what summary.json says
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")
        self.ema = None
        self.ema_model = None
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[local] if self.cuda else None
            )

    # -- set-up ----------------------------------------------------------------------------

    def init_from(self, path) -> InitNote:
        import torch

        own = {k: tuple(v.shape) for k, v in self.model.state_dict().items()}
        fit, note = init_weights(path, self.run.low, "torch", own)
        self.model.load_state_dict(
            {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in fit.items()}, strict=False
        )
        return note

    def begin(self) -> None:
        import torch

        if self.cfg.ema is not None and self.ema is None:
            self.ema = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.train_mode()
        self.autocast = {
            "device_type": self.device.type,
            "dtype": torch.float16 if self.amp == "fp16" else torch.bfloat16,
            "enabled": self.amp != "off",
        }

    def train_mode(self) -> None:
        """Train mode, except BatchNorms that are frozen (their statistics stay put)."""
        self.net.train()
        for name, module in self.model.named_modules():
            if name in self.bn_frozen or name in self.frozen:
                module.eval()

    def batches(self, plan, dataset):
        import torch

        return torch.utils.data.DataLoader(
            dataset,
            batch_sampler=plan,
            num_workers=self.cfg.workers,
            collate_fn=torch_collate,
            pin_memory=self.cuda,
            persistent_workers=False,
        )

    # -- one step --------------------------------------------------------------------------

    def step(self, x, y, lr: float):
        import torch
        import torch.nn.functional as F

        for group in self.opt.param_groups:
            group["lr"] = lr * group["lr_mult"]
        n = len(y)
        if not n:
            return 0, None
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        self.opt.zero_grad(set_to_none=True)
        parts = [
            (a, b)
            for a, b in zip(x.tensor_split(self.cfg.accum), y.tensor_split(self.cfg.accum))
            if len(b)
        ]
        total = 0.0
        for i, (xs, ys) in enumerate(parts):
            sync = self.world == 1 or i == len(parts) - 1
            with self.net.no_sync() if not sync else contextlib.nullcontext():
                with torch.autocast(**self.autocast):
                    logits = self.net(xs)
                loss = F.cross_entropy(logits.float(), ys)
                if len(parts) > 1:
                    loss = loss * (len(ys) / n)
                self.scaler.scale(loss).backward()
            total = total + loss.detach()
        if self.cfg.clip_grad is not None:
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.scaler.step(self.opt)
        self.scaler.update()
        if self.ema is not None:
            self._update_ema()
        return n * self.world, total

    def _update_ema(self) -> None:
        import torch

        d = self.cfg.ema
        with torch.no_grad():
            self._ema_step(d)

    def _ema_step(self, d: float) -> None:
        for k, v in self.model.state_dict().items():
            if v.dtype.is_floating_point:
                self.ema[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.ema[k].copy_(v)

    # -- weights, checkpoints, prediction ----------------------------------------------------

    def weights(self, ema: bool = False) -> dict[str, np.ndarray]:
        if ema:
            return {k: v.cpu().numpy() for k, v in self.ema.items()}
        return arrays_of(self.model)

    def state(self) -> tuple[dict, dict]:
        import torch

        arrays = {f"model.{k}": v for k, v in arrays_of(self.model).items()}
        if self.ema is not None:
            arrays.update({f"ema.{k}": v.cpu().numpy() for k, v in self.ema.items()})
        state = self.opt.state_dict()
        for i, s in state["state"].items():
            for name, value in s.items():
                if torch.is_tensor(value):
                    arrays[f"optim.{i}.{name}"] = value.detach().cpu().numpy()
        arrays["rng.torch"] = torch.get_rng_state().numpy()
        if torch.cuda.is_available():
            for i, s in enumerate(torch.cuda.get_rng_state_all()):
                arrays[f"rng.cuda.{i}"] = s.numpy()
        meta = {"param_groups": state["param_groups"], "scaler": self.scaler.state_dict()}
        return arrays, meta

    def restore(self, arrays: dict, meta: dict) -> None:
        import torch

        self.model.load_state_dict(
            {k[6:]: torch.from_numpy(v) for k, v in arrays.items() if k[:6] == "model."}
        )
        ema = {
            k[4:]: torch.from_numpy(v).to(self.device) for k, v in arrays.items() if k[:4] == "ema."
        }
        if self.cfg.ema is not None and ema:
            self.ema = ema
        opt_state: dict = {}
        for k, v in arrays.items():
            if k.startswith("optim."):
                _, i, name = k.split(".", 2)
                opt_state.setdefault(int(i), {})[name] = torch.from_numpy(v)
        self.opt.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
        if meta.get("scaler"):
            self.scaler.load_state_dict(meta["scaler"])
        torch.set_rng_state(torch.from_numpy(arrays["rng.torch"]))
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        cuda = [arrays.get(f"rng.cuda.{i}") for i in range(n)]
        if cuda and all(s is not None for s in cuda):
            torch.cuda.set_rng_state_all([torch.from_numpy(s) for s in cuda])

    def predictor(self, ema: bool = False):
        """Logits of numpy clips, in eval mode (the EMA weights in a copy of the model)."""
        import torch

        model = self.model
        if ema:
            if self.ema_model is None:
                self.ema_model = copy.deepcopy(self.model)
            self.ema_model.load_state_dict(self.ema)
            model = self.ema_model
        model.eval()

        @torch.no_grad()
        def predict(x: np.ndarray) -> np.ndarray:
            with torch.autocast(**self.autocast):
                out = model(torch.from_numpy(x).to(self.device))
            return out.float().cpu().numpy()

        return predict

    def finish(self) -> None:
        if self.world > 1:
            import torch

            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
