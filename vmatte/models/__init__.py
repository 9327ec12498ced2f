"""Model components: segmenter (DeepLabV3+), alpha generator, border refiner."""
