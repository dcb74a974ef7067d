"""The stages of the R1 recipe. Each stage module is a recipe read top to bottom, with one public
`run(call: StageCall) -> StageOutcome` entry that sets up, trains and saves, runnable without
Prefect; stages/graph.py declares every stage (name, function, inputs, settings, output) once."""
