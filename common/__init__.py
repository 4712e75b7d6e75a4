"""Pieces every stage uses: the configuration, errors, atomic files, YAML loading, the fault hook, privacy."""
