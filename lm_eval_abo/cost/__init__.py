"""What a run spends: one ledger for both models with its caps (`ledger`, a leaf), the prices per token
(`prices`), how tokens are counted (`tokens`) and the target counted into the ledger (`target`). The
projection made before any call lives with the run (`run.projection`)."""
