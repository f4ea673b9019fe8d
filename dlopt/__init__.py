"""dlopt: train, prune, quantize, export, verify and benchmark PyTorch models.

The top-level package stays free of torch so that `dlopt --help` and `dlopt list` start fast;
import the stage modules (``dlopt.models``, ``dlopt.checkpoint``) when you need them.
"""

__version__ = "0.1.0"

from dlopt.errors import DloptError  # noqa: E402
from dlopt.registry import build_model, get_spec, list_specs, make_inputs  # noqa: E402

__all__ = ["DloptError", "__version__", "build_model", "get_spec", "list_specs", "make_inputs"]
