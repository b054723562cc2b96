"""Optional LLM judge of CoC reasoning behind an OpenAI-compatible chat-completions endpoint.

AR1 grades generated reasoning against the reference with a large reasoning model (0-5).
:class:`LLMJudge` asks such a model (``POST {base_url}/chat/completions``; urllib only)
with the same rubric as the rule critic of :mod:`alpamayo_ros.training.rewards` and reads
a grade in [0, 5] from its answer (JSON ``{"score": x}``, or the first number). On any
failure (unreachable endpoint, timeout, HTTP error, an answer without a valid grade) it
retries ``retries`` times and then returns ``None``: the caller falls back to the rule
critic (:func:`grade_with_fallback`).

Configuration: :class:`JudgeConfig`, or :meth:`JudgeConfig.from_env` reading
``ALPAMAYO_JUDGE_BASE_URL``, ``ALPAMAYO_JUDGE_MODEL``, ``ALPAMAYO_JUDGE_API_KEY`` and
``ALPAMAYO_JUDGE_TIMEOUT_S``.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from alpamayo_ros.chat_client import ChatCompletionError, chat_completion
from alpamayo_ros.sample import CocLabel
from alpamayo_ros.taxonomy import ComponentType
from alpamayo_ros.training.rewards import REASONING_MAX, grade_reasoning

ENV_PREFIX = "ALPAMAYO_JUDGE_"

SYSTEM_PROMPT = (
    "You grade the chain-of-causality reasoning of a self-driving policy against a "
    "reference label, on a scale from 0 to 5. Give 0 when the reasoning states no driving "
    "decision. Up to 2 points for stating the reference's longitudinal and lateral "
    "decisions (and direction), up to 2 points for citing the reference's causes (the "
    "proximate cause, not background objects), 1 point for faithfulness: subtract for "
    "every object, colour, light state or road feature the reference does not have and "
    "for every distance or speed far from the reference's. Answer with JSON only: "
    '{"score": <number from 0 to 5>}.'
)


@dataclass(frozen=True)
class JudgeConfig:
    """Endpoint of the judge model."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "judge"
    api_key: str = ""
    timeout_s: float = 30.0
    retries: int = 2  # extra attempts after the first
    backoff_s: float = 0.5  # sleep before retry k: backoff_s * k
    max_tokens: int = 64
    temperature: float = 0.0

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got "
                             f"{self.base_url!r}")
        if not self.model:
            raise ValueError("model must not be empty")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0.0):
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be an int >= 0, got {self.retries!r}")
        if not (math.isfinite(self.backoff_s) and self.backoff_s >= 0.0):
            raise ValueError(f"backoff_s must be >= 0, got {self.backoff_s!r}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens!r}")
        if not 0.0 <= self.temperature <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {self.temperature!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object
                 ) -> JudgeConfig:
        """Read ``ALPAMAYO_JUDGE_{BASE_URL,MODEL,API_KEY,TIMEOUT_S}`` (unset: defaults)."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, cast in (("base_url", str), ("model", str), ("api_key", str),
                           ("timeout_s", float)):
            raw = env.get(ENV_PREFIX + name.upper())
            if raw:
                try:
                    values[name] = cast(raw)
                except ValueError as exc:
                    raise ValueError(f"{ENV_PREFIX + name.upper()}: {exc}") from exc
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def label_summary(label: CocLabel) -> str:
    """The reference label as text for the prompt."""
    lines = [f"longitudinal decision: {label.longitudinal_decision or 'none'}",
             f"lateral decision: {label.lateral_decision or 'none'}"]
    for c in label.components:
        lines.append(f"component ({ComponentType(c.type).name.lower()}, id {c.id}): "
                     f"{c.description}")
    lines.append(f"reference reasoning: {label.text}")
    return "\n".join(lines)


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_grade(answer: str) -> float | None:
    """A grade in [0, 5] from the answer: a JSON object's ``score``, else its first number."""
    value: object = None
    match = re.search(r"\{.*\}", answer, re.S)
    data = None
    if match:
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            data = None
    if isinstance(data, dict):  # a JSON answer must carry its grade as "score"
        value = data.get("score")
    else:
        found = _NUMBER.search(answer)
        value = found.group(0) if found else None
    try:
        grade = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return grade if math.isfinite(grade) and 0.0 <= grade <= REASONING_MAX else None


class LLMJudge:
    """Grades reasoning with a chat model; ``None`` when it cannot."""

    def __init__(self, config: JudgeConfig) -> None:
        self.config = config
        self.failures = 0  # calls that returned None

    def build_request(self, text: str, label: CocLabel) -> dict:
        """The chat-completions request body."""
        user = (f"Reference label:\n{label_summary(label)}\n\n"
                f"Reasoning to grade:\n{text}\n\nGrade it from 0 to 5.")
        return {"model": self.config.model, "temperature": self.config.temperature,
                "max_tokens": self.config.max_tokens,
                "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                             {"role": "user", "content": user}]}

    def _ask(self, body: dict) -> float | None:
        try:
            return parse_grade(chat_completion(self.config.base_url, body,
                                               self.config.api_key, self.config.timeout_s))
        except ChatCompletionError:
            return None

    def grade(self, text: str, label: CocLabel) -> float | None:
        """Grade in [0, 5], or ``None`` after ``1 + retries`` failed attempts."""
        body = self.build_request(text, label)
        for attempt in range(1 + self.config.retries):
            if attempt and self.config.backoff_s:
                time.sleep(self.config.backoff_s * attempt)
            grade = self._ask(body)
            if grade is not None:
                return grade
        self.failures += 1
        return None


def grade_with_fallback(text: str, label: CocLabel, judge: LLMJudge | None = None,
                        ego_speed_mps: float | None = None) -> tuple[float, str]:
    """The judge's grade when it answers, else the rule critic's: ``(score, source)``."""
    if judge is not None:
        grade = judge.grade(text, label)
        if grade is not None:
            return grade, "llm"
    return grade_reasoning(text, label, ego_speed_mps).score, "rules"
