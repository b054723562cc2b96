"""Pluggable CoC auto-labelling for real logs: a VLM behind an OpenAI-compatible endpoint.

An :class:`AutoLabeler` turns a keyframe (camera images, ego history, the logged future)
into a :class:`~alpamayo_ros.sample.CocLabel` of the same structure the simulator
produces. :class:`VLMAutoLabeler` prompts a vision-language model over HTTP
(``POST {base_url}/chat/completions``, images as base64 JPEG data URLs) with the AR1
taxonomy and a JSON schema, validates the answer against the taxonomy and fills the
meta-actions from the logged trajectory (so consistency can be scored). urllib only.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from alpamayo_ros.chat_client import ChatCompletionError, chat_completion
from alpamayo_ros.data.consistency import meta_actions_from_trajectory
from alpamayo_ros.sample import CocLabel, CriticalComponentLabel
from alpamayo_ros.taxonomy import (
    ComponentType,
    LateralDecision,
    LongitudinalDecision,
    Uncertainty,
)


class AutoLabelError(RuntimeError):
    """The labeler could not produce a valid label."""


class AutoLabeler(Protocol):
    """Anything that labels a keyframe."""

    def label(self, images: list[np.ndarray], ego_history: np.ndarray,
              future_xyh: np.ndarray) -> CocLabel:
        """CoC label of one keyframe (images RGB uint8; arrays in the ego frame)."""
        ...


@dataclass
class VLMConfig:
    """Endpoint and sampling settings of the VLM labeler."""

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "vlm"
    api_key: str = ""
    timeout_s: float = 60.0
    max_tokens: int = 512
    temperature: float = 0.0
    jpeg_quality: int = 85

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got "
                             f"{self.base_url!r}")
        if self.timeout_s <= 0.0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.max_tokens < 16:
            raise ValueError(f"max_tokens must be >= 16, got {self.max_tokens}")
        if not 10 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [10, 100], got {self.jpeg_quality}")


_LON = [d.value for d in LongitudinalDecision]
_LAT = [d.value for d in LateralDecision]
_TYPES = {t.name.lower(): int(t) for t in ComponentType}
SYSTEM_PROMPT = (
    "You label driving keyframes with Chain-of-Causality reasoning. "
    f"Pick at most one longitudinal decision from {_LON} "
    f"and at most one lateral decision from {_LAT} (\"\" for none). "
    "List only the critical components that cause them, each with type "
    f"(integer: {_TYPES}), uncertainty (0 low, 1 high), id and a short description; "
    "the components must be visible in the images (no future knowledge). Cite the "
    "proximate cause (a lead vehicle braking at a red light is the cause, not the light). "
    "Write a short reasoning trace that mentions only those components. Answer with JSON "
    'only: {"longitudinal_decision": str, "lateral_decision": str, "components": '
    '[{"type": int, "uncertainty": int, "id": str, "description": str}], "text": str}.'
)


class VLMAutoLabeler:
    """Labels keyframes with a VLM served behind an OpenAI-compatible chat endpoint."""

    def __init__(self, config: VLMConfig) -> None:
        self.config = config

    def build_request(self, images: list[np.ndarray], ego_history: np.ndarray,
                      future_xyh: np.ndarray) -> dict:
        """The chat-completions request body."""
        if not images:
            raise ValueError("images must not be empty")
        hist = np.asarray(ego_history, float)
        speed = float(hist[-1, 3]) if hist.ndim == 2 and hist.shape[1] >= 4 else float("nan")
        meta = meta_actions_from_trajectory(future_xyh, None if np.isnan(speed) else speed)
        content: list[dict] = [{"type": "text", "text": (
            f"Ego speed {speed:.1f} m/s. Over the next seconds the ego does: "
            f"{meta.longitudinal}, {meta.lateral}. Label this keyframe.")}]
        for img in images:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.asarray(img, np.uint8),
                                                        cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
            if not ok:
                raise ValueError("could not encode an image as JPEG")
            url = "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")
            content.append({"type": "image_url", "image_url": {"url": url}})
        return {"model": self.config.model, "temperature": self.config.temperature,
                "max_tokens": self.config.max_tokens,
                "messages": [{"role": "system", "content": SYSTEM_PROMPT},
                             {"role": "user", "content": content}]}

    def label(self, images: list[np.ndarray], ego_history: np.ndarray,
              future_xyh: np.ndarray) -> CocLabel:
        """Ask the VLM and return a validated label (meta-actions from ``future_xyh``)."""
        try:
            text = chat_completion(self.config.base_url,
                                   self.build_request(images, ego_history, future_xyh),
                                   self.config.api_key, self.config.timeout_s)
        except ChatCompletionError as exc:
            raise AutoLabelError(str(exc)) from exc
        hist = np.asarray(ego_history, float)
        label = parse_label_json(text)
        meta = meta_actions_from_trajectory(future_xyh, float(hist[-1, 3])
                                            if hist.ndim == 2 and hist.shape[1] >= 4 else None)
        label.longitudinal_meta_action = meta.longitudinal
        label.lateral_meta_action = meta.lateral
        return label


def parse_label_json(text: str) -> CocLabel:
    """Validate a VLM answer (JSON, optionally in a ``` fence) into a CocLabel."""
    fenced = re.search(r"```(?:json)?\s*(\{.*\})\s*```", text, re.S)
    raw = fenced.group(1) if fenced else text.strip()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise AutoLabelError(f"answer is not JSON: {text[:200]!r}") from exc
    if not isinstance(data, dict):
        raise AutoLabelError("answer must be a JSON object")
    lon = data.get("longitudinal_decision", "") or ""
    lat = data.get("lateral_decision", "") or ""
    if lon and lon not in {d.value for d in LongitudinalDecision}:
        raise AutoLabelError(f"unknown longitudinal_decision {lon!r}")
    if lat and lat not in {d.value for d in LateralDecision}:
        raise AutoLabelError(f"unknown lateral_decision {lat!r}")
    comps = []
    for c in data.get("components", []) or []:
        try:
            ctype, unc = ComponentType(int(c["type"])), Uncertainty(int(c.get("uncertainty", 0)))
        except (KeyError, ValueError, TypeError) as exc:
            raise AutoLabelError(f"bad component {c!r}") from exc
        comps.append(CriticalComponentLabel(int(ctype), int(unc), str(c.get("id", "")),
                                            str(c.get("description", ""))))
    text_out = data.get("text", "")
    if not isinstance(text_out, str) or not text_out.strip():
        raise AutoLabelError("answer has no reasoning text")
    return CocLabel(lon, lat, comps, text_out)
