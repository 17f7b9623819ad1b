"""Training checkpoints: every tensor a run needs to continue exactly (the student, its EMA,
the discriminator, both optimizers' moments, the RNG states) in one .safetensors file
written atomically, with the step and the configuration in its metadata.

Tensors are stored under '<part>/<name>' ('student/...', 'student_ema/...', 'opt_g/3/exp_avg',
'rng/cpu'); the optimizers' hyper-parameters go to the JSON config. A crash or a full disk
while writing leaves the previous checkpoint as it was.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..formats import ModelFileError, read_model_file, write_model_file

__all__ = ["FORMAT", "Checkpoint", "save_checkpoint", "load_checkpoint", "optimizer_tensors", "restore_optimizer",
           "CheckpointError"]

FORMAT = "nerfgan_distill.checkpoint"
FORMAT_VERSION = "1"


class CheckpointError(ModelFileError):
    """A checkpoint that cannot continue this run (the message says why)."""


@dataclass
class Checkpoint:
    step: int
    config: dict
    tensors: dict

    def part(self, prefix: str) -> dict:
        """The tensors stored under '<prefix>/'."""
        start = prefix + "/"
        return {k[len(start):]: v for k, v in self.tensors.items() if k.startswith(start)}


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """(tensors, JSON-able rest) of an optimizer's state dict."""
    state = optimizer.state_dict()
    tensors, plain = {}, {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}/{key}"] = value
            else:
                plain[f"{index}/{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "plain": plain}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, rest: dict) -> None:
    state: dict = {}
    for name, value in tensors.items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    for name, value in rest["plain"].items():
        index, key = name.split("/", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": rest["param_groups"]})


def rng_tensors() -> dict:
    tensors = {"cpu": torch.random.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index in range(torch.cuda.device_count()):
            tensors[f"cuda{index}"] = torch.cuda.get_rng_state(index)
    return tensors


def restore_rng(tensors: dict) -> None:
    if "cpu" in tensors:
        torch.random.set_rng_state(tensors["cpu"])
    for name, value in tensors.items():
        if name.startswith("cuda") and torch.cuda.is_available() and int(name[4:]) < torch.cuda.device_count():
            torch.cuda.set_rng_state(value, int(name[4:]))


def save_checkpoint(path, step: int, config: dict, modules: dict, optimizers: dict) -> None:
    """modules: {part: nn.Module}; optimizers: {part: Optimizer}."""
    tensors, optimizer_config = {}, {}
    for part, module in modules.items():
        tensors.update({f"{part}/{k}": v for k, v in module.state_dict().items()})
    for part, optimizer in optimizers.items():
        opt_tensors, optimizer_config[part] = optimizer_tensors(optimizer)
        tensors.update({f"{part}/{k}": v for k, v in opt_tensors.items()})
    tensors.update({f"rng/{k}": v for k, v in rng_tensors().items()})
    write_model_file(path, FORMAT, FORMAT_VERSION, {**config, "optimizers": optimizer_config}, tensors,
                     metadata={"step": str(step)})


def load_checkpoint(path) -> Checkpoint:
    try:
        file = read_model_file(path, expect=FORMAT, versions=(FORMAT_VERSION,))
        step = int(file.metadata.get("step", ""))
    except ValueError as e:
        raise CheckpointError(f"{os.fspath(path)}: not a usable training checkpoint ({e})") from e
    return Checkpoint(step, file.config, file.tensors)


def restore(checkpoint: Checkpoint, modules: dict, optimizers: dict) -> None:
    """Load a checkpoint's parts into `modules` and `optimizers` (strictly) and restore the RNGs."""
    for part, module in modules.items():
        tensors = checkpoint.part(part)
        expected = module.state_dict()
        if set(tensors) != set(expected) or any(tensors[k].shape != expected[k].shape for k in expected):
            raise CheckpointError(f"the checkpoint's {part} does not match the model built from its config")
        module.load_state_dict(tensors)
    for part, optimizer in optimizers.items():
        restore_optimizer(optimizer, checkpoint.part(part), checkpoint.config["optimizers"][part])
    restore_rng(checkpoint.part("rng"))
