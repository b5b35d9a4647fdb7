"""Where a model is trained: grouped folds, the depth model, its training and tracking."""
