"""The training loop: resume, EMA, logging, checkpoints and the export of finished runs.

``runs/<name>/checkpoint.pt`` holds ``params`` and ``params_ema`` (per network), the optimizers'
states, the step and the config's hash; it is loaded with ``torch.load(weights_only=True)``. A run
resumes from it when its config is unchanged and refuses to when it changed. Once the last step is
done the exported network's EMA weights go to ``weights/<name>/model.safetensors``, beside the config,
the log (``train_log.jsonl``) and ``loss_curves.png``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import yaml

from models.hub import REPO_ROOT
from models.registry import build_network
from models.training.baseline_tasks import BASELINE_TASKS
from models.training.data import batch_loader
from models.training.kd_tasks import KD_TASKS
from models.training.sr_tasks import SR_TASKS
from models.training.tasks import TASKS as CORE_TASKS

TASKS = {**CORE_TASKS, **BASELINE_TASKS, **SR_TASKS, **KD_TASKS}


class TrainingError(RuntimeError):
    pass


def load_config(path: str | Path) -> dict[str, Any]:
    cfg = yaml.safe_load(Path(path).read_text())
    for key in ("name", "task", "steps", "batch_size", "data", "networks"):
        if key not in cfg:
            raise TrainingError(f"{path}: config needs a {key!r} entry")
    if cfg["task"] not in TASKS:
        raise TrainingError(f"{path}: unknown task {cfg['task']!r}; known: {', '.join(TASKS)}")
    return cfg


def config_hash(cfg: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def _checkpoint(runs_dir: Path, name: str) -> dict[str, Any]:
    path = runs_dir / name / "checkpoint.pt"
    if not path.is_file():
        raise TrainingError(f"run {name!r} has no checkpoint at {path}: train its config first")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if not ckpt.get("finished"):
        raise TrainingError(f"run {name!r} stopped at step {ckpt['step']}: finish it (run its config again) first")
    return ckpt


def load_exported(weights_dir: Path, name: str, device: torch.device) -> nn.Module:
    """A finished run's exported network (its config from ``weights/<name>/config.yaml``), frozen, eval mode."""
    from safetensors.torch import load_file

    folder = weights_dir / name
    if not (folder / "model.safetensors").is_file():
        raise TrainingError(f"{folder}/model.safetensors is missing: train run {name!r} first")
    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    net = build_network(dict(cfg["networks"][TASKS[cfg["task"]].export]))
    net.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
    net.requires_grad_(False)
    return net.to(device).eval()


def _apply_init(task: Any, init: list[dict[str, Any]], runs_dir: Path) -> None:
    """Copy weights from earlier runs' final ``params``: ``{net, run, source_net, prefix, weights}``; with a
    prefix the source keys land under it (e.g. PSFRGAN's generator inside a DAFEGenerator); ``weights:
    params_ema`` takes the exported weights instead (EMA parameters, the live network's buffers)."""
    for spec in init:
        ckpt = _checkpoint(runs_dir, spec["run"])
        net_name = spec.get("source_net", spec["net"])
        source = ckpt["params"][net_name]
        prefix = spec.get("prefix", "")
        target = task.nets[spec["net"]]
        if spec.get("weights", "params") == "params_ema":
            buffers = {k[len(prefix):] for k, _ in target.named_buffers() if k.startswith(prefix)}
            source = {k: v if k in buffers else ckpt["params_ema"][net_name][k] for k, v in source.items()}
        missing, unexpected = target.load_state_dict({prefix + k: v for k, v in source.items()}, strict=False)
        if unexpected:
            raise TrainingError(f"init of {spec['net']!r} from run {spec['run']!r}: keys not in the network: "
                                f"{unexpected[:5]}")
        kept = [k for k in missing if not any(k.startswith(p) for p in spec.get("fresh", []))]
        if kept:
            raise TrainingError(f"init of {spec['net']!r} from run {spec['run']!r} leaves {len(kept)} keys unset "
                                f"(e.g. {kept[:3]}); list their prefixes under 'fresh' if that is intended")


class EMA:
    """Exponential moving average of a network's parameters; the decay ramps up as
    min(decay, (1 + n) / (10 + n)) so short runs are not dominated by the initial weights. Buffers
    (BatchNorm statistics, spectral norm's power-iteration vectors) are copies of the live network's: an
    average of unit vectors is not a unit vector, and eval-mode spectral norm would mis-scale its weights."""

    def __init__(self, net: nn.Module, decay: float) -> None:
        self.net = copy.deepcopy(net).eval().requires_grad_(False)
        self.decay = decay

    @torch.no_grad()
    def update(self, net: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        ema_params = dict(self.net.named_parameters())
        for k, v in net.named_parameters():
            ema_params[k].mul_(d).add_(v.detach(), alpha=1 - d)
        self.sync_buffers(net)

    @torch.no_grad()
    def sync_buffers(self, net: nn.Module) -> None:
        ema_buffers = dict(self.net.named_buffers())
        for k, v in net.named_buffers():
            ema_buffers[k].copy_(v)


def _plot_curves(log_path: Path, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    keys = [k for k in rows[0] if k not in ("step", "seconds")]
    fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 2.8), squeeze=False)
    for ax, key in zip(axes[0], keys):
        ax.plot([r["step"] for r in rows], [r[key] for r in rows])
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def _export(cfg: dict[str, Any], config_path: Path, run_dir: Path, ema: dict[str, EMA], task: Any,
            weights_dir: Path) -> Path:
    from safetensors.torch import save_file

    folder = weights_dir / cfg["name"]
    folder.mkdir(parents=True, exist_ok=True)
    # `export_dtype: float16` halves the file (loading casts back to the network's float32).
    dtype = getattr(torch, cfg.get("export_dtype", "float32"))
    state = {k: v.detach().cpu().to(dtype if v.is_floating_point() else v.dtype).contiguous()
             for k, v in ema[task.export].net.state_dict().items()}
    save_file(state, folder / "model.safetensors", metadata={"config_hash": config_hash(cfg), "weights": "params_ema"})
    shutil.copyfile(config_path, folder / "config.yaml")
    shutil.copyfile(run_dir / "log.jsonl", folder / "train_log.jsonl")
    _plot_curves(run_dir / "log.jsonl", folder / "loss_curves.png", cfg["name"])
    return folder / "model.safetensors"


def run(config_path: str | Path, *, device: str | None = None, workers: int = 1,
        runs_dir: Path = REPO_ROOT / "runs", weights_dir: Path = REPO_ROOT / "weights",
        stop_after: int | None = None, log=print) -> Path | None:
    """Train `config_path` to its last step (resuming its checkpoint) and export the result.

    `stop_after` ends the call after that many steps without exporting (tests of resume). Returns the
    exported weights' path, or None when stopped early.
    """
    config_path = Path(config_path)
    cfg = load_config(config_path)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.get("seed", 0))
    run_dir = runs_dir / cfg["name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    frozen = {key: load_exported(weights_dir, name, dev) for key, name in cfg.get("frozen", {}).items()}
    task = TASKS[cfg["task"]](cfg, dev, frozen)

    ckpt_path, log_path = run_dir / "checkpoint.pt", run_dir / "log.jsonl"
    start = 0
    if ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location=dev, weights_only=True)
        if ckpt["config_hash"] != config_hash(cfg):
            raise TrainingError(f"{ckpt_path} was written by a different config (hash {ckpt['config_hash']}, now "
                                f"{config_hash(cfg)}); delete {run_dir} to start over")
        for name, net in task.nets.items():
            net.load_state_dict(ckpt["params"][name])
        for name, opt in task.optimizers.items():
            opt.load_state_dict(ckpt["optimizers"][name])
        start = ckpt["step"]
        log(f"[{cfg['name']}] resuming at step {start}/{cfg['steps']}")
    else:
        _apply_init(task, cfg.get("init", []), runs_dir)
        if hasattr(task, "on_fresh_start"):
            task.on_fresh_start()
        log_path.write_text("")
    ema = {name: EMA(task.nets[name], float(cfg.get("ema", 0.999))) for name in task.ema_nets}
    if start:
        for name in task.ema_nets:
            ema[name].net.load_state_dict(ckpt["params_ema"][name])
            ema[name].sync_buffers(task.nets[name])
    # Keep only the log lines of steps the checkpoint includes (a killed run may have logged past it).
    kept = [ln for ln in log_path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= start]
    log_path.write_text("".join(ln + "\n" for ln in kept))

    def save(step: int, finished: bool) -> None:
        tmp = ckpt_path.with_suffix(".tmp")
        torch.save({"step": step, "finished": finished, "config_hash": config_hash(cfg),
                    "params": {k: n.state_dict() for k, n in task.nets.items()},
                    "params_ema": {k: e.net.state_dict() for k, e in ema.items()},
                    "optimizers": {k: o.state_dict() for k, o in task.optimizers.items()}}, tmp)
        tmp.replace(ckpt_path)

    steps, log_every = int(cfg["steps"]), int(cfg.get("log_every", 10))
    ckpt_every = int(cfg.get("checkpoint_every", 200))
    end = steps if stop_after is None else min(steps, start + stop_after)
    loader = batch_loader(cfg["data"], batch_size=int(cfg["batch_size"]), seed=int(cfg.get("seed", 0)),
                          start=start, steps=end, workers=workers)
    for net in task.nets.values():
        net.train()
    sums: dict[str, float] = {}
    t0, step = time.time(), start
    for batch in loader:
        terms = task.train_step(batch)
        step += 1
        for name in task.ema_nets:
            ema[name].update(task.nets[name], step)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v
        if step % log_every == 0 or step == end:
            n = log_every if step % log_every == 0 else step % log_every
            row = {"step": step, "seconds": round(time.time() - t0, 2), **{k: v / n for k, v in sums.items()}}
            with log_path.open("a") as f:
                f.write(json.dumps(row) + "\n")
            log(f"[{cfg['name']}] " + " ".join(f"{k}={v:.4g}" for k, v in row.items()))
            sums = {}
        if step % ckpt_every == 0 or step == end:
            save(step, finished=step == steps)
    if step < steps:
        return None
    out = _export(cfg, config_path, run_dir, ema, task, weights_dir)
    log(f"[{cfg['name']}] exported {out}")
    return out
