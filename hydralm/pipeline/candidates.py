"""How the adapter's N candidates are drawn from the black box: one policy shared by the adapter's
training labels and by serving, so the adapter scores candidates like those it was trained on.

The paper samples N answers at a temperature from the personalized (RAG) prompt. A small
generator's temperature-1 samples can all be worse than its one greedy answer, and a generator that
copies from the prompt's history items can answer worse with them than without (measured on
synth-title: RAG's greedy answer below zero-shot's, best of 8 RAG samples below zero-shot's greedy
answer). So a policy may draw from two prompts:

- the **bare** query (the zero-shot prompt): its greedy answer (`bare_greedy`) and/or
  `bare_samples` samples;
- the **personalized** prompt (the query with the reranked history items): its greedy answer
  (`greedy_first`) and the remaining samples.

Candidate order: bare greedy, personalized greedy, personalized samples, bare samples; the pool
always holds N candidates. The adapter scores every candidate against the personalized prompt
(the user's context), wherever the candidate came from. With `bare_greedy` the pool's candidate 0
is the zero-shot answer, which the selection guard's "first" rule falls back to.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from hydralm.generator.protocol import Samples, SamplingOptions
from hydralm.pipeline.interfaces import Generator

__all__ = ["CandidateSampling", "Draw"]

Source = Literal["prompt", "bare"]


@dataclass(frozen=True)
class Draw:
    """One generator call of a policy: `n` answers at `temperature` from one prompt."""

    source: Source
    n: int
    temperature: float


@dataclass(frozen=True)
class CandidateSampling:
    """N candidates at `temperature` from the personalized prompt; with `greedy_first` one of them
    is that prompt's greedy answer; with `bare_greedy` / `bare_samples` some come from the bare
    query instead (see the module docstring for the order)."""

    n: int = 8
    temperature: float = 1.0
    greedy_first: bool = False
    bare_greedy: bool = False
    bare_samples: int = 0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n (candidates) must be at least 1, got {self.n!r}")
        if not 0.0 < self.temperature <= 2.0:
            raise ValueError(f"temperature must be in (0, 2], got {self.temperature!r}")
        fixed = self.bare_greedy + self.greedy_first + self.bare_samples
        if self.bare_samples < 0 or fixed > self.n:
            raise ValueError(f"bare_samples ({self.bare_samples!r}) plus the greedy answers "
                             f"({self.bare_greedy + self.greedy_first}) must be between 0 and "
                             f"n ({self.n})")

    @property
    def uses_bare(self) -> bool:
        """Whether any candidate comes from the bare query."""
        return self.bare_greedy or self.bare_samples > 0

    def calls(self, n: int | None = None) -> list[Draw]:
        """The generator calls that draw `n` (default: the policy's) candidates, in candidate
        order. A smaller `n` keeps the greedy answers first and shrinks the samples, bare ones
        in proportion."""
        n = n or self.n
        draws: list[Draw] = []
        left = n
        for source, wanted in (("bare", self.bare_greedy), ("prompt", self.greedy_first)):
            if wanted and left:
                draws.append(Draw(source, 1, 0.0))
                left -= 1
        samples = self.n - self.bare_greedy - self.greedy_first
        bare = (min(left, round(self.bare_samples * left / samples)) if samples else 0)
        if left - bare:
            draws.append(Draw("prompt", left - bare, self.temperature))
        if bare:
            draws.append(Draw("bare", bare, self.temperature))
        return draws

    def _messages(self, draw: Draw, messages: list[dict], bare: list[dict] | None) -> list[dict]:
        if draw.source == "prompt":
            return messages
        if bare is None:
            raise ValueError("this candidate policy draws from the bare query (bare_greedy or "
                             "bare_samples) but no bare messages were given")
        return bare

    async def sample(self, generator: Generator, messages: list[dict], *,
                     bare: list[dict] | None = None, max_tokens: int | None = None,
                     choices: list[str] | None = None, n: int | None = None) -> list[str]:
        """The candidates for one query: `messages` is the personalized prompt, `bare` the bare
        query's (needed when the policy draws from it); `n` overrides the policy's count."""
        parts = await asyncio.gather(*(
            generator.chat(self._messages(d, messages, bare), n=d.n, temperature=d.temperature,
                           max_tokens=max_tokens, choices=choices)
            for d in self.calls(n)))
        return [text for part in parts for text in part]

    async def draw(self, generator: Generator, messages: list[dict], *,
                   bare: list[dict] | None = None, max_tokens: int | None = None,
                   choices: list[str] | None = None, n: int | None = None,
                   options: SamplingOptions | None = None, seed: int | None = None) -> Samples:
        """sample() with finish reasons and token counts, plus a caller's sampling options
        (stop, top_p, penalties) and seed; the temperatures stay the policy's."""
        parts = await asyncio.gather(*(
            generator.chat_samples(self._messages(d, messages, bare), n=d.n,
                                   temperature=d.temperature, max_tokens=max_tokens,
                                   choices=choices, options=options, seed=seed)
            for d in self.calls(n)))
        return Samples.join(parts)
