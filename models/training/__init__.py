"""Training: ``python -m models.training <config.yaml>`` runs one config to the end, resumably.

Configs live in ``configs/``; a run writes its checkpoint and log under ``runs/<name>/`` and, when it
finishes, exports the weights it publishes to ``weights/<name>/`` (safetensors, config, log, loss
curves). Import the submodules you need; nothing is imported here.
"""
