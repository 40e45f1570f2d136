"""tasgen's own methods, registered through the same door as a user's (`register_method`).

Imported by the registry the first time it is asked for a name. No torch here: each
builder is named by import path and loaded when a run is built.
"""

from __future__ import annotations

from tasgen.spec.schema import CRDSpec, DISTSpec, DKDSpec, FitNetSpec, KDSpec

from .registry import Method, register_method

_TAS_PAIRS = ("teacher_student", "teacher_assistant", "assistant_student")

for _method in (
    Method("tas", "TAS: a hybrid assistant between teacher and student; InfoNCE + KD (the paper: OFA) on three pairs",
           "tasgen.losses.builtin_methods:build_tas", pairs=_TAS_PAIRS, origin="tasgen"),
    Method("ofa", "OFA-KD (Hao et al., 2023): the OFA logit loss on exit branches after every student stage",
           "tasgen.losses.builtin_methods:build_ofa", origin="tasgen"),
    Method("kd", "Hinton KD (2015): KL between temperature-softened logits", "tasgen.losses.builtin_methods:build_kd",
           params=KDSpec, section="kd", origin="tasgen"),
    Method("fitnet", "FitNet (Romero et al., 2015): MSE between a regressed student stage and a teacher stage",
           "tasgen.losses.builtin_methods:build_fitnet", params=FitNetSpec, section="fitnet", origin="tasgen"),
    Method("crd", "CRD (Tian et al., 2020): NCE with a memory of negatives on pooled final features",
           "tasgen.losses.builtin_methods:build_crd", params=CRDSpec, section="crd", origin="tasgen"),
    Method("dkd", "DKD (Zhao et al., 2022): target-class and non-target-class KD terms, weighted apart",
           "tasgen.losses.builtin_methods:build_dkd", params=DKDSpec, section="dkd", origin="tasgen"),
    Method("dist", "DIST (Huang et al., 2022): inter- and intra-class Pearson correlation of the predictions",
           "tasgen.losses.builtin_methods:build_dist", params=DISTSpec, section="dist", origin="tasgen"),
    Method("none", "the student alone, cross-entropy on the labels", "tasgen.losses.builtin_methods:build_none",
           pairs=(), origin="tasgen"),
):
    register_method(_method)
