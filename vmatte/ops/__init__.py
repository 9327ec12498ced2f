"""Pure functions on arrays and tensors: compositing, patch selection and matting metrics."""
