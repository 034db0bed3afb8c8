"""Multi-band backbones (timm) and band-aware weight loading."""
