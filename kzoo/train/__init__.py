"""The training engine (TensorFlow): one custom loop for every strategy, the papers' schedules."""
