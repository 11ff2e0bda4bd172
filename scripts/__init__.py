"""Research scripts run from the repository root: the ablation, the learning curve, the benchmarks
and the validation set's builder (``python -m scripts.ablation …`` or ``python scripts/ablation.py …``)."""
