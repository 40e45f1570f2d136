"""Shared model lists for the parametrised tests: every family timm has."""

# (timm name, expected kind). Small variants keep real forwards cheap.
TIMM_MODELS = [
    ("resnet18", "cnn"),
    ("resnet10t", "cnn"),
    ("mobilenetv2_100", "cnn"),
    ("mobilenetv3_small_100", "cnn"),
    ("efficientnet_b0", "cnn"),
    ("regnetx_002", "cnn"),
    ("convnext_atto", "cnn"),
    ("deit_tiny_patch16_224", "vit"),
    ("deit_tiny_distilled_patch16_224", "vit"),
    ("swin_tiny_patch4_window7_224", "vit"),
    ("pvt_v2_b0", "vit"),
    ("mixer_s16_224", "mlp"),
    ("resmlp_12_224", "mlp"),
    ("coatnet_nano_rw_224", "hybrid"),
    ("caformer_s18", "hybrid"),
    ("edgenext_xx_small", "hybrid"),
]

# A subset planned against each other in every order.
PAIR_MODELS = [
    "resnet18",
    "mobilenetv2_100",
    "convnext_atto",
    "deit_tiny_patch16_224",
    "swin_tiny_patch4_window7_224",
    "resmlp_12_224",
    "coatnet_nano_rw_224",
    "efficientformer_l1",
]
