"""Task data: sources of verifiable prompts, the train/held-out split, chat formatting and the
generated pocket world (pretraining corpus, cold-start and general data)."""
