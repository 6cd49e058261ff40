"""Verification tools used by the tests and the proofs.

Will hold a linearizability checker (Wing-Gong/Lowe search with P-compositional
partitioning and memoization, Porcupine-style) and a model checker that explores every
interleaving of message deliveries and timer firings over the real sans-IO nodes.
"""
