"""The two-stage distillation loop (`nerfgan-distill train`).

Stage 1 (steps [0, stage1_steps)): the student learns the teacher's renders of the same
(w, c) with the reconstruction terms L_rec^LR and L_rec^HR only. Stage 2 adds L_adv from a
pose-conditioned dual discriminator, trained against a "real" set of teacher renders mixed
with dataset images, with lazy R1 (losses.py has the terms, config.py the defaults).

What makes a run reproducible and resumable:
- sample s = step * batch + i depends only on (seed, s) (data.py); process r of W takes the
  samples i = r, r + W, ... of each step, so the minibatch-std groups of the discriminator
  are the same as in one process with the whole batch;
- the student and discriminator are drawn from the seed; gradients are averaged over
  processes before each optimizer step;
- the checkpoint holds every tensor that changes (weights, EMA, Adam moments, RNG states),
  written atomically; a resumed run continues at the checkpoint's step and ends with the
  same weights as one never stopped.
Ctrl-C (SIGINT) or SIGTERM stops at the end of the current step, after a checkpoint.
"""
from __future__ import annotations

import copy
import json
import math
import signal
import time
from pathlib import Path
from typing import Optional

import torch

from .. import student as student_pkg
from ..formats import peek_metadata
from ..networks.discriminator import DualDiscriminator, filtered_resizing
from . import checkpoint as ckpt
from . import losses
from .config import TrainConfig, discriminator_kwargs
from .parallel import World, all_reduce_gradients, average_buffers, mean_over_processes
from .rng import sample_generator

__all__ = ["Trainer", "TrainingDiverged", "RunExistsError", "CHECKPOINT_NAME", "METRICS_NAME", "STUDENT_NAME"]

CHECKPOINT_NAME = "checkpoint.safetensors"
METRICS_NAME = "metrics.jsonl"
STUDENT_NAME = "student.safetensors"
LOSSES_PLOT = "losses.png"


class TrainingDiverged(RuntimeError):
    """A loss or gradient became NaN or infinite (the message names it and the last checkpoint)."""


class RunExistsError(ValueError):
    """--out holds a run and --resume was not given."""


class Trainer:
    def __init__(self, config: TrainConfig, world: World, teacher, source, reals=None, perceptual=None,
                 teacher_id: Optional[str] = None):
        """teacher: the frozen TriPlaneGenerator; source: TeacherSource or CachedSource (batch(sample_numbers));
        reals: RealImages or None; perceptual: a callable (x, y) -> per-sample distances, or None."""
        config.check_world(world.size)
        self.config, self.world, self.device = config, world, world.device
        self.teacher, self.source, self.reals, self.perceptual = teacher, source, reals, perceptual
        self.teacher_id = teacher_id
        self.out = Path(config.out)
        self.student = student_pkg.build(config.student, teacher=teacher, seed=config.seed, sr_init=config.sr_init)
        self.student.to(self.device).train().requires_grad_(True)
        self.student_ema = copy.deepcopy(self.student).eval().requires_grad_(False)
        self.d_kwargs = discriminator_kwargs(config.student, teacher.img_resolution, config.mbstd_group)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed + 1)
            self.discriminator = DualDiscriminator(**self.d_kwargs)
        self.discriminator.to(self.device).train().requires_grad_(False)
        betas = tuple(config.betas)
        self.opt_g = torch.optim.Adam(self.student.parameters(), lr=config.lr_g, betas=betas, eps=1e-8)
        # StyleGAN2's lazy-regularisation correction of the discriminator's lr and betas.
        ratio = config.r1_interval / (config.r1_interval + 1)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr_d * ratio,
                                      betas=tuple(b ** ratio for b in betas), eps=1e-8)
        self.base_lrs = {"opt_g": config.lr_g, "opt_d": config.lr_d * ratio}
        self.step = 0
        self._stop_requested = False

    # --- one step -------------------------------------------------------------------------

    def sample_numbers(self, step: int) -> list:
        """This process's samples of `step`: i = rank, rank + W, ... of the global batch."""
        batch = self.config.batch
        return [step * batch + i for i in range(self.world.rank, batch, self.world.size)]

    def train_step(self, step: int) -> dict:
        cfg = self.config
        numbers = self.sample_numbers(step)
        data = self.source.batch(numbers)
        target = {k: data[k] for k in ("image", "image_raw", "feature_image")}
        stage = 1 if step < cfg.stage1_steps else 2
        self.set_learning_rates(step)
        # The student's phase: reconstruction, plus the adversarial term in stage 2.
        fake = self.student(data["ws"], data["c"], update_emas=True)
        average_buffers(self.student.running_statistics(), self.world)
        terms = {**losses.rec_lr(fake, target, cfg.raw_weight, cfg.feature_weight),
                 **losses.rec_hr(fake, target, cfg.hr_weight, self.perceptual, cfg.perceptual_weight)}
        if stage == 2:
            terms.update(losses.adversarial_generator(self.discriminator, fake, data["c"], cfg.adv_weight))
        self._optimize(self.opt_g, self.student, terms, step, "student")
        stats = {}
        if stage == 2:
            self.discriminator.requires_grad_(True)
            real, c_real = self.real_batch(numbers, target, data["c"])
            d_terms = losses.adversarial_discriminator(self.discriminator, real, c_real, fake, data["c"], stats)
            if step % cfg.r1_interval == 0:
                d_terms.update(losses.r1_penalty(self.discriminator, real, c_real, cfg.r1_gamma, cfg.r1_interval,
                                                 stats))
            self._optimize(self.opt_d, self.discriminator, d_terms, step, "discriminator")
            self.discriminator.requires_grad_(False)
            terms.update(d_terms)
        self.update_ema(step)
        logged = mean_over_processes({**terms, **stats}, self.world)
        logged["loss_student"] = sum(v for k, v in logged.items() if k.startswith(("rec_", "adv_g")))
        return {"stage": stage, **logged}

    def set_learning_rates(self, step: int) -> None:
        """The schedule's rates for `step` (a function of the step alone, so a resumed run follows it)."""
        factor = self.config.lr_factor(step)
        for name, optimizer in self._optimizers().items():
            for group in optimizer.param_groups:
                group["lr"] = self.base_lrs[name] * factor

    def _optimize(self, optimizer, module, terms: dict, step: int, name: str) -> None:
        loss = sum(terms.values())
        if not bool(torch.isfinite(loss.detach())):
            bad = ", ".join(f"{k}={float(v.detach()):g}" for k, v in terms.items()
                            if not math.isfinite(float(v.detach())))
            raise TrainingDiverged(f"step {step}: the {name}'s loss is not finite ({bad}); {self._last_checkpoint()}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        flat = all_reduce_gradients(module.parameters(), self.world)
        if flat is not None and not bool(torch.isfinite(flat).all()):
            bad = next(n for n, p in module.named_parameters() if p.grad is not None
                       and not bool(torch.isfinite(p.grad).all()))
            raise TrainingDiverged(f"step {step}: the {name}'s gradient is not finite (first in {bad}); "
                                   f"{self._last_checkpoint()}")
        optimizer.step()

    def real_batch(self, numbers: list, target: dict, c: torch.Tensor):
        """The discriminator's real set: the teacher's renders of these samples, each replaced by
        a dataset image (with its own camera) with probability real_mix, drawn from (seed, s)."""
        real = {"image": target["image"], "image_raw": target["image_raw"]}
        if self.reals is None or self.config.real_mix <= 0:
            return real, c
        draws = [torch.rand((), generator=sample_generator(self.config.seed, s, "real-mix")) for s in numbers]
        mask = (torch.stack(draws) < self.config.real_mix).to(self.device)
        if not bool(mask.any()):
            return real, c
        images = self.reals.batch(numbers)
        raw = filtered_resizing(images["image"], target["image_raw"].shape[-1])  # EG3D's real raw image
        m = mask.view(-1, 1, 1, 1)
        real = {"image": torch.where(m, images["image"], real["image"]), "image_raw": torch.where(m, raw, real["image_raw"])}
        return real, torch.where(mask.view(-1, 1), images["c"].to(c.dtype), c)

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        """StyleGAN2-ADA's EMA: half-life ema_kimg thousand images, ramped up over the first images."""
        cfg = self.config
        ema_nimg = cfg.ema_kimg * 1000
        if cfg.ema_rampup is not None:
            ema_nimg = min(ema_nimg, (step + 1) * cfg.batch * cfg.ema_rampup)
        beta = 0.5 ** (cfg.batch / max(ema_nimg, 1e-8))
        for p_ema, p in zip(self.student_ema.parameters(), self.student.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(self.student_ema.buffers(), self.student.buffers()):
            b_ema.copy_(b)

    # --- the run ----------------------------------------------------------------------------

    def run_config(self) -> dict:
        return {"train": self.config.to_json(), "identity": self.config.identity(),
                "teacher": self.teacher_id, "student": self.student.init_kwargs, "discriminator": self.d_kwargs,
                "world_size": self.world.size}

    def prepare_output(self) -> None:
        """Refuse to overwrite a run; with --resume, load its checkpoint."""
        existing = [n for n in (CHECKPOINT_NAME, METRICS_NAME, STUDENT_NAME) if (self.out / n).exists()]
        if existing and not self.config.resume:
            raise RunExistsError(f"--out {self.out} holds a run ({', '.join(existing)}); pass --resume to continue "
                                 f"it, or choose another --out (nothing was changed)")
        if self.config.resume and (self.out / CHECKPOINT_NAME).exists():
            self.load(self.out / CHECKPOINT_NAME)
        self.world.barrier()
        if self.world.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            self._trim_metrics()
        self.world.barrier()

    def load(self, path) -> None:
        checkpoint = ckpt.load_checkpoint(path)
        theirs = checkpoint.config.get("identity", {})
        ours = json.loads(json.dumps(self.run_config()["identity"]))  # tuples as lists, as stored
        differ = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        if differ:
            raise ckpt.CheckpointError(f"{path}: the run was started with other options ("
                                       + ", ".join(f"--{k.replace('_', '-')} {theirs.get(k)!r} there, "
                                                   f"{ours.get(k)!r} now" for k in differ) + ")")
        if checkpoint.config.get("teacher") != self.teacher_id:
            raise ckpt.CheckpointError(f"{path}: the run was trained from another teacher")
        if checkpoint.step > self.config.steps:
            raise ckpt.CheckpointError(f"{path} is at step {checkpoint.step}, past --steps {self.config.steps}")
        ckpt.restore(checkpoint, self._modules(), self._optimizers())
        self.step = checkpoint.step

    def save(self) -> None:
        if not self.world.is_main:
            return
        path = self.out / CHECKPOINT_NAME
        try:
            ckpt.save_checkpoint(path, self.step, self.run_config(), self._modules(), self._optimizers())
        except OSError as e:
            raise OSError(e.errno, f"could not write {path} ({e.strerror or e}); {self._last_checkpoint()}") from e

    def run(self, progress=None) -> None:
        """Train from self.step to config.steps; `progress` is a tqdm-like bar or None."""
        cfg = self.config
        self.prepare_output()
        previous = self._install_signal_handlers()
        try:
            last = time.perf_counter()
            while self.step < cfg.steps:
                logged = self.train_step(self.step)
                self.step += 1
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(stage=logged["stage"], loss=f"{logged['loss_student']:.4f}")
                stop = self._stop_everywhere()
                if self.step % cfg.log_every == 0 or self.step == cfg.steps or stop:
                    now = time.perf_counter()
                    self._log({"step": self.step, "kimg": self.step * cfg.batch / 1000,
                               "sec_per_step": (now - last) / cfg.log_every, **logged})
                    last = now
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps or stop:
                    self.save()
                    self.world.barrier()
                if stop:
                    raise KeyboardInterrupt
            if self.world.is_main:
                student_pkg.save(self.student_ema, self.out / STUDENT_NAME)
                plot_losses(self.out / METRICS_NAME, self.out / LOSSES_PLOT)
        finally:
            self._restore_signal_handlers(previous)

    # --- helpers ----------------------------------------------------------------------------

    def _modules(self) -> dict:
        return {"student": self.student, "student_ema": self.student_ema, "discriminator": self.discriminator}

    def _optimizers(self) -> dict:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    def _last_checkpoint(self) -> str:
        path = self.out / CHECKPOINT_NAME
        if path.exists():
            try:  # the header alone: a checkpoint can be hundreds of MB
                return f"the last checkpoint ({path}, step {int(peek_metadata(path)['step'])}) is intact"
            except (ValueError, KeyError):
                pass
        return "no checkpoint was written yet"

    def _log(self, record: dict) -> None:
        if not self.world.is_main:
            return
        with open(self.out / METRICS_NAME, "a") as f:
            f.write(json.dumps(record) + "\n")

    def _trim_metrics(self) -> None:
        """Drop logged lines past the step being resumed from (they will be logged again)."""
        path = self.out / METRICS_NAME
        if not path.exists():
            return
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= self.step]
        if len(kept) != len(lines):
            from ..formats import atomic_write

            atomic_write(path, lambda f: f.write("".join(line + "\n" for line in kept).encode()))

    def _install_signal_handlers(self):
        if threading_is_main():
            def request_stop(signum, frame):
                if self._stop_requested:  # a second Ctrl-C stops at once
                    raise KeyboardInterrupt
                self._stop_requested = True
            return {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        return {}

    @staticmethod
    def _restore_signal_handlers(previous: dict) -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    def _stop_everywhere(self) -> bool:
        """Whether any process was asked to stop (all processes stop at the same step)."""
        flag = torch.tensor([1.0 if self._stop_requested else 0.0], device=self.device)
        if self.world.size > 1:
            import torch.distributed as dist

            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())


def plot_losses(metrics_path, plot_path) -> None:
    """The loss curves of a run as a PNG: the student's terms and the discriminator's, log scale."""
    from ..plots import line_plot, read_jsonl

    records = read_jsonl(metrics_path)
    panels = []
    for title, prefixes in (("student", ("rec_", "adv_g")), ("discriminator", ("adv_d", "r1"))):
        keys = sorted({k for r in records for k in r if k.startswith(prefixes)})
        series = {k: ([r["step"] for r in records if k in r], [r[k] for r in records if k in r]) for k in keys}
        if series:
            panels.append((title, series))
    if panels:
        line_plot(plot_path, "distillation losses", panels, "step", log_y=True, y_from_zero=False)


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def _step_of(line: str):
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return None
