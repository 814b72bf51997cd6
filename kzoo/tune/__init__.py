"""keras-tuner hypermodels for the papers' architecture studies (`python -m kzoo.recipes.ablation`)."""
