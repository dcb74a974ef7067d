"""Rewards: TRL reward functions (completions + dataset columns -> one float or None each)."""
