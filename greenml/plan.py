"""Planning a training run from its size: FLOPs -> wall-clock time and GPU-hours.

Articles on the cost of large models quote a run in training FLOPs (Epoch AI: GPT-4 at
2.1e25 FLOPs over 95 days). Turning FLOPs into time needs three more figures::

    hours = FLOPs / (GPUs x peak FLOP/s per GPU x MFU) / 3600

- **FLOPs** given directly, or estimated as ``6 x N x D`` for a dense transformer with ``N``
  parameters trained on ``D`` tokens (2 FLOPs per parameter per token forward, 4 backward:
  Kaplan et al. 2020; Hoffmann et al. 2022, the Chinchilla paper, use the same rule). It
  leaves out attention's own FLOPs and any activation recomputation, so it is a lower
  bound for long contexts.
- **Peak** is the GPU table's dense tensor-core figure at the run's precision (BF16 by
  default), the same factor measured runs use for their MFU.
- **MFU**, the share of the peak a real run sustains: :data:`DEFAULT_MFU` unless given.

Either the GPU count is known and the time follows, or a deadline (hours) is given and the
count follows (rounded up to whole GPUs, which finish a little early: the time is
recomputed for that count).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from greenml.config import PYTHON, Voice
from greenml.errors import ConfigError
from greenml.factors.provenance import Factor

DEFAULT_MFU = 0.4
#: Where the default MFU comes from: large dense runs sustain 38-46 % of the BF16 peak.
MFU_DEFAULT_FACTOR = Factor(
    "mfu",
    DEFAULT_MFU,
    "ratio",
    source=(
        "greenml default, from published large-run MFU: Llama 3 405B 38-43 % BF16 MFU on "
        "8,192-16,384 H100s (Llama Team, 'The Llama 3 Herd of Models', 2024, table 4); "
        "PaLM 540B 46.2 % on TPU v4 (Chowdhery et al. 2022)"
    ),
    year=2024,
    note="the share of the dense peak a well-tuned large run sustains; smaller or "
    "communication-bound runs reach less: give your own with mfu",
)
FLOPS_RULE = (
    "training FLOPs = 6 x parameters x tokens (dense transformer; Kaplan et al. 2020, "
    "'Scaling Laws for Neural Language Models'; Hoffmann et al. 2022)"
)


@dataclass(frozen=True)
class Plan:
    """How long ``flops`` take on ``gpu_count`` GPUs, and the figures behind it."""

    flops: float
    params: float | None
    tokens: float | None
    mfu: float
    peak_flops: float  # per GPU, FLOP/s
    precision: str
    gpu_count: int
    hours: float
    gpu_model: str
    factors: tuple[Factor, ...]
    notes: tuple[str, ...] = ()

    @property
    def gpu_hours(self) -> float:
        return self.gpu_count * self.hours

    @property
    def days(self) -> float:
        return self.hours / 24.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "flops": self.flops,
            "params": self.params,
            "tokens": self.tokens,
            "flops_rule": FLOPS_RULE if self.params is not None else "given",
            "mfu": self.mfu,
            "precision": self.precision,
            "gpu_model": self.gpu_model,
            "peak_flops_per_gpu": self.peak_flops,
            "gpu_count": self.gpu_count,
            "hours": self.hours,
            "days": self.days,
            "gpu_hours": self.gpu_hours,
            "notes": list(self.notes),
        }


def _positive(voice: Voice, key: str, value: float | None, rule: str) -> None:
    if value is None:
        return
    what = voice.given(key, value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} is not a number; give {rule}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what} is invalid: give {rule}")


def check_inputs(
    *,
    flops: float | None,
    params: float | None,
    tokens: float | None,
    mfu: float | None,
    voice: Voice = PYTHON,
) -> bool:
    """Whether a plan is asked for; its inputs' errors name each bad value."""
    _positive(voice, "flops", flops, "the run's training FLOPs, > 0 (e.g. 2.1e25)")
    _positive(voice, "params", params, "the model's parameter count, > 0 (e.g. 7e9)")
    _positive(voice, "tokens", tokens, "the training tokens, > 0 (e.g. 2e12)")
    if mfu is not None:
        what = voice.given("mfu", mfu)
        if isinstance(mfu, bool) or not isinstance(mfu, (int, float)):
            raise ConfigError(f"{what} is not a number; give a share of the peak in (0, 1]")
        if not math.isfinite(mfu) or not 0 < mfu <= 1:
            raise ConfigError(
                f"{what} is invalid: MFU is a share of the peak in (0, 1] (0.4 is 40 %)"
            )
    if flops is not None and (params is not None or tokens is not None):
        raise ConfigError(
            f"{voice.given('flops', flops)} and {voice.option('params').rstrip('=')}/"
            f"{voice.option('tokens').rstrip('=')} both give the training FLOPs: give "
            f"{voice.option('flops').rstrip('=')} alone, or parameters and tokens (6 x N x D)"
        )
    if (params is None) != (tokens is None):
        given, missing = ("params", "tokens") if tokens is None else ("tokens", "params")
        raise ConfigError(
            f"{voice.given(given, params if given == 'params' else tokens)} needs "
            f"{voice.option(missing).rstrip('=')} too: training FLOPs are 6 x parameters x "
            "tokens"
        )
    planned = flops is not None or params is not None
    if mfu is not None and not planned:
        raise ConfigError(
            f"{voice.given('mfu', mfu)} applies to a plan from model size: give "
            f"{voice.option('flops').rstrip('=')} or {voice.option('params').rstrip('=')} "
            f"and {voice.option('tokens').rstrip('=')}"
        )
    return planned


def make_plan(
    *,
    flops: float | None,
    params: float | None,
    tokens: float | None,
    mfu: float | None,
    peak: Factor,
    gpu_model: str,
    precision: str,
    count: int | None,
    hours: float | None,
    voice: Voice = PYTHON,
) -> Plan:
    """The plan (see the module docstring); exactly one of ``count`` and ``hours``."""
    factors: list[Factor] = []
    if flops is None:
        assert params is not None and tokens is not None
        flops = 6.0 * params * tokens
        factors.append(
            Factor(
                "training_flops",
                flops,
                "FLOP",
                source=FLOPS_RULE,
                note=f"6 x {params:g} x {tokens:g}",
            )
        )
    else:
        factors.append(Factor("training_flops", flops, "FLOP", source="user-supplied"))
    if mfu is None:
        mfu_factor = MFU_DEFAULT_FACTOR
    else:
        mfu_factor = Factor("mfu", mfu, "ratio", source="user-supplied")
    factors += [mfu_factor, peak]
    rate = peak.value * mfu_factor.value  # FLOP/s one GPU sustains
    notes = []
    if count is not None and hours is not None:
        raise ConfigError(
            f"{voice.given('count', count)} and {voice.given('hours', hours)} with a plan from "
            "model size: give the GPUs (the time follows) or the hours (the GPUs follow), "
            "not both"
        )
    if count is None:
        if hours is None:
            raise ConfigError(
                f"a plan from model size needs {voice.set('count', '<GPUs>')} (the time "
                f"follows) or {voice.set('hours', '<deadline>')} (the GPUs follow)"
            )
        _positive(voice, "hours", hours, "wall-clock hours > 0")
        needed = flops / (rate * hours * 3600.0)
        count = max(1, math.ceil(needed - 1e-9))
        notes.append(
            f"{needed:,.1f} GPUs finish in {hours:g} h; {count:,} whole GPUs take "
            f"{flops / (rate * count) / 3600.0:,.1f} h"
        )
    hours = flops / (rate * count) / 3600.0
    return Plan(
        flops=flops,
        params=params,
        tokens=tokens,
        mfu=mfu_factor.value,
        peak_flops=peak.value,
        precision=precision,
        gpu_count=count,
        hours=hours,
        gpu_model=gpu_model,
        factors=tuple(factors),
        notes=tuple(notes),
    )
