"""The LLM judge's HTTP protocol, retries and fallback, against a stub server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from alpamayo_ros.sample import CocLabel, CriticalComponentLabel
from alpamayo_ros.training.judge import (
    JudgeConfig,
    LLMJudge,
    grade_with_fallback,
    parse_grade,
)
from alpamayo_ros.training.rewards import grade_reasoning

LABEL = CocLabel("yield", "lane_keeping",
                 [CriticalComponentLabel(0, 0, "ped_1", "a pedestrian is crossing from the left")],
                 "A pedestrian is crossing from the left, so I yield to them and stay in my lane.")
TEXT = "The pedestrian is crossing, so I yield to them and stay in my lane."


class _Handler(BaseHTTPRequestHandler):
    replies: list = []  # (status, content or None, delay_s); the last one repeats
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls = type(self)
        cls.seen.append((self.path, dict(self.headers), body))
        status, content, delay = cls.replies[min(len(cls.seen), len(cls.replies)) - 1]
        time.sleep(delay)
        data = json.dumps({"choices": [{"message": {"role": "assistant",
                                                    "content": content}}]}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    _Handler.seen, _Handler.replies = [], []
    srv = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def test_judge_speaks_openai_chat_protocol(server):
    _Handler.replies = [(200, 'Here you go: {"score": 4.5}', 0.0)]
    judge = LLMJudge(JudgeConfig(base_url=server, model="grader", api_key="k-123"))
    assert judge.grade(TEXT, LABEL) == 4.5
    (path, headers, body), = _Handler.seen
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer k-123"
    assert body["model"] == "grader" and body["temperature"] == 0.0
    user = body["messages"][1]["content"]
    assert TEXT in user and LABEL.text in user and "yield" in user
    assert "critical_object" in user and body["messages"][0]["role"] == "system"
    assert judge.failures == 0


def test_judge_retries_then_succeeds(server):
    _Handler.replies = [(500, "oops", 0.0), (200, "no grade here", 0.0), (200, "Score: 3", 0.0)]
    judge = LLMJudge(JudgeConfig(base_url=server, retries=2, backoff_s=0.0))
    assert judge.grade(TEXT, LABEL) == 3.0
    assert len(_Handler.seen) == 3


def test_judge_gives_none_and_the_rule_critic_takes_over(server):
    _Handler.replies = [(200, '{"score": 7}', 0.0)]  # out of range, every time
    judge = LLMJudge(JudgeConfig(base_url=server, retries=1, backoff_s=0.0))
    assert judge.grade(TEXT, LABEL) is None
    assert len(_Handler.seen) == 2 and judge.failures == 1
    score, source = grade_with_fallback(TEXT, LABEL, judge)
    assert source == "rules" and score == grade_reasoning(TEXT, LABEL).score == 5.0
    _Handler.replies = [(200, '{"score": 2}', 0.0)]
    assert grade_with_fallback(TEXT, LABEL, judge) == (2.0, "llm")
    assert grade_with_fallback("no decision", LABEL, None) == (0.0, "rules")


def test_judge_timeout_and_unreachable(server):
    _Handler.replies = [(200, '{"score": 5}', 0.5)]
    slow = LLMJudge(JudgeConfig(base_url=server, timeout_s=0.1, retries=0))
    assert slow.grade(TEXT, LABEL) is None
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = LLMJudge(JudgeConfig(base_url=f"http://127.0.0.1:{port}/v1", retries=1,
                                  backoff_s=0.0, timeout_s=1.0))
    t = time.perf_counter()
    assert closed.grade(TEXT, LABEL) is None
    assert time.perf_counter() - t < 2.0


@pytest.mark.parametrize("answer, grade", [
    ('{"score": 4}', 4.0), ("```json\n{\"score\": 2.5}\n```", 2.5), ("3/5", 3.0),
    ("I would say 0", 0.0), ('{"score": -1}', None), ("5.5", None), ("none", None),
    ('{"grade": 4}', None), ('{"score": "nan"}', None),
])
def test_parse_grade(answer, grade):
    assert parse_grade(answer) == grade


def test_config_from_env_and_validation():
    cfg = JudgeConfig.from_env({"ALPAMAYO_JUDGE_BASE_URL": "https://judge.example/v1",
                                "ALPAMAYO_JUDGE_MODEL": "big", "ALPAMAYO_JUDGE_API_KEY": "s",
                                "ALPAMAYO_JUDGE_TIMEOUT_S": "12.5"}, retries=4)
    assert (cfg.base_url, cfg.model, cfg.api_key, cfg.timeout_s, cfg.retries) == (
        "https://judge.example/v1", "big", "s", 12.5, 4)
    assert JudgeConfig.from_env({}) == JudgeConfig()
    with pytest.raises(ValueError, match="ALPAMAYO_JUDGE_TIMEOUT_S"):
        JudgeConfig.from_env({"ALPAMAYO_JUDGE_TIMEOUT_S": "soon"})
    with pytest.raises(ValueError, match="base_url"):
        JudgeConfig(base_url="judge:8000")
    with pytest.raises(ValueError, match="retries"):
        JudgeConfig(retries=-1)
    with pytest.raises(ValueError, match="timeout_s"):
        JudgeConfig(timeout_s=0.0)


def test_rl_rewards_grade_with_the_judge_from_the_rl_config(server, monkeypatch):
    import numpy as np

    from alpamayo_ros.training.grpo import RLConfig, RLRewards

    monkeypatch.setenv("ALPAMAYO_JUDGE_MODEL", "from-env")
    monkeypatch.setenv("ALPAMAYO_JUDGE_API_KEY", "env-key")
    _Handler.replies = [(200, '{"score": 3.5}', 0.0)]
    cfg = RLConfig(group_size=2, use_llm_judge=True, judge_base_url=server,
                   consistency_weight=0.0, trajectory_weight=0.0)
    assert cfg.judge_config().model == "from-env"
    assert RLConfig(judge_model="m", judge_base_url=server).judge_config().model == "m"
    with pytest.raises(ValueError, match="judge_base_url"):
        RLConfig(judge_base_url="localhost:1")
    sample = type("S", (), {"coc": LABEL, "speed_mps": 5.0})()
    plans = np.zeros((2, 64, 3))
    out = RLRewards(cfg)(sample, [TEXT, "no decision"], [[1], [2]], np.zeros((2, 64, 2)), plans)
    assert [r.components["reasoning"] for r in out] == [3.5, 3.5]
    assert [r.details["llm_graded"] for r in out] == [1.0, 1.0]
    assert [r.total for r in out] == [0.7, 0.7]
    assert len(_Handler.seen) == 2 and _Handler.seen[0][1]["Authorization"] == "Bearer env-key"
