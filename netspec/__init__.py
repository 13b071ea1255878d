"""netspec: a declarative architecture-spec compiler for neural networks."""

from .errors import NetspecError
from .spec import Spec, load

__all__ = ["NetspecError", "Spec", "load"]
__version__ = "0.1.0"
