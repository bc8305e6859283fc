"""What a run spends: one ledger for both models (`ledger`), how tokens are counted (`tokens`), the target
counted into the ledger (`target`), and the projection made before any call (`projection`)."""
