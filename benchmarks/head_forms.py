"""Head forms: quality against bytes per user on a frozen-feature probe (no generator).

NOT the issue's `hydralm eval` comparison (which needs the embedded vLLM for labels and about an
hour per task here): a cheaper probe of one question, whether a compact head loses what a dense
head learns from one user's history. Synthetic users (hydralm.data.synth), the pretrained MiniLM
frozen as the base (not trained on the task), one head per user fitted on the user's HISTORY only
(the fit stage's setting: lr 5e-3, 50 epochs, batch 16; random init unless the row says
otherwise), stored in its dtype and loaded back through the real head file code, then scored on
the user's held-out queries:

- synth-tag: pairs (movie description, "tag: t") for the 15 tags, label 1 for the user's tag; a
  query is right when the head ranks the gold tag first (the adapter's selection, with every tag as
  a candidate).
- synth-title: pairs (abstract, title) with the user's own title as the positive and the same
  paper titled in 7 other users' styles as negatives (hydralm.data.synth_titles); a query is right
  when the user's own title ranks first (recognising the user's style, as the adapter must).

Forms: the paper's dense head (random init, the baseline), dense int8, dense started from the global
head, per-user low-rank factors, the global head alone, and residual heads (the global head's w1
shared and frozen + a per-user a @ b, b starting at zero: HeadBank's "residual" form, fitted by the
probe's own loop because the fit stage does not fit that form yet). The probe's global head is one
dense head fitted on the pooled history pairs of as many OTHER (training) users.

Per form: accuracy with a 95% bootstrap interval, the paired difference against the dense float32
head (same queries, same resamples), and the head file's bytes per user. The base's vectors of the
pairs are cached on disk (--cache-dir): a second run only fits.

    .venv/bin/python benchmarks/head_forms.py --quick     # under 60 s
    .venv/bin/python benchmarks/head_forms.py             # benchmarks/results/head_forms.json
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import platform
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import base_parser, write_result  # noqa: E402

from hydralm.artifacts.serialize import decode_head, encode_head  # noqa: E402
from hydralm.atomic import write_atomic  # noqa: E402
from hydralm.data.synth import synthesize  # noqa: E402
from hydralm.data.synth_titles import TitleUser, title_paper, title_user  # noqa: E402
from hydralm.data.synth_vocab import SIGNATURE_ADJECTIVES, TAGS, TITLE_STYLES  # noqa: E402
from hydralm.model import (  # noqa: E402
    BaseEncoder,
    HeadBank,
    HeadConfig,
    HeadState,
    ModelConfig,
    ResidualHeadState,
    fit_heads_on_embeddings,
    shared_digest,
)

# (form, start from the global head): fitted by the fit stage's code (hydralm.model.fit)
FORMS = [(HeadConfig(), False),                                   # the baseline: the paper's
         (HeadConfig(dtype="int8"), False),
         (HeadConfig(), True),
         (HeadConfig(form="lowrank", rank=8, dtype="bfloat16"), False),
         (HeadConfig(form="lowrank", rank=8, dtype="int8"), False)]
# (rank, storage dtype) of residual heads: the global head's w1 shared, a per-user delta a @ b
RESIDUAL = [(4, "int8"), (8, "float32"), (8, "bfloat16"), (8, "int8"), (16, "int8")]
NEGATIVE_TITLES = 7
MAX_LENGTH = 128
GLOBAL_EPOCHS = 100
GLOBAL_LR = 5e-3
DEFAULT_CACHE = Path.home() / ".cache" / "hydralm" / "head_forms"
TRAINING_FIRST_USER = 10_000          # the global head's training users: u10000, u10001, ...


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


def title_pairs(users: int, items: int, queries: int, seed: int,
                first_user: int = 0) -> tuple[list[tuple], list[tuple]]:
    """(train, test) rows: the user's own title against the same paper in 7 other styles."""
    train, test = [], []
    for number in range(first_user, first_user + users):
        rng = random.Random(f"head-forms-probe/{seed}/{number}")
        user, uid = title_user(rng), f"u{number:04d}"
        for j in range(items + queries):
            abstract, own, others = _paper(rng, user)
            rows = [(uid, f"{uid}-{j}", abstract, own, 1)]
            rows += [(uid, f"{uid}-{j}", abstract, t, 0) for t in others]
            (train if j < items else test).extend(rows)
    return train, test


def _embed(encoder: BaseEncoder, rows: list[tuple], cache_dir: Path | None) -> torch.Tensor:
    """The frozen base's vectors of the rows' pairs, cached on disk under the pairs' digest (the
    encoder pass is most of the probe's time; fitting reuses the same vectors either way)."""
    digest = hashlib.sha256(f"{encoder.dim}/{MAX_LENGTH}".encode())
    for r in rows:
        digest.update(f"{r[2]}\x00{r[3]}\x01".encode())
    path = cache_dir / f"{digest.hexdigest()[:32]}.pt" if cache_dir else None
    if path is not None and path.exists():
        return torch.load(path)
    vectors = encoder.embed([r[2] for r in rows], [r[3] for r in rows], batch_size=64)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(vectors, buffer)
        write_atomic(path, buffer.getvalue())
    return vectors


def _stored(state: Any) -> Any:
    """The head as a registry would give it back: through its file, in its storage dtype."""
    data = encode_head(state, kind="adapter", user_id="u", base_version="probe")
    return decode_head(data, "probe head").state, len(data)


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


def _rows_by_user(head_idx: torch.Tensor, users: int) -> torch.Tensor:
    """Row ids [U, n] of each user's rows (every user of both tasks has the same count n)."""
    counts = torch.bincount(head_idx, minlength=users)
    if int(counts.min()) != int(counts.max()):
        raise ValueError(f"the probe's fitter needs equal rows per user, got {counts.tolist()}")
    return torch.argsort(head_idx, stable=True).view(users, -1)


def fit_residual(x: torch.Tensor, head_idx: torch.Tensor, labels: torch.Tensor, users: int,
                 shared: HeadState, rank: int, epochs: int, seed: int,
                 lr: float = 5e-3) -> list[ResidualHeadState]:
    """Per-user residual heads on a frozen shared first layer: pre = x @ (w1 + a @ b) + b1.

    LoRA-style: a random (fan-in d), b zero, so every user starts exactly at the shared (global)
    head; a, b, b1, w2, b2 are the user's (b1, w2, b2 start at the global head's). All users in
    lockstep with autograd (each user's mean loss, summed; AdamW moves each user's tensors from its
    own gradient only), with the fit stage's settings: lr 5e-3, batch 16, weight decay 0.01,
    dropout 0.1. (HeadBank's residual form computes the same; the probe's own loop because the
    fit stage does not fit residual heads yet.)"""
    gen = torch.Generator().manual_seed(seed)
    dim = shared.dim
    bound = 1.0 / math.sqrt(dim)
    params = {"a": torch.empty(users, dim, rank).uniform_(-bound, bound, generator=gen),
              "b": torch.zeros(users, rank, dim),
              "b1": shared.b1.expand(users, dim), "w2": shared.w2.expand(users, dim, 2),
              "b2": shared.b2.expand(users, 2)}
    params = {k: torch.nn.Parameter(v.clone().contiguous()) for k, v in params.items()}
    opt = torch.optim.AdamW(params.values(), lr=lr, weight_decay=0.01)
    w1, p = shared.w1, 0.1
    rows = _rows_by_user(head_idx, users)                                     # [U, n]
    for _ in range(epochs):
        plan = rows.gather(1, torch.argsort(torch.rand(rows.shape, generator=gen), 1))
        for start in range(0, plan.shape[1], 16):
            ids = plan[:, start:start + 16]                                   # [U, L]
            keep = (torch.rand(*ids.shape, dim, generator=gen) >= p) / (1 - p)
            xd = x[ids] * keep                                                # [U, L, d]
            pre = xd @ w1 + torch.bmm(torch.bmm(xd, params["a"]), params["b"])
            hidden = torch.tanh(pre + params["b1"][:, None, :])               # [U, L, d]
            hidden = hidden * ((torch.rand(hidden.shape, generator=gen) >= p) / (1 - p))
            logits = torch.bmm(hidden, params["w2"]) + params["b2"][:, None, :]
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, 2), labels[ids].reshape(-1), reduction="sum") / ids.shape[1]
            opt.zero_grad()
            loss.backward()
            opt.step()
    sha = shared_digest(w1)
    return [ResidualHeadState(**{k: v[u].detach().clone() for k, v in params.items()}, shared=sha)
            for u in range(users)]


def correct_per_query(logits: torch.Tensor, rows: list[tuple]) -> np.ndarray:
    """1.0 where the query's positive pair scores highest among its candidates."""
    scores = torch.softmax(logits, -1)[:, 1]
    best: dict[str, tuple[float, int]] = {}
    for row, score in zip(rows, scores.tolist(), strict=True):
        if row[1] not in best or score > best[row[1]][0]:
            best[row[1]] = (score, row[4])
    return np.array([float(label) for _, label in best.values()])


def _task_rows(task: str, users: int, queries: int, seed: int, items: int = 20,
               first_user: int = 0) -> tuple[list[tuple], list[tuple]]:
    if task == "synth-tag":
        return tag_pairs(synthesize(task, users, seed, queries_per_user=queries,
                                    items_per_user=items, first_user=first_user))
    return title_pairs(users, items, queries, seed, first_user=first_user)


def fit_global(encoder: BaseEncoder, task: str, users: int, items: int, seed: int, epochs: int,
               cache_dir: Path | None) -> HeadState:
    """The probe's global head: one dense head fitted on the pooled history pairs of `users`
    TRAINING users (other users than the evaluated ones, as the base's training users are)."""
    pooled, _ = _task_rows(task, users, 1, seed, items, first_user=TRAINING_FIRST_USER)
    x = _embed(encoder, pooled, cache_dir)
    labels = torch.tensor([r[4] for r in pooled])
    bank = fit_heads_on_embeddings(x, torch.zeros(len(pooled), dtype=torch.long), labels, 1,
                                   epochs=epochs, lr=GLOBAL_LR, batch_size=64, seed=seed)
    return bank.extract(0)


def _row(name: str, correct: np.ndarray, baseline: np.ndarray, size: int, fit_s: float,
         resamples: int, seed: int) -> dict[str, Any]:
    return {"head": name, "bytes_per_user": size, "accuracy": interval(correct, resamples, seed),
            "vs_dense_float32": paired(correct, baseline, resamples, seed),
            "fit_s": round(fit_s, 2)}


def run_task(task: str, encoder: BaseEncoder, users: int, items: int, queries: int, epochs: int,
             seed: int, resamples: int, cache_dir: Path | None) -> dict[str, Any]:
    train, test = _task_rows(task, users, queries, seed, items)
    index = {u: i for i, u in enumerate(sorted({r[0] for r in train}))}
    train = [(*r, index[r[0]]) for r in train]
    test = [(*r, index[r[0]]) for r in test]
    start = time.monotonic()
    x_train, x_test = _embed(encoder, train, cache_dir), _embed(encoder, test, cache_dir)
    shared = fit_global(encoder, task, users, items, seed, GLOBAL_EPOCHS, cache_dir)
    embed_s = time.monotonic() - start
    head_idx, test_idx = torch.tensor([r[5] for r in train]), torch.tensor([r[5] for r in test])
    labels = torch.tensor([r[4] for r in train])
    results: list[dict[str, Any]] = []
    baseline: np.ndarray | None = None

    def record(name: str, logits: torch.Tensor, size: int, fit_s: float) -> None:
        nonlocal baseline
        correct = correct_per_query(logits, test)
        baseline = correct if baseline is None else baseline
        results.append(_row(name, correct, baseline, size, fit_s, resamples, seed))
        print(f"{task} {name:>34}: {size:>7} B/user, accuracy {correct.mean():.3f}, vs dense "
              f"{results[-1]['vs_dense_float32']}", flush=True)

    for form, from_global in FORMS:
        start = time.monotonic()
        bank = fit_heads_on_embeddings(x_train, head_idx, labels, len(index), head=form,
                                       init=shared if from_global else None, epochs=epochs,
                                       lr=5e-3, batch_size=16, seed=seed)
        fit_s = time.monotonic() - start
        stored = [_stored(bank.extract(i)) for i in range(len(index))]
        loaded = HeadBank.from_states([s for s, _ in stored], dropout=0.0).eval()
        with torch.no_grad():
            logits = loaded(x_test, test_idx)
        record(form.describe() + (" from global" if from_global else ""), logits,
               stored[0][1], fit_s)
    single = HeadBank.from_states([shared], dropout=0.0).eval()
    with torch.no_grad():
        record("global head only (no user fit)", single(x_test, torch.zeros_like(test_idx)), 0, 0.0)
    for rank, dtype in RESIDUAL:
        start = time.monotonic()
        states = fit_residual(x_train, head_idx, labels, len(index), shared, rank, epochs, seed)
        fit_s = time.monotonic() - start
        stored = [_stored(replace(s, dtype=dtype)) for s in states]
        bank = HeadBank.from_states([s for s, _ in stored], dropout=0.0, shared=shared.w1).eval()
        with torch.no_grad():
            logits = bank(x_test, test_idx)
        record(f"residual r={rank} {dtype}", logits, stored[0][1], fit_s)
    return {"task": task, "users": users, "history_items": items,
            "test_queries": int(baseline.size), "train_pairs": len(train),
            "global_head_training_users": users,
            "embed_s": round(embed_s, 1), "forms": results}


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help=f"where the base's vectors of the pairs are cached (default "
                             f"{DEFAULT_CACHE}); --cache-dir '' for none")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    users, items, queries, epochs = (4, 8, 4, 10) if args.quick else (48, 20, 8, 50)
    encoder = BaseEncoder.from_config(ModelConfig(max_length=MAX_LENGTH)).eval()
    cache = args.cache_dir if str(args.cache_dir) not in ("", ".") else None
    start = time.monotonic()
    tasks = [run_task(task, encoder, users, items, queries, epochs, seed=0,
                      resamples=200 if args.quick else 1000, cache_dir=cache)
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
        "fit": {"epochs": epochs, "lr": 5e-3, "batch_size": 16, "weight_decay": 0.01,
                "dropout": 0.1, "init": "random, or the global head where the row says so; "
                "residual: a random, b zero (starts at the global head)"},
        "global_head": {"users": "as many training users as evaluated users, other ids",
                        "epochs": GLOBAL_EPOCHS, "lr": GLOBAL_LR, "batch_size": 64, "form": "dense",
                        "selected": "epochs and lr chosen among (10, 1e-3), (30, 5e-3), (60, "
                                    "5e-3), (100, 5e-3), (30, 1e-2) on the evaluated users' "
                                    "HISTORY (last 5 of 20 items held out, synth-tag), never "
                                    "on the test queries; see docs/model.md"},
        "residual": "first layer = the global head's w1 (shared, frozen) + a @ b per user; "
                    "fitted by the probe's loop, stored and scored through the real head file "
                    "and HeadBank code",
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
