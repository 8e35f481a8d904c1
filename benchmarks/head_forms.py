"""Head forms: quality against bytes per user on a frozen-feature probe (no generator).

NOT the issue's `hydralm eval` comparison (which needs the embedded vLLM for labels and about an
hour per task here): a cheaper probe of one question, whether a compact head loses what a dense
head learns from one user's history. Synthetic users (hydralm.data.synth), the pretrained MiniLM
frozen as the base (not trained on the task), one head per user fitted on the user's HISTORY only
(the fit stage's setting: lr 5e-3, 50 epochs, batch 16, random init), stored in its dtype and
loaded back through the real head file code, then scored on the user's held-out queries:

- synth-tag: pairs (movie description, "tag: t") for the 15 tags, label 1 for the user's tag; a
  query is right when the head ranks the gold tag first (the adapter's selection, with every tag as
  a candidate).
- synth-title: pairs (abstract, title) with the user's own title as the positive and the same
  paper titled in 7 other users' styles as negatives (hydralm.data.synth_titles); a query is right
  when the user's own title ranks first (recognising the user's style, as the adapter must).

Per form: accuracy with a 95% bootstrap interval, the paired difference against the dense float32
head (same queries, same resamples), and the head file's bytes per user.

    .venv/bin/python benchmarks/head_forms.py --quick     # under 60 s
    .venv/bin/python benchmarks/head_forms.py             # benchmarks/results/head_forms.json
"""

from __future__ import annotations

import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, write_result  # noqa: E402

from hydralm.artifacts.serialize import decode_head, encode_head  # noqa: E402
from hydralm.data.synth import synthesize  # noqa: E402
from hydralm.data.synth_titles import TitleUser, title_paper, title_user  # noqa: E402
from hydralm.data.synth_vocab import SIGNATURE_ADJECTIVES, TAGS, TITLE_STYLES  # noqa: E402
from hydralm.model import (  # noqa: E402
    BaseEncoder,
    HeadBank,
    HeadConfig,
    ModelConfig,
    fit_heads_on_embeddings,  # noqa: E402
)

FORMS = [HeadConfig(),                                            # the baseline: the paper's
         HeadConfig(dtype="int8"),
         HeadConfig(form="lowrank", rank=3, dtype="float32"),
         HeadConfig(form="lowrank", rank=8, dtype="bfloat16"),
         HeadConfig(form="lowrank", rank=8, dtype="int8"),
         HeadConfig(form="lowrank", rank=16, dtype="int8")]
NEGATIVE_TITLES = 7


def _description(text: str) -> str:
    return text.split("description: ", 1)[-1]


def _abstract(text: str) -> str:
    return text.split("abstract of a paper: ", 1)[-1]


def tag_pairs(records) -> tuple[list[tuple], list[tuple]]:
    """(train, test) rows of (user, query id, first, second, label); every tag a candidate."""
    train, test, seen = [], [], set()
    for r in records:
        if r.user_id not in seen:
            seen.add(r.user_id)
            for item in r.profile:
                train += [(r.user_id, item["id"], item["description"], f"tag: {t}",
                           int(t == item["tag"])) for t in TAGS]
        test += [(r.user_id, r.id, _description(r.input), f"tag: {t}", int(t == r.gold))
                 for t in TAGS]
    return train, test


def _paper(rng: random.Random, user: TitleUser) -> tuple[str, str, list[str]]:
    """(abstract, the user's title, the same paper titled in 7 other styles): the negatives
    differ from the positive only in style, as the adapter's candidates do."""
    state = rng.getstate()
    abstract, own = title_paper(rng, user)
    after, others = rng.getstate(), []
    for k in range(1, NEGATIVE_TITLES + 1):
        other = TitleUser(user.areas, (user.style + k) % len(TITLE_STYLES),
                          SIGNATURE_ADJECTIVES[(SIGNATURE_ADJECTIVES.index(user.adjective) + k)
                                               % len(SIGNATURE_ADJECTIVES)])
        rng.setstate(state)
        others.append(title_paper(rng, other)[1])
    rng.setstate(after)
    return abstract, own, others


def title_pairs(users: int, items: int, queries: int,
                seed: int) -> tuple[list[tuple], list[tuple]]:
    """(train, test) rows: the user's own title against the same paper in 7 other styles."""
    train, test = [], []
    for number in range(users):
        rng = random.Random(f"head-forms-probe/{seed}/{number}")
        user, uid = title_user(rng), f"u{number:04d}"
        for j in range(items + queries):
            abstract, own, others = _paper(rng, user)
            rows = [(uid, f"{uid}-{j}", abstract, own, 1)]
            rows += [(uid, f"{uid}-{j}", abstract, t, 0) for t in others]
            (train if j < items else test).extend(rows)
    return train, test


def _embed(encoder: BaseEncoder, rows: list[tuple]) -> torch.Tensor:
    return encoder.embed([r[2] for r in rows], [r[3] for r in rows], batch_size=64)


def _stored(state: Any) -> Any:
    """The head as a registry would give it back: through its file, in its storage dtype."""
    data = encode_head(state, kind="adapter", user_id="u", base_version="probe")
    return decode_head(data, "probe head").state, len(data)


def correct_per_query(bank: HeadBank, x: torch.Tensor, rows: list[tuple]) -> np.ndarray:
    """1.0 where the query's positive pair scores highest among its candidates."""
    with torch.no_grad():
        scores = torch.softmax(bank(x, torch.tensor([r[5] for r in rows])), -1)[:, 1]
    best: dict[str, tuple[float, int]] = {}
    for row, score in zip(rows, scores.tolist(), strict=True):
        if row[1] not in best or score > best[row[1]][0]:
            best[row[1]] = (score, row[4])
    return np.array([float(label) for _, label in best.values()])


def paired(a: np.ndarray, b: np.ndarray, resamples: int, seed: int) -> dict[str, float]:
    """mean(a) - mean(b) with a paired percentile bootstrap interval (same resampled queries)."""
    idx = np.random.default_rng(seed).integers(0, a.size, size=(resamples, a.size))
    diffs = a[idx].mean(1) - b[idx].mean(1)
    return {"mean": float(a.mean() - b.mean()), "ci_low": float(np.percentile(diffs, 2.5)),
            "ci_high": float(np.percentile(diffs, 97.5))}


def interval(a: np.ndarray, resamples: int, seed: int) -> dict[str, float]:
    idx = np.random.default_rng(seed).integers(0, a.size, size=(resamples, a.size))
    means = a[idx].mean(1)
    return {"mean": float(a.mean()), "ci_low": float(np.percentile(means, 2.5)),
            "ci_high": float(np.percentile(means, 97.5))}


def run_task(task: str, encoder: BaseEncoder, users: int, queries: int, epochs: int,
             seed: int, resamples: int) -> dict[str, Any]:
    if task == "synth-tag":
        records = synthesize(task, users, seed, queries_per_user=queries, items_per_user=20)
        train, test = tag_pairs(records)
    else:
        train, test = title_pairs(users, 20, queries, seed)
    index = {u: i for i, u in enumerate(sorted({r[0] for r in train}))}
    train = [(*r, index[r[0]]) for r in train]
    test = [(*r, index[r[0]]) for r in test]
    start = time.monotonic()
    x_train, x_test = _embed(encoder, train), _embed(encoder, test)
    embed_s = time.monotonic() - start
    head_idx = torch.tensor([r[5] for r in train])
    labels = torch.tensor([r[4] for r in train])
    results, baseline = [], None
    for form in FORMS:
        start = time.monotonic()
        bank = fit_heads_on_embeddings(x_train, head_idx, labels, len(index), head=form,
                                       epochs=epochs, lr=5e-3, batch_size=16, seed=seed)
        fit_s = time.monotonic() - start
        stored = [_stored(bank.extract(i)) for i in range(len(index))]
        loaded = HeadBank.from_states([s for s, _ in stored], dropout=0.0).eval()
        correct = correct_per_query(loaded, x_test, test)
        baseline = correct if baseline is None else baseline
        results.append({"head": form.describe(), "bytes_per_user": stored[0][1],
                        "accuracy": interval(correct, resamples, seed),
                        "vs_dense_float32": paired(correct, baseline, resamples, seed),
                        "fit_s": round(fit_s, 2)})
        print(f"{task} {form.describe():>22}: {stored[0][1]:>7} B/user, accuracy "
              f"{correct.mean():.3f}, vs dense {results[-1]['vs_dense_float32']}", flush=True)
    return {"task": task, "users": users, "test_queries": int(baseline.size),
            "train_pairs": len(train), "embed_s": round(embed_s, 1), "forms": results}


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    users, queries, epochs = (4, 4, 10) if args.quick else (48, 8, 50)
    encoder = BaseEncoder.from_config(ModelConfig(max_length=128)).eval()
    start = time.monotonic()
    tasks = [run_task(task, encoder, users, queries, epochs, seed=0,
                      resamples=200 if args.quick else 1000)
             for task in ("synth-tag", "synth-title")]
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = {x for x in line.split()[2:] if x.startswith(("avx512", "amx"))}
                break
    path = write_result("head_forms" + ("_quick" if args.quick else ""), {
        "benchmark": "head_forms", "quick": args.quick, "seconds": round(time.monotonic() - start),
        "probe": "frozen pretrained MiniLM, one head per user fitted on history only; NOT "
                 "hydralm eval (no generator)",
        "fit": {"epochs": epochs, "lr": 5e-3, "batch_size": 16, "init": "random"},
        "machine": {"cpu": platform.processor() or _cpu_model(), "flags": sorted(flags),
                    "cpus": os.cpu_count(), "torch_threads": args.threads},
        "tasks": tasks}, args.out)
    print(f"wrote {path}")


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


if __name__ == "__main__":
    main()
