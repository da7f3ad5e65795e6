"""The results store: cell directories and their records, the lock, cell identities, the
``runs.csv`` table (writer and reader) and the per-cell loss curves."""
