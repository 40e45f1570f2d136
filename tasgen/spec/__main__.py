"""Print the spec reference: ``python -m tasgen.spec > docs/spec.md``."""

import sys

from .reference import reference_markdown

sys.stdout.write(reference_markdown())
