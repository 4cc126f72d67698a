"""Training you can watch: the validation slice, its loss, and accelerate's trackers.

The validation slice is a deterministic share of the identity data (per seed), taken out before
anything is trained on; its loss is measured at every checkpoint and at the end. `report_to`
names an accelerate tracker (tensorboard, wandb, mlflow) that receives every log.jsonl entry.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from .errors import UserError

TRACKERS = ("none", "tensorboard", "wandb", "mlflow")


def split_val(convs: list, share: float, seed: int) -> tuple[list, list]:
    """(train, val): `share` of `convs`, rounded (none when that rounds to 0), chosen by `seed`."""
    if not 0 <= share < 1:
        raise UserError(f"val_share {share}: must be in [0, 1) (0 turns validation off)")
    n = min(len(convs) - 1, round(len(convs) * share))
    if n <= 0:
        return list(convs), []
    val = set(random.Random(seed + 7919).sample(range(len(convs)), n))
    return [c for i, c in enumerate(convs) if i not in val], [
        c for i, c in enumerate(convs) if i in val
    ]


def log_with(report_to: str) -> str | None:
    """accelerate's `log_with` for a `report_to` value (None: no tracker)."""
    if report_to not in TRACKERS:
        raise UserError(f"report_to {report_to!r}: expected one of {', '.join(TRACKERS)}")
    if report_to == "none":
        return None
    import importlib.util

    if importlib.util.find_spec(report_to) is None:
        fix = (
            "pip install 'idtune[watch]'"
            if report_to == "tensorboard"
            else f"pip install {report_to}"
        )
        raise UserError(f"report_to {report_to}: the {report_to} package is not installed ({fix})")
    return report_to


def start_trackers(accelerator: Any, settings: dict) -> None:
    """init_trackers with the run's settings (flattened to scalars trackers accept)."""
    if not accelerator.log_with:
        return
    flat = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in settings.items()}
    accelerator.init_trackers("idtune", config=flat)


def val_loss(model: Any, batches: list[dict], autocast: Any) -> float | None:
    """Mean loss per trained token over the validation micro-batches (no gradients)."""
    import torch

    if not batches:
        return None
    from .data import render

    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad(), autocast:
        for t in batches:
            total += float(model(**t))
            tokens += int((t["labels"] != render.IGNORE).sum())
    if was_training:
        model.train()
    return round(total / max(tokens, 1), 5)


def scored_markdown(rows: list[dict]) -> str:
    """samples.md lines for scored probe answers: ✓/✗ (and leak), cut answers marked; a profile
    probe shows its field (based_on, purpose, fact_KEY, no_invention) and what it expected."""
    out = "### held-out probes\n\n"
    for r in rows:
        verdict = "leak" if r.get("leak") else {True: "✓", False: "✗", None: "·"}[r["ok"]]
        answer = r["answer"].replace("\n", " ")
        out += f"- {verdict} [{r.get('field') or r['kind']} {r['lang']}] **{r['prompt']}** {answer}"
        if r.get("field") == "based_on_yes_no":
            out += f" *(true answer: {'yes' if r['truth'] else 'no'})*"
        elif r.get("value"):
            out += f" *(expected: {r['value']})*"
        if r.get("invented"):
            out += f" *(invented: {', '.join(r['invented'])})*"
        out += " *(cut)*\n" if r.get("cut") else "\n"
    return out + "\n"


def tracker_dir(run: Path) -> Path:
    """Where trackers that write files (tensorboard, mlflow's file store) put them."""
    return run / "trackers"
