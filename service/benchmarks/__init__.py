"""In-process benchmarks of the scoring core (`riskscore bench ...`)."""
