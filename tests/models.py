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

# Families read as a graph (their forward does work between modules, or a stage
# ends inside a block) or not named above: (timm name, expected kind, kwargs, image
# size). Depths are cut where the family allows, to keep real forwards cheap.
MORE_TIMM_MODELS = [
    ("levit_128s", "vit", {}, 64),
    ("eva02_tiny_patch14_224", "vit", {"depth": 4}, 56),
    ("beit_base_patch16_224", "vit", {"depth": 4, "embed_dim": 64, "num_heads": 2}, 64),
    ("cait_xxs24_224", "vit", {"depth": 4}, 64),
    ("convit_tiny", "vit", {"depth": 4, "local_up_to_layer": 2}, 64),
    ("pit_ti_224", "vit", {}, 64),
    ("xcit_nano_12_p16_224", "vit", {"depth": 4}, 64),
    ("tnt_s_patch16_224", "vit", {"depth": 4}, 64),
    ("nest_tiny", "vit", {}, 64),
    ("volo_d1_224", "hybrid", {}, 64),
    ("twins_pcpvt_small", "vit", {}, 64),
    ("mvitv2_tiny", "vit", {}, 64),
    ("coat_lite_tiny", "vit", {}, 64),
    ("xception41", "cnn", {}, 64),
    ("selecsls42", "cnn", {}, 64),
    ("ghostnet_050", "cnn", {}, 64),
    ("densenet121", "cnn", {}, 64),
    ("rexnet_100", "cnn", {}, 64),
    ("tiny_vit_5m_224", "hybrid", {}, 64),
    ("fastvit_t8", "cnn", {}, 64),
    ("mobilevit_xxs", "hybrid", {}, 64),
    ("starnet_s050", "cnn", {}, 64),
    ("mambaout_femto", "cnn", {}, 64),
    ("shvit_s1", "hybrid", {}, 64),
    ("visformer_tiny", "hybrid", {}, 64),  # adds position embeddings between its stages
    # Its stage module downsamples after the map timm taps, and its head fuses every
    # stage: forward_features returns a list ending in the final map (NCL).
    ("efficientvim_m1", "cnn", {}, 64),
    # Flatten/transpose between stem and blocks.
    ("deepseek_vit_412m", "vit", {"depth": 4, "embed_dim": 64, "num_heads": 2}, 224),
    ("qwen3_vit_88m", "vit", {"depth": 4, "embed_dim": 64, "num_heads": 2}, 64),
    # _pos_embed returns (tokens, rope).
    ("naflexvit_base_patch16_gap", "vit", {"depth": 4, "embed_dim": 64, "num_heads": 2}, 64),
    # A permute before its neck; windowed blocks.
    ("samvit_base_patch16", "vit", {"depth": 4, "embed_dim": 64, "num_heads": 2, "window_size": 2,
                                    "global_attn_indexes": [1, 3]}, 64),
    # Stage ends inside residual blocks (and a final fusion of several stages for MobileNetV5).
    ("legacy_xception", "cnn", {}, 96),
    ("nasnetalarge", "cnn", {}, 96),
    ("pnasnet5large", "cnn", {}, 96),
    ("mobilenetv5_300m", "hybrid", {}, 64),
    # NCHW intermediates need .item(): its stages are checked against NLC ones on meta.
    ("gemma4_vit_167m", "vit", {"depth": 4, "embed_dim": 64, "num_heads": 2, "head_dim": 32,
                                "intermediate_size": 128, "position_embedding_size": 64}, 64),
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
    "levit_128s",
    "eva02_tiny_patch14_224",
    "cait_xxs24_224",
    "xcit_nano_12_p16_224",
    "twins_pcpvt_small",
]
