"""The VLM auto-labeler's HTTP protocol, against a local http.server on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import cv2
import numpy as np
import pytest

from alpamayo_ros.data.autolabel import AutoLabelError, VLMAutoLabeler, VLMConfig
from alpamayo_ros.data.consistency import consistency_score


class _Handler(BaseHTTPRequestHandler):
    answer: str = ""
    seen: list = []

    def do_POST(self):  # noqa: N802 (http.server API)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, dict(self.headers), body))
        reply = {"choices": [{"message": {"role": "assistant", "content": type(self).answer}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    _Handler.seen = []
    srv = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()
    srv.server_close()


def _inputs():
    img = np.zeros((40, 64, 3), np.uint8)
    img[:, :32] = (255, 0, 0)
    history = np.zeros((16, 4))
    history[:, 3] = 10.0
    t = np.arange(1, 65) * 0.1
    future = np.stack([10.0 * t - 1.0 * t**2, np.zeros(64), np.zeros(64)], axis=1)
    future[:, 0] = np.maximum.accumulate(future[:, 0])
    return [img, img[::-1].copy()], history, future


def test_vlm_labeler_speaks_openai_chat_protocol(server):
    _Handler.answer = "```json\n" + json.dumps({
        "longitudinal_decision": "stop_for_static_constraint", "lateral_decision": "lane_keeping",
        "components": [{"type": 1, "uncertainty": 0, "id": "tl_1", "description": "red light"}],
        "text": "The light ahead is red, so I stop at the stop line. I stay in my lane."}) + "\n```"
    labeler = VLMAutoLabeler(VLMConfig(base_url=server, model="test-vlm", api_key="k123"))
    images, history, future = _inputs()
    label = labeler.label(images, history, future)
    path, headers, body = _Handler.seen[0]
    assert path == "/v1/chat/completions"
    assert headers["Authorization"] == "Bearer k123"
    assert body["model"] == "test-vlm"
    user = body["messages"][1]["content"]
    urls = [c["image_url"]["url"] for c in user if c["type"] == "image_url"]
    assert len(urls) == 2 and all(u.startswith("data:image/jpeg;base64,") for u in urls)
    decoded = cv2.imdecode(np.frombuffer(base64.b64decode(urls[0].split(",", 1)[1]), np.uint8),
                           cv2.IMREAD_COLOR)
    assert decoded.shape == (40, 64, 3) and decoded[20, 5, 2] > 200  # red stays red (BGR)
    assert "stop_for_static_constraint" in body["messages"][0]["content"]
    assert label.longitudinal_decision == "stop_for_static_constraint"
    assert label.components[0].type == 1 and label.components[0].id == "tl_1"
    assert label.longitudinal_meta_action in ("gentle_decelerate", "strong_decelerate", "stop")
    assert consistency_score(label, future, 10.0) == 1.0


@pytest.mark.parametrize("answer,match", [
    ("no json here", "not JSON"),
    (json.dumps({"longitudinal_decision": "fly", "text": "x"}), "longitudinal_decision"),
    (json.dumps({"lateral_decision": "lane_keeping", "components": [{"type": 42}],
                 "text": "x"}), "component"),
    (json.dumps({"lateral_decision": "lane_keeping", "text": ""}), "no reasoning"),
])
def test_vlm_labeler_rejects_bad_answers(server, answer, match):
    _Handler.answer = answer
    labeler = VLMAutoLabeler(VLMConfig(base_url=server))
    with pytest.raises(AutoLabelError, match=match):
        labeler.label(*_inputs())


def test_unreachable_endpoint_and_config():
    labeler = VLMAutoLabeler(VLMConfig(base_url="http://127.0.0.1:9/v1", timeout_s=2.0))
    with pytest.raises(AutoLabelError, match="failed"):
        labeler.label(*_inputs())
    with pytest.raises(ValueError, match="base_url"):
        VLMConfig(base_url="ftp://x")
