"""DCGAN training: models, losses, DiffAugment, the training loop and its checkpoints.

``pipeline.train.models.load_generator`` rebuilds a trained generator from
``models/generator.pt`` for evaluation.
"""
