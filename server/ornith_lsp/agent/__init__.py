"""The agent: a scaffold proposed by the model, run by a small loop, checked by the harness."""
