"""Training: stages pretrain / SFT / RL, rewards and GRPO (pure torch core, no ROS)."""
