"""The custom layers: the vector quantizer, the masked convolution, attention."""
