"""Training: stages pretrain / SFT / RL, rewards and GRPO (pure torch core, no ROS).

- :mod:`.config`: recipes (``config/training/*.yaml``) -> a validated ``TrainConfig``;
- :mod:`.data`: splits, dataset statistics, the deterministic step sampler, DataLoaders;
- :mod:`.loop`: ``train(cfg, stage, resume, out)``, the loop of every stage, data parallel;
- :mod:`.checkpoint`: safetensors + JSON checkpoints (optimizer, RNG, trainer state);
- :mod:`.metrics`: ``metrics.jsonl``, TensorBoard event files, PNG curves;
- :mod:`.export`: the weights directory + model card;
- :mod:`.commands`: ``alpamayo train`` (and ``ros2 run alpamayo_ros train``);
- :mod:`.rewards`, :mod:`.judge`, :mod:`.grpo`: the RL stage's rewards and GRPO step.
"""
