"""How the adapter's N candidates are drawn from the black box: one policy shared by the adapter's
training labels and by serving, so the adapter scores candidates like those it was trained on.

The paper samples N answers at a temperature. A small generator's temperature-1 samples can all be
worse than its one greedy answer (measured on synth-title: best of 8 below greedy), so a policy
may put the greedy answer first and sample the other N-1: the pool then always holds the answer
the prompt-only methods give, and the adapter decides whether a sample beats it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hydralm.generator.protocol import Samples, SamplingOptions
from hydralm.pipeline.interfaces import Generator

__all__ = ["CandidateSampling"]


@dataclass(frozen=True)
class CandidateSampling:
    """N candidates at `temperature`; with `greedy_first`, candidate 0 is the greedy answer."""

    n: int = 8
    temperature: float = 1.0
    greedy_first: bool = False

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n (candidates) must be at least 1, got {self.n!r}")
        if not 0.0 < self.temperature <= 2.0:
            raise ValueError(f"temperature must be in (0, 2], got {self.temperature!r}")

    def calls(self, n: int | None = None) -> list[tuple[int, float]]:
        """(samples, temperature) of each generator call that draws `n` (default: the
        policy's) candidates, in candidate order."""
        n = n or self.n
        if not self.greedy_first:
            return [(n, self.temperature)]
        return [(1, 0.0)] + ([(n - 1, self.temperature)] if n > 1 else [])

    async def sample(self, generator: Generator, messages: list[dict], *,
                     max_tokens: int | None = None, choices: list[str] | None = None,
                     n: int | None = None) -> list[str]:
        """The candidates for one prompt, greedy first when the policy says so; `n` overrides
        the policy's count for this call."""
        parts = await asyncio.gather(*(
            generator.chat(messages, n=k, temperature=t, max_tokens=max_tokens, choices=choices)
            for k, t in self.calls(n)))
        return [text for part in parts for text in part]

    async def draw(self, generator: Generator, messages: list[dict], *,
                   max_tokens: int | None = None, choices: list[str] | None = None,
                   n: int | None = None, options: SamplingOptions | None = None,
                   seed: int | None = None) -> Samples:
        """sample() with finish reasons and token counts, plus a caller's sampling options
        (stop, top_p, penalties) and seed; the temperatures stay the policy's."""
        parts = await asyncio.gather(*(
            generator.chat_samples(messages, n=k, temperature=t, max_tokens=max_tokens,
                                   choices=choices, options=options, seed=seed)
            for k, t in self.calls(n)))
        return Samples.join(parts)
