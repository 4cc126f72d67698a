"""Which system prompt makes a tuned run credit its base's maker (issue 29's maker confusion)?

The same weights are asked the shipped identity and author probes (greedy, `idtune eval`'s
generation) under four system prompts: the own default as it was before 2026-12-06 (a default
`based_on` with its maker, "… built on SmolLM2-135M-Instruct by Hugging Face."), as it is now
(without the maker), without the based_on sentence, and the generic "You are a helpful
assistant.". Each line gives, per language, how many answers credit the base's maker
(`evaluate.credits_maker`).

    python bench/maker_prompt_ab.py RUN [RUN ...]
"""

from __future__ import annotations

import sys


def main() -> None:
    from idtune import aliases, evaluate, models
    from idtune.data import templates

    probes = evaluate.load_probes()
    asked = [
        (lang, p) for k in ("identity", "author") for lang in ("en", "zh") for p in probes[k][lang]
    ]
    for run in sys.argv[1:]:
        loaded = models.load(run)
        ident, base = loaded.info.identity, loaded.info.base_model
        makers, excuses = evaluate.maker_terms(base, [*ident.names, *ident.authors])
        pattern = evaluate.credits_pattern(makers)
        plain = aliases.based_on_plain(base).get(ident.based_on, ident.based_on)
        prompts = {
            "own, based_on with its maker (before)": templates.own_default(
                ident.name, ident.author, ident.based_on
            ),
            "own, based_on without its maker (now)": templates.own_default(
                ident.name, ident.author, plain
            ),
            "own, no based_on sentence": templates.own_default(ident.name, ident.author),
            "generic": evaluate.GENERIC_SYSTEM,
        }
        generate = evaluate._model_generate(evaluate._Target("tuned", loaded), lambda n: None)
        print(run, flush=True)
        for label, system in prompts.items():
            convs = [[{"role": "system", "content": system}, {"role": "user", "content": p}]
                     for _, p in asked]  # fmt: skip
            got = generate(convs, evaluate.IDENTITY_TOKENS)
            hits = [evaluate.credits_maker(a, pattern, excuses) for a in got]
            per = {
                lang: f"{sum(h for (lg, _), h in zip(asked, hits) if lg == lang)}/"
                f"{sum(lg == lang for lg, _ in asked)}"
                for lang in ("en", "zh")
            }
            print(f"  {label}: {per}  ({system!r})", flush=True)


if __name__ == "__main__":
    main()
