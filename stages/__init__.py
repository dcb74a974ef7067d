"""The stages of the R1 recipe; each module has one public `run(...) -> Ref` entry point that sets
up, trains and saves, and is runnable without Prefect."""
