"""One OpenAI-compatible chat-completions call (urllib only), for the labeller and judge.

``chat_completion(base_url, body, api_key, timeout_s)`` POSTs ``body`` (a JSON-ready dict)
to ``{base_url}/chat/completions`` and returns the text of the first choice. Any failure
(unreachable endpoint, timeout, HTTP error, a reply that is not JSON or has no first
message) raises :class:`ChatCompletionError` saying which, so each caller decides its own
policy (the labeller raises, the judge falls back to the rule critic).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request


class ChatCompletionError(RuntimeError):
    """The endpoint did not answer with a chat completion."""


def chat_completion(base_url: str, body: dict, api_key: str = "", timeout_s: float = 60.0
                    ) -> str:
    """The first choice's message content of a ``POST {base_url}/chat/completions``."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    req = urllib.request.Request(base_url.rstrip("/") + "/chat/completions",
                                 data=json.dumps(body).encode(), headers=headers,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            reply = json.loads(resp.read().decode())
    except (urllib.error.URLError, TimeoutError, OSError, json.JSONDecodeError,
            UnicodeDecodeError) as exc:
        raise ChatCompletionError(f"request to {base_url} failed: {exc}") from exc
    try:
        return str(reply["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError) as exc:
        raise ChatCompletionError(f"unexpected reply shape: {str(reply)[:200]}") from exc
