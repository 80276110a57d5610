"""The custom layers: the vector quantizer, the masked convolution, the gated PixelCNN layer,
attention."""
