"""Hand-written mutants and their runner (``make mutate``)."""
