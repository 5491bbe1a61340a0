"""Pixels: probing, decoding, resizing, encoding, format negotiation, smart crops, placeholders."""
