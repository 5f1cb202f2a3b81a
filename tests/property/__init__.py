"""
The property tier: property tests over many generated cases (deterministic
seeds), in memory like the fast tier but taking most of its time: the
cluster's convergence and the client port's fuzzing. See README.md,
"Testing".
"""
