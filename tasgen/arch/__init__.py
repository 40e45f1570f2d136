"""Architecture knowledge: any model read as stem + stages + head (a StageTable)."""

from tasgen.arch.table import GLOBAL_MIXERS, Head, Part, Stage, StageTable

__all__ = ["GLOBAL_MIXERS", "Head", "Part", "Stage", "StageTable"]
