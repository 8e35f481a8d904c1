"""`hydralm generate`: ask the black-box generator about one prompt and print its answers.

With an embedded config and no base URL it starts a local Ray and the embedded vLLM first (about a
minute on CPU) and stops both afterwards; with --base-url (or backend openai) it only sends HTTP.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path

from hydralm.config import load_yaml
from hydralm.generator import ChatRequest, CompletionRequest, GeneratorClient, GeneratorConfig
from training.llm import embedded_generator, local_ray

__all__ = ["register"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate", help="sample answers from the generator for one prompt",
        description="Send one prompt to the generator and print the answers, one per line. "
                    "With the default (embedded) config this starts a local Ray and vLLM "
                    "serving SmolLM2 first; --base-url uses a running OpenAI-compatible server.")
    p.add_argument("--prompt", required=True, help="the user message (or raw prompt with "
                                                   "--completion)")
    p.add_argument("--config", type=Path, help="YAML: a GeneratorConfig mapping, or a file with "
                                               "a `generator:` section")
    p.add_argument("--n", type=int, default=1, help="samples to draw (default 1)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature (default 0 for n=1, else 1)")
    p.add_argument("--max-tokens", type=int, default=None, help="completion length")
    p.add_argument("--choices", default=None,
                   help="comma-separated labels the answer must be one of, e.g. 1,2,3,4,5")
    p.add_argument("--base-url", default=None,
                   help="OpenAI-compatible base URL (with /v1) of a running server")
    p.add_argument("--completion", action="store_true",
                   help="use /completions on the raw prompt instead of a chat message")
    p.set_defaults(func=_cmd_generate)


def _load_config(args: argparse.Namespace) -> GeneratorConfig:
    data = load_yaml(args.config) if args.config else {}
    if "generator" in data:
        data = data["generator"] or {}
    if args.base_url:
        data = {**data, "base_url": args.base_url}
    return GeneratorConfig.from_dict(data, source=str(args.config or "generator config"))


def _request(args: argparse.Namespace) -> ChatRequest | CompletionRequest:
    temperature = args.temperature if args.temperature is not None else (
        0.0 if args.n == 1 else 1.0)
    choices = tuple(c.strip() for c in args.choices.split(",") if c.strip()) \
        if args.choices else None
    params = {"n": args.n, "temperature": temperature, "max_tokens": args.max_tokens,
              "choices": choices}
    if args.completion:
        return CompletionRequest(prompt=args.prompt, **params)
    return ChatRequest(messages=({"role": "user", "content": args.prompt},), **params)


def _cmd_generate(args: argparse.Namespace) -> int:
    cfg = _load_config(args)
    try:
        request = _request(args)
    except ValueError as exc:
        raise SystemExit(f"hydralm generate: error: {exc}") from exc
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    needs_local = cfg.backend == "embedded" and not cfg.effective_base_url()
    # Ray forwards every worker's log lines (vLLM is chatty) to this terminal only with -v.
    ray_cm = local_ray(log_to_driver=bool(getattr(args, "verbose", False))) if needs_local \
        else contextlib.nullcontext()
    with ray_cm, \
            embedded_generator(cfg) as base_url:
        answers = GeneratorClient(cfg, base_url=base_url).generate_sync(request)
    for i, answer in enumerate(answers):
        print(f"[{i}] {answer}")
    return 0
