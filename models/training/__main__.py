"""python -m models.training CONFIG [CONFIG ...]: train each config in turn (resuming), then export."""
from __future__ import annotations

import argparse

from models.training.runner import TrainingError, run


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m models.training", description=__doc__)
    p.add_argument("configs", nargs="+", help="YAML configs, trained in the order given")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--workers", type=int, default=1, help="data-loader processes (degradations run there)")
    p.add_argument("--threads", type=int, default=None, help="torch threads of the training process")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        for config in args.configs:
            run(config, device=args.device, workers=args.workers)
    except TrainingError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
