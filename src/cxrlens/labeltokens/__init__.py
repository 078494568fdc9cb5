"""Label-token ViT (LT-ViT-style): a multi-label classifier whose per-label attention maps are its explanation."""
