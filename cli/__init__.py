"""The `tasgen` command line (installed as the `tasgen_cli` package)."""
