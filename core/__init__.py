"""r1-pipeline core: recipes, the run store, model loading and generation shared by every stage."""
