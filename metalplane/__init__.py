"""metalplane: a bare-metal cloud control plane in one Python service.

See DESIGN.md in the shared folder for the architecture; each sub-package's docstring says
what it is for and what it must not do.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
