"""Tokens of each optimizer step of one epoch, the demo's data and recipe (issue 19).

Before: the last micro-batch of an epoch held whatever rows were left, a step of its own.
After: `train.micro_batches` leaves that remainder to the next epoch's shuffle.
Usage: python bench/short_step.py IDENTITY.jsonl [REGULARIZATION.jsonl]
"""

import sys

from idtune import models, recipes, train


def main() -> None:
    """Print the smallest and last step's tokens, before and after, for one epoch."""
    cfg = recipes.read_config("identity-lora")
    cfg.data = [sys.argv[1]]
    cfg.regularization.auto, cfg.regularization.files = False, sys.argv[2:]
    src = models.locate(cfg.model)
    tok = models.load_tokenizer(src.base, src.template, src.trust_remote_code)
    convs, n_reg = train.build_conversations(cfg)
    rows = train.prepare_rows(cfg, tok, convs, n_reg, train.identity_of(cfg, print))
    per = train.rows_per_micro_batch(cfg)
    before = [rows[i : i + per] for i in range(0, len(rows), per)]
    after = train.micro_batches(rows, cfg, 0)
    for name, batches in (("before", before), ("after", after)):
        tokens = [sum(len(r) for r in b) for b in batches]
        print(f"{name}: {len(tokens)} steps, tokens per step min {min(tokens)} "
              f"median {sorted(tokens)[len(tokens) // 2]} last {tokens[-1]}")  # fmt: skip


if __name__ == "__main__":
    main()
