"""The self-assessment checklist (PRODUCT.yaml): init, fill, validate, status, upgrade."""
