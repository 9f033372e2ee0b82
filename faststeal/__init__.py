"""faststeal: steal a GAN through its outputs, measure how well it worked, and defend against it."""
__version__ = "0.1.0"

from .checkpoint import load_discriminator, load_generator  # noqa: E402

__all__ = ["__version__", "load_generator", "load_discriminator"]
