"""Analysis of the model: effective receptive fields, attribution, cost and the model card's errata."""
