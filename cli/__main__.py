"""``python -m tasgen_cli``: the `tasgen` command (what torchrun runs: ``torchrun ... -m tasgen_cli train SPEC``)."""

from tasgen_cli.app import main

main()
