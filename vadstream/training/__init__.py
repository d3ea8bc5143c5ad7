"""Training pipeline: corpus access, augmentation, model, export (needs the train extra)."""
