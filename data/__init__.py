"""Task data: sources of verifiable prompts, the train / validation / test split, chat formatting and the
generated pocket world (pretraining corpus, cold-start and general data)."""
