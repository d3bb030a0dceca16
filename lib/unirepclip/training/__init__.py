"""Training: the recipe of the embedded demo CLIP (:mod:`unirepclip.training.demo`)."""
