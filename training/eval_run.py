"""The quality benchmark's run: per seed, HYDRA's training job, then every method on the test
users' held-out queries; then intervals, the result document, its table and its chart.

```
for seed in cfg.seeds:
    job = cfg.job(seed)                      users drawn by seed, own work dir, shared cache
    labels -> train -> fit-users             training users: bases + heads; test users: heads
                                             fitted on their own history only
    guard threshold <- training users' held-out queries (never test users), unless configured,
                       scored with the training users' heads fitted again from their own history
                       (guard.heads: fitted; a calibration job in <seed>/guard-calibration);
                       zero-fit picks get their own, chosen with each training user's zero-fit
                       head (the other training users' heads mixed)
    HYDRA methods <- the same held-out queries with the calibration heads and the chosen guard,
                       saved to <seed>/guard-calibration/eval/predictions.jsonl: what
                       `hydralm eval-compare --training` compares two whole runs on; with
                       compare_head also the calibration heads fitted in the compared form: what
                       chooses a form; the test users' comparison is reported beside
    run_queries(Personalizer(...))           every method on the test users' queries
bootstrap over queries, averaged over seeds  -> quality_<dataset>_<task>.{json,md,png}
```
Every generator call goes through the response cache in `cfg.generator.cache`: a re-run of the
same config makes no generator call and writes the same table.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hydralm.artifacts import Registry
from hydralm.data import Dataset
from hydralm.data.fs import join_uri
from hydralm.evaluation import (
    HISTORY_KNN,
    PROMPT_BASELINES,
    CalibrationRow,
    EvalConfig,
    EvalQuery,
    MemoryHistory,
    QueryOutcome,
    QueryScores,
    bootstrap,
    bootstrap_difference,
    build_result,
    choose_guard,
    compared_methods,
    fallback_rates,
    head_comparison,
    head_tag,
    markdown_table,
    merge_variant_run,
    needs_scorer,
    oracle_name,
    plot_result,
    precision_comparison,
    relative_improvement,
    run_queries,
    selection_diagnostics,
    selection_margin,
    variant_row,
)
from hydralm.generator import GeneratorClient
from hydralm.jobconfig import JobConfig
from hydralm.pipeline import ADAPTER_PAIRS, Personalizer
from hydralm.pipeline.selection import FALLBACK_RULES, SelectionGuard
from hydralm.scoring import LocalPairScorer
from hydralm.tasks import get_task
from training.eval_train import fit_calibration_heads, fit_head_variant, train_seed
from training.files import write_atomic
from training.llm import embedded_generator
from training.ray_env import ray_session
from training.users import prepare_users

__all__ = ["SeedRun", "evaluate_seed", "generator_name", "run_eval", "summarize", "write_outputs"]

log = logging.getLogger(__name__)


@dataclass
class SeedRun:
    """One seed's answers and what producing them cost."""

    seed: int
    users: dict[str, int]
    outcomes: list[QueryOutcome]
    stats: dict[str, Any] = field(default_factory=dict)
    # with the guard calibrated on fitted heads: the training users' held-out queries answered by
    # the HYDRA methods with their calibration heads, as configured and (with compare_head, rows
    # <method>_<tag>) in the compared form
    train_outcomes: list[QueryOutcome] = field(default_factory=list)


def _test_queries(dataset: Dataset, users: tuple[str, ...],
                  per_user: int | None) -> tuple[list[EvalQuery], dict[str, tuple[dict, ...]]]:
    queries, histories = [], {}
    for user in users:
        histories[user] = dataset.profile(user)
        for record in dataset.queries(user)[:per_user]:
            if record.gold is None:
                raise ValueError(f"test query {record.id!r} of user {user!r} has no gold: "
                                 "evaluation needs the outputs file of the test split")
            queries.append(EvalQuery(user, record.id, record.input, record.gold))
    return queries, histories


def _held_out_train_queries(dataset: Dataset, users: tuple[str, ...], labelled: int | None,
                            per_user: int | None) -> tuple[list[EvalQuery], dict]:
    """Training users' queries that their labels did not use (those beyond `labelled`)."""
    queries, histories = [], {}
    if labelled is None:
        return queries, histories           # every query was labelled: nothing is held out
    for user in users:
        held_out = [r for r in dataset.queries(user)[labelled:] if r.gold is not None]
        if held_out:
            histories[user] = dataset.profile(user)
            queries += [EvalQuery(user, r.id, r.input, r.gold) for r in held_out[:per_user]]
    return queries, histories


def _guarded(cfg: EvalConfig) -> bool:
    """Whether a method the guard calibration answers with is evaluated."""
    return any(m in cfg.methods for m in ("hydra", "hydra_adapter"))


def _calibrates(cfg: EvalConfig) -> bool:
    """Whether the guard's threshold is chosen on training users' held-out queries."""
    return (cfg.guard.calibrated and cfg.labels.max_queries_per_user is not None
            and _guarded(cfg))


async def _choose_guard(cfg: EvalConfig, seed: int, personalizer: Personalizer,
                        dataset: Dataset, train_users: tuple[str, ...],
                        progress: bool) -> dict[str, Any]:
    """Set `personalizer.guard` from the config, or choose its threshold on the training users'
    held-out queries (with their fitted heads when `guard.heads` is fitted); returns what was
    chosen and from what."""
    rules = list(FALLBACK_RULES) if cfg.guard.rule == "auto" else [cfg.guard.rule]
    if not cfg.guard.calibrated or not _guarded(cfg):
        personalizer.guard = SelectionGuard(cfg.guard.min_spread or 0.0, rules[0])
        return {"min_spread": personalizer.guard.min_spread, "rule": rules[0],
                "chosen_on": "config"}
    on_training, queries = _on_training(cfg, personalizer, dataset, train_users)
    if not queries:
        personalizer.guard = SelectionGuard(0.0, rules[0])
        return {"min_spread": 0.0, "rule": rules[0],
                "chosen_on": "off: no training query is held out "
                             "(labels.max_queries_per_user unset)"}
    fitted = cfg.guard.heads == "fitted"
    twin = copy.copy(on_training)
    if fitted:
        twin.scorer = _scorer(cfg.job(seed, calibration=True), ["hydra"])
    try:
        outcomes = await run_queries(twin, queries, ["hydra"], concurrency=cfg.concurrency,
                                     progress=progress, desc="guard calibration")
    finally:
        if fitted:
            twin.scorer.close()
    choice = choose_guard(personalizer.task, _calibration_rows(outcomes), rule=rules)
    guard = SelectionGuard(choice.min_spread, choice.rule)
    heads = ("their heads fitted from their own history" if fitted
             else "their jointly trained heads")
    chosen = {**choice.to_dict(), "heads": cfg.guard.heads,
              "chosen_on": f"training users' held-out queries, {heads}"}
    if "hydra_zero_fit" in cfg.methods:
        # zero-fit picks: the same queries, each training user routed over the OTHER training
        # users' heads (the router leaves the user's own out), as a new user is
        outcomes = await run_queries(on_training, queries, ["hydra_zero_fit"],
                                     concurrency=cfg.concurrency, progress=progress,
                                     desc="zero-fit guard calibration", selector="hydra_zero_fit")
        theirs = choose_guard(personalizer.task, _calibration_rows(outcomes), rule=rules)
        guard = replace(guard, zero_fit=SelectionGuard(theirs.min_spread, theirs.rule))
        chosen["zero_fit"] = {**theirs.to_dict(), "chosen_on": (
            "training users' held-out queries, each user's zero-fit head mixing the other "
            "training users' heads")}
    personalizer.guard = guard
    return chosen


def _on_training(cfg: EvalConfig, personalizer: Personalizer, dataset: Dataset,
                 train_users: tuple[str, ...]) -> tuple[Personalizer, list[EvalQuery]]:
    """`personalizer` reading the training users' histories, and their held-out queries."""
    queries, histories = _held_out_train_queries(dataset, train_users,
                                                 cfg.labels.max_queries_per_user,
                                                 cfg.max_queries_per_user)
    on_training = copy.copy(personalizer)
    on_training.history = MemoryHistory(histories)
    return on_training, queries


def _answers_on_training(cfg: EvalConfig) -> bool:
    """Whether the HYDRA methods answer the training users' held-out queries with their
    calibration heads (fitted from their own history as a new user's are)."""
    return _calibrates(cfg) and cfg.guard.heads == "fitted"


def _compares_on_training(cfg: EvalConfig) -> bool:
    """Whether the head forms are also compared there."""
    return cfg.compare_head is not None and _answers_on_training(cfg)


async def _hydra_on_training(cfg: EvalConfig, seed: int, personalizer: Personalizer,
                             dataset: Dataset, train_users: tuple[str, ...],
                             progress: bool) -> tuple[list[QueryOutcome], dict[str, Any] | None]:
    """The HYDRA methods on the training users' held-out queries (with the guard chosen for the
    test users) and the calibration heads as configured, saved in the calibration job's
    `eval/predictions.jsonl`: what compares two whole runs without looking at test users. With
    `cfg.compare_head` once more with the calibration heads fitted in that form (rows
    <method>_<tag>): the comparison that chooses a head form. Returns the outcomes and what the
    two forms' runs shared (None without compare_head)."""
    on_training, queries = _on_training(cfg, personalizer, dataset, train_users)
    methods = compared_methods(cfg.methods)
    calibration = cfg.job(seed, calibration=True)
    jobs = [calibration]
    if cfg.compare_head is not None:
        jobs.append(cfg.job(seed, cfg.compare_head, calibration=True))
    runs = []
    for job in jobs:
        twin = copy.copy(on_training)
        twin.scorer = _scorer(job, methods)
        try:
            runs.append(await run_queries(
                twin, queries, methods, concurrency=cfg.concurrency, progress=progress,
                desc=f"training users, heads {head_tag(job.adapter.head)}"))
        finally:
            twin.scorer.close()
    mine = runs[0]
    _write_predictions(join_uri(calibration.paths.work_dir, "eval", "predictions.jsonl"), mine)
    if cfg.compare_head is None:
        return mine, None
    return mine, merge_variant_run(mine, runs[1], head_tag(cfg.compare_head))


def _calibration_rows(outcomes: list[QueryOutcome]) -> list[CalibrationRow]:
    return [CalibrationRow(o.candidates, o.adapter_scores, o.gold, o.history) for o in outcomes]


def _scorer(job: JobConfig, methods: list[str],
            precision: str | None = None) -> LocalPairScorer | None:
    """The trained models in this process, when a HYDRA method is evaluated (in `precision`,
    default the job's). Each scoring call runs in its own forward pass (no coalescing across
    concurrent queries): a bf16 score moves by about 1e-3 with the other rows of its pass (their
    padding), and a re-run must pick the same candidates and write the same table."""
    if not any(needs_scorer(m) for m in methods):
        return None
    scorer = LocalPairScorer(Registry(job.paths.registry),
                             precision=precision or job.fit.precision, coalesce=False)
    scorer.load()
    return scorer


async def _variant(cfg: EvalConfig, job: JobConfig, precision: str, tag: str,
                   personalizer: Personalizer, queries: list[EvalQuery],
                   outcomes: list[QueryOutcome], progress: bool) -> dict[str, Any]:
    """The HYDRA methods with fitted heads again, scored by `job`'s registry in `precision`
    (same generator, history and guard), merged into `outcomes` as rows <method>_<tag>;
    returns what the two runs shared."""
    scorer = _scorer(job, cfg.methods, precision)
    twin = copy.copy(personalizer)
    twin.scorer = scorer
    try:
        theirs = await run_queries(twin, queries, compared_methods(cfg.methods),
                                   knn_k=job.labels.k_prompt, concurrency=cfg.concurrency,
                                   progress=progress, desc=f"eval {tag}")
    finally:
        scorer.close()
    return merge_variant_run(outcomes, theirs, tag)


async def _other_precision(cfg: EvalConfig, job: JobConfig, personalizer: Personalizer,
                           queries: list[EvalQuery], outcomes: list[QueryOutcome],
                           progress: bool) -> dict[str, Any]:
    """The bases in `cfg.compare_precision` (same heads): rows <method>_<precision>."""
    other = cfg.compare_precision
    if personalizer.scorer.precision == other:
        raise ValueError(f"precision {cfg.precision!r} resolves to {other!r} here, the same as "
                         f"compare_precision: compare with the other one")
    return {"precision": other, **await _variant(cfg, job, other, other, personalizer, queries,
                                                 outcomes, progress)}


async def _other_head(cfg: EvalConfig, variant: JobConfig, personalizer: Personalizer,
                      queries: list[EvalQuery], outcomes: list[QueryOutcome],
                      progress: bool) -> dict[str, Any]:
    """The test users' heads of `variant` (fitted in `cfg.compare_head` on the same bases):
    rows <method>_<head tag>."""
    tag = head_tag(cfg.compare_head)
    return {"tag": tag, **await _variant(cfg, variant, personalizer.scorer.precision, tag,
                                         personalizer, queries, outcomes, progress)}


def _head_bytes(job: JobConfig, users: tuple[str, ...]) -> dict[str, int]:
    """Per kind, the size of the first fitted test user's head file in the job's registry."""
    registry = Registry(job.paths.registry)
    out = {}
    for kind in ("reranker", "adapter"):
        entry = next((e for e in (registry.head_entry(kind, u) for u in users) if e), None)
        if entry is not None:
            out[kind] = len(registry.storage.get(entry.key))
    return out


def evaluate_seed(cfg: EvalConfig, job: JobConfig, seed: int, *, base_url: str,
                  progress: bool = True) -> SeedRun:
    """Every method on the held-out queries of this seed's test users (models already trained;
    with `cfg.compare_head`, the test users' heads in that form too: `fit_head_variant`)."""
    task = get_task(cfg.task)
    dataset, split = prepare_users(job)
    queries, histories = _test_queries(dataset, split.test, cfg.max_queries_per_user)
    if not queries:
        raise ValueError(f"seed {seed}: the {len(split.test)} test users have no queries")
    client = GeneratorClient(job.generator, base_url=base_url)
    scorer = _scorer(job, cfg.methods)
    labels = job.labels
    personalizer = Personalizer(
        task, scorer, client, MemoryHistory(histories),
        k_retrieve=labels.k_retrieve, k_prompt=labels.k_prompt,
        max_tokens=labels.answer_tokens(task.kind), sampling=labels.sampling())

    guard: dict[str, Any] = {}
    compared: dict[str, Any] = {}
    heads: dict[str, Any] = {}
    on_training: list[QueryOutcome] = []

    async def run() -> list[QueryOutcome]:
        try:
            guard.update(await _choose_guard(cfg, seed, personalizer, dataset, split.train,
                                             progress))
            if _answers_on_training(cfg):
                outcomes, shared = await _hydra_on_training(cfg, seed, personalizer, dataset,
                                                            split.train, progress)
                on_training.extend(outcomes)
                if shared is not None:
                    heads["train_heldout"] = shared
            outcomes = await run_queries(personalizer, queries, cfg.methods,
                                         knn_k=labels.k_prompt, concurrency=cfg.concurrency,
                                         progress=progress, desc=f"eval seed {seed}")
            if cfg.compare_precision is not None:
                compared.update(await _other_precision(cfg, job, personalizer, queries,
                                                       outcomes, progress))
            if cfg.compare_head is not None:
                heads.update(await _other_head(cfg, cfg.job(seed, cfg.compare_head),
                                               personalizer, queries, outcomes, progress))
            return outcomes
        finally:
            await client.aclose()

    start = time.monotonic()
    try:
        outcomes = asyncio.run(run())
    finally:
        if scorer is not None:
            scorer.close()
    hits = client.cache.hits if client.cache is not None else 0
    stats = {"queries": len(queries), "generator_calls": client.stats.calls,
             "cache_hits": hits, "seconds": round(time.monotonic() - start, 1),
             "precision": scorer.precision if scorer is not None else None,
             # 1.0 when every test user's heads were fitted / every zero-fit head found training
             # users with similar histories (the rest: the global head)
             "user_heads": _head_share(outcomes, "user", zero_fit=False),
             "zero_fit_heads": _head_share(outcomes, "zero_fit", zero_fit=True),
             "selection": selection_diagnostics(task, outcomes),
             "guard": guard, "fallbacks": fallback_rates(outcomes),
             **({"compare_precision": compared} if compared else {})}
    if heads:
        stats["compare_head"] = {**heads, "bytes_per_user": {
            "configured": _head_bytes(job, split.test),
            "other": _head_bytes(cfg.job(seed, cfg.compare_head), split.test)}}
    _write_predictions(join_uri(job.paths.work_dir, "eval", "predictions.jsonl"), outcomes)
    log.info("seed %d: %s", seed, stats)
    return SeedRun(seed, {"train": len(split.train), "test": len(split.test)}, outcomes, stats,
                   train_outcomes=on_training)


def _head_share(outcomes: list[QueryOutcome], head: str, *, zero_fit: bool) -> dict[str, float]:
    """Per HYDRA model, the share of its uses served by `head`, over the hydra_zero_fit rows
    (`zero_fit`) or over the other HYDRA rows."""
    uses: dict[str, list[bool]] = {}
    for outcome in outcomes:
        for method, heads in outcome.heads.items():
            if (method == "hydra_zero_fit") != zero_fit:
                continue
            for model, served in heads.items():
                uses.setdefault(model, []).append(served == head)
    return {model: sum(flags) / len(flags) for model, flags in sorted(uses.items())}


def _write_predictions(uri: str, outcomes: list[QueryOutcome]) -> None:
    lines = [json.dumps(o.to_dict(), ensure_ascii=False, sort_keys=True) for o in outcomes]
    write_atomic(uri, ("\n".join(lines) + "\n").encode("utf-8"))


def _rows(cfg: EvalConfig) -> list[str]:
    """Table order: the methods, each one with fitted heads followed by its other-precision and
    other-head rows, then the reference rows."""
    tags = [t for t in (cfg.compare_precision,
                        head_tag(cfg.compare_head) if cfg.compare_head else None) if t]
    compared = compared_methods(cfg.methods)
    rows = [row for m in cfg.methods for row in (
        [m, *(variant_row(m, t) for t in tags)] if m in compared else [m])]
    rows.append(HISTORY_KNN)
    if "hydra" in cfg.methods:
        rows.append(oracle_name(cfg.labels.n_candidates))
    return rows


def summarize(cfg: EvalConfig, runs: list[SeedRun], *, generator: str,
              run_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The result document: every row's metrics over the seeds with bootstrap intervals."""
    task = get_task(cfg.task)
    options = cfg.bootstrap.model_dump()
    scores = {row: [QueryScores(task, [o.answers[row] for o in run.outcomes],
                                [o.gold for o in run.outcomes]) for run in runs]
              for row in _rows(cfg)}
    methods = {row: bootstrap(s, **options) for row, s in scores.items()}
    rel = relative_improvement(methods, task.primary_metric,
                               higher_is_better=task.higher_is_better)
    difference = None if rel is None else _gain(scores, "hydra", rel["baseline"], task, options)
    pooled = [o for run in runs for o in run.outcomes]
    margin = selection_margin(task, [r.outcomes for r in runs], **options)
    selection = {**selection_diagnostics(task, pooled),
                 **({"margin_interval": margin.to_dict()} if margin is not None else {}),
                 "fallback_rate": fallback_rates(pooled)["by_method"],
                 "guard_min_spread": {str(r.seed): r.stats.get("guard", {}).get("min_spread")
                                      for r in runs},
                 "guard_rule": {str(r.seed): r.stats.get("guard", {}).get("rule") for r in runs},
                 "guard_by_seed": {str(r.seed): _guard_summary(r.stats.get("guard", {}))
                                   for r in runs},
                 **_policy(cfg, runs), **_training_selection(task, runs, options)}
    return build_result(dataset=cfg.dataset_name, task=task, generator=generator,
                        users=runs[0].users, seeds=[r.seed for r in runs], methods=methods,
                        difference=difference, selection=selection,
                        precision_comparison=_precisions(cfg, runs, scores, options),
                        head_comparison=_heads(cfg, runs, scores, options),
                        zero_fit=_zero_fit(scores, methods, task, options), run=run_info)


def _guard_summary(guard: dict[str, Any]) -> dict[str, Any]:
    """The guard a seed's picks ran with: (rule, threshold) of fitted and of zero-fit heads."""
    out = {"hydra": {"rule": guard.get("rule"), "min_spread": guard.get("min_spread")}}
    if "zero_fit" in guard:
        out["hydra_zero_fit"] = {"rule": guard["zero_fit"]["rule"],
                                 "min_spread": guard["zero_fit"]["min_spread"]}
    return out


def _policy(cfg: EvalConfig, runs: list[SeedRun]) -> dict[str, Any]:
    """The candidate policy and HYDRA's primary metric on the training users' held-out queries
    under it (the guard calibration's, at the chosen guard): what compares policies without
    looking at test users (docs/RESULTS.md)."""
    per_seed = {}
    for run in runs:
        guard = run.stats.get("guard", {})
        metric = guard.get("metric_by_threshold", {}).get(str(guard.get("min_spread")))
        if metric is not None:
            per_seed[str(run.seed)] = metric
    return {"candidate_policy": asdict(cfg.labels.sampling()),
            "train_heldout_hydra": {"by_seed": per_seed, "queries": sum(
                r.stats.get("guard", {}).get("queries", 0) for r in runs),
                "mean": sum(per_seed.values()) / len(per_seed) if per_seed else None}}


def _training_selection(task, runs: list[SeedRun], options: dict[str, Any]) -> dict[str, Any]:
    """The adapter's selection on the training users' held-out queries (answered with their
    fitted calibration heads; where every seed has them): the same figures as on the test users,
    what a setting that moves the margin is chosen on."""
    if not all(r.train_outcomes for r in runs):
        return {}
    diagnostics = selection_diagnostics(task, [o for r in runs for o in r.train_outcomes])
    margin = selection_margin(task, [r.train_outcomes for r in runs], **options)
    if margin is None:
        return {}
    return {"train_heldout_selection": {
        key: diagnostics[key] for key in ("queries", "adapter_picks_best", "random_picks_best")}
        | {"margin_over_random": margin.mean, "margin_interval": margin.to_dict()}}


def _gain(scores: dict[str, list[QueryScores]], row: str, baseline: str, task,
          options: dict[str, Any]):
    """`row` against `baseline` on the primary metric, paired (positive: `row` better, whichever
    way the metric points)."""
    better, worse = (row, baseline) if task.higher_is_better else (baseline, row)
    return bootstrap_difference(scores[better], scores[worse], task.primary_metric, **options)


def _zero_fit(scores: dict[str, list[QueryScores]], methods: dict[str, Any], task,
              options: dict[str, Any]) -> dict[str, Any] | None:
    """hydra_zero_fit against the best prompt-only method and against hydra (fitted heads)."""
    if "hydra_zero_fit" not in scores:
        return None
    rel = relative_improvement({"hydra": methods["hydra_zero_fit"], **{
        m: methods[m] for m in PROMPT_BASELINES if m in methods}}, task.primary_metric,
        higher_is_better=task.higher_is_better)
    out: dict[str, Any] = {"metric": task.primary_metric}
    if rel is not None:
        out["baseline"] = rel["baseline"]
        out["vs_baseline"] = _gain(scores, "hydra_zero_fit", rel["baseline"], task,
                                   options).to_dict()
    if "hydra" in scores:
        out["vs_hydra"] = _gain(scores, "hydra_zero_fit", "hydra", task, options).to_dict()
    return out


def _precisions(cfg: EvalConfig, runs: list[SeedRun], scores: dict[str, list[QueryScores]],
                options: dict[str, Any]) -> dict[str, Any] | None:
    """The paired differences between the seeds' precision and `compare_precision`."""
    if cfg.compare_precision is None:
        return None
    task = get_task(cfg.task)
    return precision_comparison(
        scores, cfg.methods, precision=runs[0].stats["precision"], other=cfg.compare_precision,
        metric=task.primary_metric, higher_is_better=task.higher_is_better,
        shared=[r.stats["compare_precision"] for r in runs], **options)


def _heads(cfg: EvalConfig, runs: list[SeedRun], scores: dict[str, list[QueryScores]],
           options: dict[str, Any]) -> dict[str, Any] | None:
    """The paired differences between the configured heads and `compare_head`."""
    if cfg.compare_head is None:
        return None
    task = get_task(cfg.task)
    shared = [r.stats["compare_head"] for r in runs]
    on_training = None
    if all(r.train_outcomes for r in runs):
        rows = [row for m in compared_methods(cfg.methods)
                for row in (m, variant_row(m, head_tag(cfg.compare_head)))]
        on_training = ({row: [QueryScores(task, [o.answers[row] for o in r.train_outcomes],
                                          [o.gold for o in r.train_outcomes]) for r in runs]
                        for row in rows}, [s["train_heldout"] for s in shared])
    return head_comparison(
        scores, cfg.methods, heads={k: cfg.job(runs[0].seed).model(k).head.model_dump(mode="json")
                                    for k in ("reranker", "adapter")},
        other=cfg.compare_head, bytes_per_user=shared[0]["bytes_per_user"],
        metric=task.primary_metric, higher_is_better=task.higher_is_better, shared=shared,
        on_training=on_training, **options)


def write_outputs(cfg: EvalConfig, result: dict[str, Any]) -> dict[str, Path]:
    """quality_<dataset>_<task>.json, .md and .png in cfg.results_dir; returns their paths."""
    stem = Path(cfg.results_dir) / cfg.result_stem
    paths = {"json": stem.with_suffix(".json"), "markdown": stem.with_suffix(".md"),
             "png": stem.with_suffix(".png")}
    write_atomic(str(paths["json"]), (json.dumps(result, indent=2) + "\n").encode("utf-8"))
    write_atomic(str(paths["markdown"]), markdown_table(result).encode("utf-8"))
    plot_result(result, paths["png"])
    return paths


def generator_name(cfg: EvalConfig) -> str:
    """How the result names its generator: the model, and where it ran."""
    embedded = cfg.generator.backend == "embedded" and not cfg.generator.effective_base_url()
    where = "embedded vLLM" if embedded else (
        "OpenAI-compatible API" if cfg.generator.backend == "openai" else "vLLM at a URL")
    return f"{cfg.generator.model} ({where})"


def run_eval(cfg: EvalConfig, *, ray_address: str | None = None,
             progress: bool = True) -> tuple[dict[str, Any], dict[str, Path]]:
    """The whole benchmark for `cfg`; returns the result document and the files written."""
    start = time.monotonic()
    runs, training = [], {}
    with ray_session(ray_address), embedded_generator(cfg.generator) as base_url:
        for seed in cfg.seeds:
            job = cfg.job(seed)
            training[str(seed)] = train_seed(
                job, base_url=base_url, progress=progress,
                hydra=any(needs_scorer(m) for m in cfg.methods))
            if cfg.compare_head is not None:
                training[str(seed)]["compare_head"] = fit_head_variant(
                    job, cfg.job(seed, cfg.compare_head), progress=progress)
            if _calibrates(cfg) and cfg.guard.heads == "fitted":
                calibration = cfg.job(seed, calibration=True)
                training[str(seed)]["guard_calibration"] = fit_calibration_heads(
                    job, calibration, base_url=base_url, progress=progress)
                if _compares_on_training(cfg):
                    training[str(seed)]["guard_calibration"]["compare_head"] = fit_head_variant(
                        calibration, cfg.job(seed, cfg.compare_head, calibration=True),
                        progress=progress)
            runs.append(evaluate_seed(cfg, job, seed, base_url=base_url, progress=progress))
    info = {
        "queries": sum(r.stats["queries"] for r in runs),
        "generator_calls": sum(r.stats["generator_calls"] for r in runs)
        + sum(t.get("generator_calls", 0) + t.get("guard_calibration", {}).get(
            "generator_calls", 0) for t in training.values()),
        "eval": {str(r.seed): r.stats for r in runs},
        "training": training,
        "seconds": round(time.monotonic() - start, 1),
        "work_dir": cfg.work_path,
        "adapter_pairs": ADAPTER_PAIRS,     # what the adapter read (its pair format)
        "heads": {kind: getattr(cfg, kind).head.describe() for kind in ("reranker", "adapter")},
    }
    result = summarize(cfg, runs, generator=generator_name(cfg), run_info=info)
    return result, write_outputs(cfg, result)
